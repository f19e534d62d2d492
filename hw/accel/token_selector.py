"""TOKEN_SELECT and TOKEN_MEAN: the token selector unit (``docs/isa.md``)."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import Out

from ..numerics import MAX_SELECTOR_HEADS
from .config import SCRATCHPAD_ADDRESS_BITS, SIGMOID_WORDS, SIZE_BITS
from .isa import ISA, SELECT_MODES, Opcode
from .keep_marker import ROW_INFO, SEARCH_PASSES, STEP_DELAY, KeepMarker
from .keep_scorer import KeepScorer
from .ports import LIVE_UPDATE, MEMORY_DATA_BITS, Unit, scratchpad_ports
from .rounding_divider import RoundingDivider
from .row_compactor import COMPACTOR_LATENCY, NUMERATOR_BITS, RowCompactor

__all__ = ["TokenSelector", "select_cycles", "mean_cycles", "NUMERATOR_BITS", "DENOMINATOR_BITS"]

#: The weights of a package token, or ``alive * group`` of a TOKEN_MEAN.
DENOMINATOR_BITS = 2 * SIZE_BITS
#: Cycles per channel (TOKEN_SELECT) or group (TOKEN_MEAN) beyond reading its words: the
#: compactor's stages, the divider's start and the rest of its latency.
_DRAIN = COMPACTOR_LATENCY + 1
_DIVIDE = RoundingDivider.LATENCY
#: Cycles of marking beyond its rows: the last row's score arrives, then it is marked.
_MARK_DRAIN = 2
#: TOKEN_SELECT's scoring pipeline: activation read, word register, table read, the product's
#: operands, the product, sum.
_SCORE_DRAIN = 6


def select_cycles(array, tokens, alive, heads, channels, mode):
    """Cycles from ``start`` to ``done`` of a TOKEN_SELECT (:class:`TokenSelector`'s formula)."""
    tiles = -(-tokens // array)
    search = SEARCH_PASSES * (alive + STEP_DELAY) if SELECT_MODES[mode] == "topk" and alive else 0
    score_drain = _SCORE_DRAIN if alive else _SCORE_DRAIN - 2     # no product to form or sum
    return (1 + heads * (1 + alive) + score_drain + search + tiles * array + _MARK_DRAIN
            + channels * (tiles + _DRAIN + _DIVIDE + 1) + 1)


def mean_cycles(array, words, group, alive, dst_tiles):
    """Cycles from ``start`` to ``done`` of a TOKEN_MEAN (:class:`TokenSelector`'s formula)."""
    tiles = (alive + array) // array
    return 2 + words * tiles + words // group * (_DRAIN + _DIVIDE + dst_tiles)


class TokenSelector(Unit):
    """Executes TOKEN_SELECT (score, keep, compact, package) and TOKEN_MEAN.

    Built of a :class:`~.keep_scorer.KeepScorer`, which holds the sigmoid
    tables SIG (64 words of 8 unsigned 16-bit entries, written through
    ``sig_write`` by LOAD into SIG) and a memory of the keep scores ``K_i``
    (``MAX_SELECT_TOKENS`` x 35 bits); a :class:`~.keep_marker.KeepMarker`,
    which holds a memory of the per-row keep bits and package weights, one
    word per tile of rows (``ceil(MAX_SELECT_TOKENS / array)`` x ``array``
    x 21 bits); a :class:`~.row_compactor.RowCompactor` and a
    :class:`RoundingDivider`. The unit's FSM sequences them: it makes every
    scratchpad access, counts rows, words and addresses, and sums the
    package token's (or the mean's) denominator.

    TOKEN_SELECT (``T`` tokens, ``A`` alive, ``H`` heads, ``C`` channels,
    ``t = ceil(T / array)`` tiles) runs in phases, one scratchpad access per
    cycle:

    1. weights and scores, lane-serial: the ``H`` head-weight logits, then
       the differences of each patch and head (``H x A`` reads), each through
       the SIG table and one 16 x 16 multiplier into ``K_i``;
    2. ``topk`` only: an exact radix search finds the k-th largest score
       ``tau`` (the largest value that at least ``k = min(keep, A)`` scores
       reach), one pass over the ``K_i`` per 4-bit digit from the top, the
       last also counting the scores above it; the ``k - #{K_i > tau}``
       scores equal to ``tau`` with the lowest indices are kept as well
       (``9 (A + 5)`` cycles);
    3. marking: per row, the keep bit (``threshold``: ``2 K_i >= 2**15
       sum_h w_h``) and the package weight ``(K_i >> 15) + 1`` of a dropped
       patch (0 otherwise), packed into one word per tile (``array t``);
    4. compaction, word-parallel: per channel word, each input tile's kept
       lanes are packed (prefix sums of the keep bits) into an output word
       written whenever it fills, while an adder tree over ``array``
       multipliers (8 x 20 bits) sums the dropped lanes ``W_i x_i``; then the
       :class:`RoundingDivider` gives the package token, inserted after the
       last output row, and the last word is written with zeros after it
       (``t + 18`` cycles per channel).

    Cycles from ``start`` to ``done`` (:func:`select_cycles`)::

        H (A + 1) + 10 + [9 (A + 5) if topk and A > 0] + array t + C (t + 18)

    (two less with ``A = 0``). DeiT-T (T = 197, A = 196, H = 3, C = 192,
    array 16): 8 570 cycles with ``topk``, 6 761 with ``threshold``.
    ``live_update`` pulses in the cycle before ``done``.

    TOKEN_MEAN (``w`` words, ``g`` group, ``a = ceil((1 + alive) / array)``
    tiles, ``d`` destination tiles): per group of words, ``g a`` reads summed
    by the same adder tree (lane weight 1 for rows ``1 .. alive``), the
    division by ``alive g``, and ``d`` writes of the broadcast mean; a group
    is read whole before its mean is written (in place is safe), mean by
    mean (destination tiles must not overlap one another). Cycles
    (:func:`mean_cycles`): ``w a + (w / g) (17 + d) + 2``.

    Resources: ``array + 1`` multipliers (one 16 x 16, ``array`` 8 x 20),
    three memories (SIG 64 x 128, scores 1024 x 35, row info as above), an
    adder tree of ``array`` 29-bit products and a 42-bit compare-subtract.

    Parameters
    ----------
    config : AcceleratorConfig
    """

    def __init__(self, config):
        super().__init__(config, {
            **scratchpad_ports(config, "act_read", "act_write"),
            "sig_write": Out(memory.WritePort.Signature(
                addr_width=(SIGMOID_WORDS - 1).bit_length(), shape=MEMORY_DATA_BITS)),
            "live_update": Out(LIVE_UPDATE),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._config.array
        select = ISA[Opcode.TOKEN_SELECT].view(self.instruction)
        mean = ISA[Opcode.TOKEN_MEAN].view(self.instruction)
        is_mean = mean.opcode == Opcode.TOKEN_MEAN
        dst = Mux(is_mean, mean.dst, select.dst)
        group = Mux(is_mean, mean.group, 1)
        # What the two opcodes' fields give, registered at start (the instruction holds
        # meanwhile), so that the phases' counters compare with registers.
        src_stride, dst_stride, words = held = [
            Signal.like(value, name=name) for name, value in (
                ("src_stride", select.src_stride), ("dst_stride", select.dst_stride),
                ("words", select.channels))]
        # The last row each phase counts to, less what its counter adds before comparing
        # (so that no adder lies between a counter and the FSM): the first row of the last
        # tile READ covers, the last row (MARK) and the last score (SEARCH).
        last_tile = Signal(signed(SIZE_BITS + 2))
        last_row = Signal(signed(SIZE_BITS + 2))
        last_score = Signal(signed(SIZE_BITS + 2))
        with m.If(self.start):
            covered = Mux(is_mean, mean.alive + 1, select.tokens)      # rows READ covers
            m.d.sync += [register.eq(value) for register, value in zip(held, (
                Mux(is_mean, mean.src_stride, select.src_stride),
                Mux(is_mean, mean.dst_stride, select.dst_stride),
                Mux(is_mean, mean.words, select.channels)))]
            m.d.sync += [last_tile.eq(covered - lanes), last_row.eq(select.tokens - 1),
                         last_score.eq(select.alive - 1)]

        m.submodules.scorer = scorer = KeepScorer(self._config)
        m.submodules.marker = marker = KeepMarker(self._config)
        m.submodules.compactor = compactor = RowCompactor(self._config)
        m.submodules.divider = divider = RoundingDivider(NUMERATOR_BITS, DENOMINATOR_BITS)
        denominator = Signal(DENOMINATOR_BITS)
        # Registered: read only states after the last change of the denominator (FLUSH,
        # BROADCAST, FINISH: after DRAIN and DIVIDE), and its 32-bit test fed the tail's
        # and the write enable's multiplexers too late.
        dropped_any = Signal()
        m.d.sync += dropped_any.eq(denominator != 0)
        mean_weights = Signal(lanes)          # TOKEN_MEAN: rows 1 .. alive of the tile read
        mean_rows = Signal(data.ArrayLayout(ROW_INFO, lanes))
        m.d.comb += [mean_rows[index].weight.eq(mean_weights[index]) for index in range(lanes)]
        wiring.connect(m, wiring.flipped(self.sig_write), scorer.sig_write)
        keep_count = Signal(SIZE_BITS)        # k = min(keep, A), registered at start
        with m.If(self.start):
            m.d.sync += keep_count.eq(Mux(select.keep < select.alive, select.keep, select.alive))
        m.d.comb += [
            scorer.data.eq(self.act_read.data),
            marker.topk.eq(select.mode == SELECT_MODES.index("topk")),
            marker.k.eq(keep_count),
            marker.weight_sum.eq(scorer.weight_sum),
            marker.score.eq(scorer.score_read.data),
            compactor.data.eq(self.act_read.data),
            compactor.rows.eq(Mux(is_mean, mean_rows, marker.info_read.data)),
            compactor.tail.eq(Mux(dropped_any, divider.quotient, 0)),
            divider.numerator.eq(compactor.sum),
            divider.denominator.eq(denominator),
        ]

        # Phase registers.
        head = Signal(range(MAX_SELECTOR_HEADS))
        row = Signal(SIZE_BITS + 1)           # SCORE: patch row; SEARCH: score; MARK: row
        lane = Signal(range(lanes))           # lane of `row`
        tile_address = Signal(SCRATCHPAD_ADDRESS_BITS)
        # WEIGHTS and SCORE read at score_word: the weights' word of head `head`, then
        # tile_address + head, as a register (no adder before the ACT port's address).
        score_word = Signal(SCRATCHPAD_ADDRESS_BITS)
        word = Signal(SIZE_BITS)              # channel (SELECT) or word (MEAN) being read
        group_left = Signal(SIZE_BITS)
        read_address = Signal(SCRATCHPAD_ADDRESS_BITS)
        row_base = Signal(SIZE_BITS + 1)      # first row of the tile being read
        info_tile = Signal.like(marker.info_read.addr, name="info_tile")   # READ: row info
        out_base = Signal(SCRATCHPAD_ADDRESS_BITS)
        out_address = Signal(SCRATCHPAD_ADDRESS_BITS)
        out_tiles = Signal(SIZE_BITS)         # words written of this channel / this mean
        m.d.sync += self.done.eq(0)

        # MARK: whether `row` has reached the last row, registered with each new row (the
        # comparison after `last_row` and before the FSM's next state was too deep).
        last_reached = Signal()

        def start_mark():
            m.d.sync += [row.eq(0), lane.eq(0), last_reached.eq(last_row <= 0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += [scorer.start.eq(1), marker.start.eq(1), compactor.clear.eq(1)]
                    m.d.sync += [self.busy.eq(1), head.eq(0), denominator.eq(0), word.eq(0),
                                 score_word.eq(select.weights),
                                 group_left.eq(group), read_address.eq(select.src),
                                 row_base.eq(0), info_tile.eq(0), out_base.eq(dst),
                                 out_address.eq(dst), out_tiles.eq(0)]
                    m.next = "WEIGHTS"
                    with m.If(is_mean):
                        m.next = "READ"
            with m.State("WEIGHTS"):
                # Head `head`'s weight logit, lane 0 of its word.
                m.d.comb += [self.act_read.addr.eq(score_word), self.act_read.en.eq(1),
                             scorer.read.valid.eq(1), scorer.read.weight.eq(1),
                             scorer.read.head.eq(head)]
                m.d.sync += [head.eq(head + 1), score_word.eq(score_word + 1)]
                with m.If(head == select.heads - 1):
                    m.d.sync += [head.eq(0), row.eq(1), lane.eq(1),
                                 tile_address.eq(select.scores), score_word.eq(select.scores)]
                    m.next = "SCORE"
                    with m.If(select.alive == 0):
                        m.next = "SCORED"
            with m.State("SCORE"):
                # Difference of patch `row`, head `head`: lane `lane` of a scores word.
                m.d.comb += [self.act_read.addr.eq(score_word), self.act_read.en.eq(1),
                             scorer.read.valid.eq(1), scorer.read.head.eq(head),
                             scorer.read.lane.eq(lane), scorer.read.first.eq(head == 0),
                             scorer.read.last.eq(head == select.heads - 1)]
                m.d.sync += [head.eq(head + 1), score_word.eq(score_word + 1)]
                with m.If(head == select.heads - 1):
                    m.d.sync += [head.eq(0), row.eq(row + 1), lane.eq(lane + 1),
                                 score_word.eq(tile_address)]
                    with m.If(lane == lanes - 1):
                        m.d.sync += [lane.eq(0),
                                     tile_address.eq(tile_address + select.scores_stride),
                                     score_word.eq(tile_address + select.scores_stride)]
                    with m.If(row == select.alive):
                        m.next = "SCORED"
            with m.State("SCORED"):
                with m.If(~scorer.busy):
                    start_mark()
                    m.next = "MARK"
                    with m.If(marker.topk & (select.alive != 0)):
                        m.next = "SEARCH"

            # topk: a pass over the scores per threshold bit, then one counting those above.
            with m.State("SEARCH"):
                m.d.comb += [scorer.score_read.addr.eq(row), marker.compare.eq(1)]
                m.d.sync += row.eq(row + 1)
                with m.If(row == last_score):
                    m.d.sync += row.eq(0)
                    m.next = "SEARCH_COUNT"
            with m.State("SEARCH_COUNT"):        # the marker counts the pass's last scores
                m.d.sync += row.eq(row + 1)
                with m.If(row == STEP_DELAY - 2):
                    m.d.sync += row.eq(0)
                    m.next = "SEARCH_STEP"
            with m.State("SEARCH_STEP"):
                m.d.comb += marker.step.eq(1)
                m.next = "SEARCH"
                with m.If(marker.searched):
                    start_mark()
                    m.next = "MARK"

            with m.State("MARK"):
                m.d.comb += [scorer.score_read.addr.eq(row - 1), marker.mark.valid.eq(1),
                             marker.mark.scored.eq((row != 0) & (row <= select.alive)),
                             marker.mark.present.eq(row < select.tokens),
                             marker.mark.last.eq(lane == lanes - 1)]
                m.d.sync += [row.eq(row + 1), lane.eq(lane + 1),
                             last_reached.eq(row + 1 >= last_row)]
                with m.If(lane == lanes - 1):
                    m.d.sync += lane.eq(0)
                    with m.If(last_reached):
                        m.next = "MARK_END"
            with m.State("MARK_END"):              # the last row's score arrives
                m.next = "MARK_LAST"
            with m.State("MARK_LAST"):             # the last row is marked in this cycle
                m.next = "READ"

            # Per channel (SELECT) or group of words (MEAN): read every tile of the word(s).
            with m.State("READ"):
                m.d.comb += [self.act_read.addr.eq(read_address), self.act_read.en.eq(1),
                             marker.info_read.addr.eq(info_tile), compactor.read.eq(1)]
                m.d.sync += [read_address.eq(read_address + src_stride),
                             row_base.eq(row_base + lanes), info_tile.eq(info_tile + 1)]
                for index in range(lanes):
                    m.d.sync += mean_weights[index].eq((row_base + index != 0)
                                                       & (row_base + index <= mean.alive))
                with m.If(row_base >= last_tile):
                    m.d.sync += [row_base.eq(0), info_tile.eq(0), word.eq(word + 1),
                                 read_address.eq(select.src + word + 1),
                                 group_left.eq(group_left - 1)]
                    with m.If(is_mean):
                        m.d.sync += denominator.eq(denominator + mean.alive)
                    with m.If(group_left == 1):
                        m.d.sync += group_left.eq(group)
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(~compactor.busy):
                    m.d.comb += divider.start.eq(1)
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):
                with m.If(divider.done):
                    m.next = "FLUSH"
                    with m.If(is_mean):
                        m.next = "BROADCAST"
            with m.State("FLUSH"):
                # The last, partial word: the package token after the last row, zeros after.
                m.d.comb += [self.act_write.en.eq(compactor.partial | dropped_any),
                             compactor.clear.eq(1)]
                m.d.sync += [out_tiles.eq(0), out_base.eq(out_base + 1),
                             out_address.eq(out_base + 1)]
                m.next = "READ"
                with m.If(word == words):
                    m.d.sync += out_tiles.eq(out_tiles + self.act_write.en)
                    m.next = "FINISH"
            with m.State("BROADCAST"):
                value = Mux(dropped_any, divider.quotient, 0)
                m.d.comb += [self.act_write.addr.eq(out_address), self.act_write.en.eq(1)]
                for index in range(lanes):
                    m.d.comb += self.act_write.data[index].eq(value)
                m.d.sync += [out_address.eq(out_address + dst_stride), out_tiles.eq(out_tiles + 1)]
                with m.If(out_tiles == mean.dst_tiles - 1):
                    m.d.comb += compactor.clear.eq(1)
                    m.d.sync += [out_tiles.eq(0), out_base.eq(out_base + 1),
                                 out_address.eq(out_base + 1), denominator.eq(0)]
                    m.next = "READ"
                    with m.If(word == words):
                        m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += [
                    self.live_update.en.eq(~is_mean),
                    self.live_update.tokens.eq(select.tokens - select.alive + marker.kept
                                               + dropped_any),
                    self.live_update.alive.eq(marker.kept),
                    self.live_update.tiles.eq(out_tiles),
                ]
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                m.next = "IDLE"

        # Each dropped patch's package weight adds to the package token's denominator.
        with m.If(marker.dropped.valid):
            m.d.sync += denominator.eq(denominator + marker.dropped.weight)
        # TOKEN_SELECT writes the compacted words, each as soon as it is full.
        with m.If(compactor.full):
            m.d.comb += self.act_write.en.eq(1)
            m.d.sync += [out_address.eq(out_address + dst_stride), out_tiles.eq(out_tiles + 1)]
        with m.If(~is_mean):
            m.d.comb += [self.act_write.addr.eq(out_address),
                         self.act_write.data.eq(compactor.word)]
        return m
