"""TOKEN_SELECT and TOKEN_MEAN: the token selector unit (``docs/isa.md``)."""

from functools import reduce
import operator

from amaranth import Array, C, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory
from amaranth.lib.wiring import Out

from ..numerics import (KEEP_SCORE_BITS, MAX_SELECTOR_HEADS, OPERAND_BITS, PACKAGE_WEIGHT_BITS,
                        PACKAGE_WEIGHT_SHIFT, SIGMOID_BITS, SIGMOID_FRACTION_BITS)
from .config import MAX_SELECT_TOKENS, SCRATCHPAD_ADDRESS_BITS, SIGMOID_WORDS, SIZE_BITS
from .isa import ISA, SELECT_MODES, Opcode
from .ports import LIVE_UPDATE, MEMORY_DATA_BITS, Unit, act_word, scratchpad_ports
from .rounding_divider import RoundingDivider

__all__ = ["TokenSelector", "select_cycles", "mean_cycles"]

#: A weighted sum of int8 tokens: TOKEN_MEAN sums up to ``alive * group < 2**32`` values.
NUMERATOR_BITS = 2 * SIZE_BITS + OPERAND_BITS
DENOMINATOR_BITS = 2 * SIZE_BITS
#: Cycles per channel (TOKEN_SELECT) or group (TOKEN_MEAN) beyond reading its words: two
#: pipeline stages, the divider's start and the rest of its latency.
_DRAIN = 3
_DIVIDE = RoundingDivider.LATENCY
#: TOKEN_SELECT's scoring pipeline: activation read, table read, product, sum.
_SCORE_DRAIN = 4
#: topk's threshold search: one pass per score bit, one more for the scores above it.
_SEARCH_PASSES = KEEP_SCORE_BITS + 1

_LANE_INFO = data.StructLayout({"keep": 1, "weight": PACKAGE_WEIGHT_BITS})


def select_cycles(array, tokens, alive, heads, channels, mode):
    """Cycles from ``start`` to ``done`` of a TOKEN_SELECT (:class:`TokenSelector`'s formula)."""
    tiles = -(-tokens // array)
    search = _SEARCH_PASSES * (alive + 1) if SELECT_MODES[mode] == "topk" and alive else 0
    score_drain = _SCORE_DRAIN if alive else _SCORE_DRAIN - 1     # no product to sum
    return (1 + heads * (1 + alive) + score_drain + search + tiles * array + 1
            + channels * (tiles + _DRAIN + _DIVIDE + 1) + 1)


def mean_cycles(array, words, group, alive, dst_tiles):
    """Cycles from ``start`` to ``done`` of a TOKEN_MEAN (:class:`TokenSelector`'s formula)."""
    tiles = (alive + array) // array
    return 2 + words * tiles + words // group * (_DRAIN + _DIVIDE + dst_tiles)


class TokenSelector(Unit):
    """Executes TOKEN_SELECT (score, keep, compact, package) and TOKEN_MEAN.

    Owns the sigmoid tables SIG (64 words of 8 unsigned 16-bit entries,
    written through ``sig_write`` by LOAD into SIG), a memory of the keep
    scores ``K_i`` (``MAX_SELECT_TOKENS`` x 35 bits) and a memory of the
    per-row keep bits and package weights, one word per tile of rows
    (``ceil(MAX_SELECT_TOKENS / array)`` x ``array`` x 21 bits).

    TOKEN_SELECT (``T`` tokens, ``A`` alive, ``H`` heads, ``C`` channels,
    ``t = ceil(T / array)`` tiles) runs in phases, one scratchpad access per
    cycle:

    1. weights and scores, lane-serial: the ``H`` head-weight logits, then
       the differences of each patch and head (``H x A`` reads), each through
       the SIG table and one 16 x 16 multiplier into ``K_i``;
    2. ``topk`` only: an exact bitwise threshold search, one pass over the
       ``K_i`` per bit from the top, finds the k-th largest score ``tau``
       (the largest value that at least ``k = min(keep, A)`` scores reach);
       one more pass counts the scores above it; the ``k - #{K_i > tau}``
       scores equal to ``tau`` with the lowest indices are kept as well
       (``36 (A + 1)`` cycles);
    3. marking: per row, the keep bit (``threshold``: ``2 K_i >= 2**15
       sum_h w_h``) and the package weight ``(K_i >> 15) + 1`` of a dropped
       patch (0 otherwise), packed into one word per tile (``array t``);
    4. compaction, word-parallel: per channel word, each input tile's kept
       lanes are packed (prefix sums of the keep bits) into an output word
       written whenever it fills, while an adder tree over ``array``
       multipliers (8 x 20 bits) sums the dropped lanes ``W_i x_i``; then the
       :class:`RoundingDivider` gives the package token, inserted after the
       last output row, and the last word is written with zeros after it
       (``t + 13`` cycles per channel).

    Cycles from ``start`` to ``done`` (:func:`select_cycles`)::

        H (A + 1) + 7 + [36 (A + 1) if topk and A > 0] + array t + C (t + 13)

    (one less with ``A = 0``). DeiT-T (T = 197, A = 196, H = 3, C = 192,
    array 16): 12 890 cycles with ``topk``, 5 798 with ``threshold``.
    ``live_update`` pulses in the cycle before ``done``.

    TOKEN_MEAN (``w`` words, ``g`` group, ``a = ceil((1 + alive) / array)``
    tiles, ``d`` destination tiles): per group of words, ``g a`` reads summed
    by the same adder tree (lane weight 1 for rows ``1 .. alive``), the
    division by ``alive g``, and ``d`` writes of the broadcast mean; a group
    is read whole before its mean is written (in place is safe), mean by
    mean (destination tiles must not overlap one another). Cycles
    (:func:`mean_cycles`): ``w a + (w / g) (12 + d) + 2``.

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
        topk = select.mode == SELECT_MODES.index("topk")
        src_stride = Mux(is_mean, mean.src_stride, select.src_stride)
        dst = Mux(is_mean, mean.dst, select.dst)
        dst_stride = Mux(is_mean, mean.dst_stride, select.dst_stride)
        rows = Mux(is_mean, mean.alive + 1, select.tokens)       # rows the READ phase covers
        words = Mux(is_mean, mean.words, select.channels)
        group = Mux(is_mean, mean.group, 1)
        k = Mux(select.keep < select.alive, select.keep, select.alive)

        m.submodules.sigmoid = sigmoid = memory.Memory(
            shape=MEMORY_DATA_BITS, depth=SIGMOID_WORDS, init=[])
        sig_writer, sig_reader = sigmoid.write_port(), sigmoid.read_port()
        m.d.comb += [sig_writer.addr.eq(self.sig_write.addr),
                     sig_writer.data.eq(self.sig_write.data), sig_writer.en.eq(self.sig_write.en)]
        m.submodules.scores = scores = memory.Memory(
            shape=KEEP_SCORE_BITS, depth=MAX_SELECT_TOKENS, init=[])
        score_writer, score_reader = scores.write_port(), scores.read_port()
        info_depth = -(-MAX_SELECT_TOKENS // lanes)
        m.submodules.row_info = row_info = memory.Memory(
            shape=data.ArrayLayout(_LANE_INFO, lanes), depth=info_depth, init=[])
        info_writer, info_reader = row_info.write_port(), row_info.read_port()
        m.submodules.divider = divider = RoundingDivider(NUMERATOR_BITS, DENOMINATOR_BITS)

        # Phase registers.
        head = Signal(range(MAX_SELECTOR_HEADS))
        row = Signal(SIZE_BITS + 1)           # SCORE: patch row; MARK: row
        lane = Signal(range(lanes))           # lane of `row`
        tile_address = Signal(SCRATCHPAD_ADDRESS_BITS)
        weights = Array(Signal(SIGMOID_BITS, name=f"weight_{h}")
                        for h in range(MAX_SELECTOR_HEADS))
        weight_sum = Signal(SIGMOID_BITS + (MAX_SELECTOR_HEADS - 1).bit_length())
        score = Signal(KEEP_SCORE_BITS)
        scored = Signal(range(MAX_SELECT_TOKENS))
        threshold = Signal(KEEP_SCORE_BITS)
        probe = Signal(KEEP_SCORE_BITS)                # the search's bit; 0: count above
        count = Signal(range(MAX_SELECT_TOKENS + 1))
        ties = Signal(range(MAX_SELECT_TOKENS + 1))    # scores equal to tau still kept
        kept = Signal(SIZE_BITS)
        info_tile = Signal(range(info_depth))         # READ: tile of row info
        marked = Signal(range(info_depth))            # MARK: tiles of row info written
        assembled = Signal(data.ArrayLayout(_LANE_INFO, lanes))
        numerator = Signal(signed(NUMERATOR_BITS))
        denominator = Signal(DENOMINATOR_BITS)
        word = Signal(SIZE_BITS)              # channel (SELECT) or word (MEAN) being read
        group_left = Signal(SIZE_BITS)
        read_address = Signal(SCRATCHPAD_ADDRESS_BITS)
        row_base = Signal(SIZE_BITS + 1)      # first row of the tile being read
        fill = Signal(range(lanes))           # rows waiting in `buffer`
        buffer = Signal(act_word(self._config))
        out_base = Signal(SCRATCHPAD_ADDRESS_BITS)
        out_address = Signal(SCRATCHPAD_ADDRESS_BITS)
        out_tiles = Signal(SIZE_BITS)         # words written of this channel / this mean
        dropped_any = denominator != 0
        m.d.comb += [divider.numerator.eq(numerator), divider.denominator.eq(denominator)]

        # Pipeline valid bits and tags, set by the FSM's reads.
        s1 = Signal(data.StructLayout({"valid": 1, "weight": 1, "head": head.shape(),
                                       "lane": lane.shape(), "first": 1, "last": 1}))
        s2 = Signal(data.StructLayout({"valid": 1, "weight": 1, "head": head.shape(),
                                       "entry": 3, "first": 1, "last": 1}))
        s3 = Signal(data.StructLayout({"valid": 1, "product": 2 * SIGMOID_BITS, "first": 1,
                                       "last": 1}))
        search_valid = Signal()
        mark = Signal(data.StructLayout({"valid": 1, "scored": 1, "present": 1, "last": 1}))
        a_valid = Signal()
        a_mask = Signal(lanes)                # TOKEN_MEAN: rows 1 .. alive of the tile
        b_valid = Signal()
        m.d.sync += [self.done.eq(0), s1.valid.eq(0), search_valid.eq(0), mark.valid.eq(0),
                     a_valid.eq(0)]

        def start_read():
            m.d.sync += [word.eq(0), group_left.eq(group), read_address.eq(select.src),
                         row_base.eq(0), info_tile.eq(0), fill.eq(0), buffer.eq(0),
                         out_base.eq(dst), out_address.eq(dst), out_tiles.eq(0),
                         numerator.eq(0)]

        def start_mark():
            m.d.sync += [row.eq(0), lane.eq(0), marked.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), head.eq(0), weight_sum.eq(0), scored.eq(0),
                                 kept.eq(0), denominator.eq(0)]
                    start_read()
                    m.next = "WEIGHTS"
                    with m.If(is_mean):
                        m.next = "READ"
            with m.State("WEIGHTS"):
                m.d.comb += [self.act_read.addr.eq(select.weights + head),
                             self.act_read.en.eq(1)]
                m.d.sync += [s1.valid.eq(1), s1.weight.eq(1), s1.head.eq(head), s1.lane.eq(0),
                             head.eq(head + 1)]
                with m.If(head == select.heads - 1):
                    m.d.sync += [head.eq(0), row.eq(1), lane.eq(1),
                                 tile_address.eq(select.scores)]
                    m.next = "SCORE"
                    with m.If(select.alive == 0):
                        m.next = "SCORED"
            with m.State("SCORE"):
                # Difference of patch `row`, head `head`: lane `lane` of a scores word.
                m.d.comb += [self.act_read.addr.eq(tile_address + head),
                             self.act_read.en.eq(1)]
                m.d.sync += [s1.valid.eq(1), s1.weight.eq(0), s1.head.eq(head), s1.lane.eq(lane),
                             s1.first.eq(head == 0), s1.last.eq(head == select.heads - 1),
                             head.eq(head + 1)]
                with m.If(head == select.heads - 1):
                    m.d.sync += [head.eq(0), row.eq(row + 1), lane.eq(lane + 1)]
                    with m.If(lane == lanes - 1):
                        m.d.sync += [lane.eq(0),
                                     tile_address.eq(tile_address + select.scores_stride)]
                    with m.If(row == select.alive):
                        m.next = "SCORED"
            with m.State("SCORED"):
                with m.If(~(s1.valid | s2.valid | s3.valid)):
                    m.d.sync += [threshold.eq(0), probe.eq(1 << (KEEP_SCORE_BITS - 1)),
                                 count.eq(0), scored.eq(0)]
                    start_mark()
                    m.next = "MARK"
                    with m.If(topk & (select.alive != 0)):
                        m.next = "SEARCH"

            # topk: the pass of `probe` counts the scores at least `threshold | probe`.
            candidate = Mux(probe == 0, threshold + 1, threshold | probe)
            counted = count + (search_valid & (score_reader.data >= candidate))
            with m.State("SEARCH"):
                m.d.comb += score_reader.addr.eq(scored)
                m.d.sync += [search_valid.eq(1), count.eq(counted), scored.eq(scored + 1)]
                with m.If(scored == select.alive - 1):
                    m.d.sync += scored.eq(0)
                    m.next = "SEARCH_STEP"
            with m.State("SEARCH_STEP"):
                m.d.sync += [count.eq(0), probe.eq(probe >> 1)]
                m.next = "SEARCH"
                with m.If(probe == 0):
                    m.d.sync += ties.eq(k - counted)
                    start_mark()
                    m.next = "MARK"
                with m.Elif(counted >= k):
                    m.d.sync += threshold.eq(candidate)

            with m.State("MARK"):
                m.d.comb += score_reader.addr.eq(row - 1)
                m.d.sync += [mark.valid.eq(1), mark.scored.eq((row != 0) & (row <= select.alive)),
                             mark.present.eq(row < select.tokens), mark.last.eq(lane == lanes - 1),
                             row.eq(row + 1), lane.eq(lane + 1)]
                with m.If(lane == lanes - 1):
                    m.d.sync += lane.eq(0)
                    with m.If(row + 1 >= select.tokens):
                        m.next = "MARK_END"
            with m.State("MARK_END"):              # the last row is marked in this cycle
                m.next = "READ"

            # Per channel (SELECT) or group of words (MEAN): read every tile of the word(s).
            with m.State("READ"):
                m.d.comb += [self.act_read.addr.eq(read_address), self.act_read.en.eq(1),
                             info_reader.addr.eq(info_tile)]
                m.d.sync += [a_valid.eq(1), read_address.eq(read_address + src_stride),
                             row_base.eq(row_base + lanes), info_tile.eq(info_tile + 1)]
                for index in range(lanes):
                    m.d.sync += a_mask[index].eq((row_base + index != 0)
                                                 & (row_base + index <= mean.alive))
                with m.If(row_base + lanes >= rows):
                    m.d.sync += [row_base.eq(0), info_tile.eq(0), word.eq(word + 1),
                                 read_address.eq(select.src + word + 1),
                                 group_left.eq(group_left - 1)]
                    with m.If(is_mean):
                        m.d.sync += denominator.eq(denominator + mean.alive)
                    with m.If(group_left == 1):
                        m.d.sync += group_left.eq(group)
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(~a_valid & ~b_valid):
                    m.d.comb += divider.start.eq(1)
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):
                with m.If(divider.done):
                    m.next = "FLUSH"
                    with m.If(is_mean):
                        m.next = "BROADCAST"
            with m.State("FLUSH"):
                # The last, partial word: the package token after the last row, zeros after.
                m.d.comb += self.act_write.en.eq((fill != 0) | dropped_any)
                m.d.sync += [fill.eq(0), buffer.eq(0), numerator.eq(0), out_tiles.eq(0),
                             out_base.eq(out_base + 1), out_address.eq(out_base + 1)]
                m.next = "READ"
                with m.If(word == words):
                    m.d.sync += out_tiles.eq(out_tiles + self.act_write.en)
                    m.next = "FINISH"
            with m.State("BROADCAST"):
                value = Mux(denominator == 0, 0, divider.quotient)
                m.d.comb += [self.act_write.addr.eq(out_address), self.act_write.en.eq(1)]
                for index in range(lanes):
                    m.d.comb += self.act_write.data[index].eq(value)
                m.d.sync += [out_address.eq(out_address + dst_stride), out_tiles.eq(out_tiles + 1)]
                with m.If(out_tiles == mean.dst_tiles - 1):
                    m.d.sync += [out_tiles.eq(0), out_base.eq(out_base + 1),
                                 out_address.eq(out_base + 1), numerator.eq(0),
                                 denominator.eq(0)]
                    m.next = "READ"
                    with m.If(word == words):
                        m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += [
                    self.live_update.en.eq(~is_mean),
                    self.live_update.tokens.eq(select.tokens - select.alive + kept + dropped_any),
                    self.live_update.alive.eq(kept),
                    self.live_update.tiles.eq(out_tiles),
                ]
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                m.next = "IDLE"

        # Scoring pipeline: s1 picks the logit or difference byte and reads its SIG entry,
        # s2 stores a head weight or multiplies, s3 sums a patch's heads into K_i.
        byte = self.act_read.data[s1.lane].as_unsigned()
        m.d.comb += sig_reader.addr.eq(Cat(byte[3:], s1.weight))
        m.d.sync += [s2.valid.eq(s1.valid), s2.weight.eq(s1.weight), s2.head.eq(s1.head),
                     s2.entry.eq(byte[:3]), s2.first.eq(s1.first), s2.last.eq(s1.last)]
        entry = sig_reader.data.word_select(s2.entry, SIGMOID_BITS)
        with m.If(s2.valid & s2.weight):
            m.d.sync += [weights[s2.head].eq(entry), weight_sum.eq(weight_sum + entry)]
        m.d.sync += [s3.valid.eq(s2.valid & ~s2.weight), s3.product.eq(weights[s2.head] * entry),
                     s3.first.eq(s2.first), s3.last.eq(s2.last)]
        total = Mux(s3.first, 0, score) + s3.product
        m.d.sync += score.eq(total)
        m.d.comb += [score_writer.addr.eq(scored), score_writer.data.eq(total),
                     score_writer.en.eq(s3.valid & s3.last)]
        with m.If(s3.valid & s3.last):
            m.d.sync += scored.eq(scored + 1)

        # Marking: the keep bit and package weight of a row, packed into a word per tile.
        k_i = score_reader.data
        chosen = Mux(topk, (k_i > threshold) | ((k_i == threshold) & (ties != 0)),
                     (k_i << 1) >= (weight_sum << SIGMOID_FRACTION_BITS))
        lane_info = Signal(_LANE_INFO)
        m.d.comb += [lane_info.keep.eq(Mux(mark.scored, chosen, mark.present)),
                     lane_info.weight.eq(Mux(mark.scored & ~chosen,
                                             (k_i >> PACKAGE_WEIGHT_SHIFT) + 1, 0))]
        packed = Cat(assembled.as_value()[_LANE_INFO.size:], lane_info)
        m.d.comb += [info_writer.addr.eq(marked), info_writer.data.eq(packed),
                     info_writer.en.eq(mark.valid & mark.last)]
        with m.If(mark.valid):
            m.d.sync += [assembled.eq(packed), denominator.eq(denominator + lane_info.weight)]
            with m.If(mark.scored & chosen):
                m.d.sync += kept.eq(kept + 1)
                with m.If(topk & (k_i == threshold) & (ties != 0)):
                    m.d.sync += ties.eq(ties - 1)
            with m.If(mark.last):
                m.d.sync += marked.eq(marked + 1)

        # Compaction, stage A: the tile's kept lanes packed to the bottom, the weighted lanes.
        info = info_reader.data
        keep = [info[index].keep & ~is_mean for index in range(lanes)]
        prefix = [C(0, 1)]
        for index in range(lanes):
            prefix.append(prefix[-1] + keep[index])
        x = self.act_read.data
        b_packed = Signal(act_word(self._config))
        b_count = Signal(range(lanes + 1))
        b_products = [Signal(signed(OPERAND_BITS + PACKAGE_WEIGHT_BITS + 1),
                             name=f"product_{index}")
                      for index in range(lanes)]
        m.d.sync += [b_valid.eq(a_valid), b_count.eq(prefix[-1])]
        for out in range(lanes):
            m.d.sync += b_packed[out].eq(reduce(operator.or_, (
                Mux(keep[index] & (prefix[index] == out), x[index], 0)
                for index in range(out, lanes))))
        for index in range(lanes):
            weight = Mux(is_mean, a_mask[index], info[index].weight)
            m.d.sync += b_products[index].eq(x[index] * weight)

        # Stage B: sum the products; append the packed lanes to `buffer`, writing full words.
        incoming = Signal(lanes * OPERAND_BITS)
        window = Signal(2 * lanes * OPERAND_BITS)
        m.d.comb += window.eq(buffer.as_value() | (incoming << (fill * OPERAND_BITS)))
        with m.If(b_valid):
            merged = fill + b_count
            m.d.comb += incoming.eq(b_packed)
            m.d.sync += [numerator.eq(numerator + sum(b_products)),
                         fill.eq(merged), buffer.eq(window)]
            with m.If(merged >= lanes):
                m.d.comb += self.act_write.en.eq(1)
                m.d.sync += [fill.eq(merged - lanes), buffer.eq(window[lanes * OPERAND_BITS:]),
                             out_address.eq(out_address + dst_stride),
                             out_tiles.eq(out_tiles + 1)]
        with m.If(~is_mean & ~b_valid):
            m.d.comb += incoming.eq(Mux(dropped_any, divider.quotient.as_unsigned(), 0))
        with m.If(~is_mean):
            m.d.comb += [self.act_write.addr.eq(out_address),
                         self.act_write.data.eq(window[:lanes * OPERAND_BITS])]
        return m
