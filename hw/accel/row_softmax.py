"""SOFTMAX over activation words: one row per lane, a row's elements in consecutive words."""

from typing import NamedTuple

from amaranth import Array, C, Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import data

from ..numerics import OPERAND_BITS, SOFTMAX_RECIPROCAL_BITS, softmax_one
from .config import SCRATCHPAD_ADDRESS_BITS, SIZE_BITS
from .exp_table import FILL_CYCLES, TABLE_LATENCY, ExpTable
from .isa import ISA, Opcode
from .ports import Unit, pass_word, running_address, scratchpad_ports, tile_addresses
from .row_units import row_units
from .softmax_reciprocals import SUM_BITS, SoftmaxReciprocals, reciprocals_cycles

__all__ = ["RowSoftmax", "softmax_cycles"]

_ONE = softmax_one(OPERAND_BITS)          # int8 probabilities, scale 1/127
#: Cycles per tile beside the three passes' words and the reciprocals: the passes' pipeline
#: drains and the state changes.
_TILE_DRAINS = 21
#: Cycles of the maxima pass beside its words: the fill runs beside the first one.
_MAXIMA_DRAIN = 7


def softmax_cycles(lanes, tiles, length, units=None, lookahead=False, resume=False):
    """Cycles of a SOFTMAX of ``tiles`` tiles of rows ``length`` long on ``lanes`` lanes with
    ``units`` shared dividers (:func:`row_units` by default): per tile three passes, the
    reciprocals and the drains; what the exp table's fill takes beyond the first maxima
    pass; the start and FINISH states. With ``lookahead`` (a second activation read port)
    the sums pass reads two words a cycle, and every tile but the first finds its maxima
    during the output pass of the tile before it, which saves its maxima pass and that
    pass's drain; with ``resume`` (the field) the first tile's too, and the table's fill."""
    sums_pass = -(-length // 2) if lookahead else length
    tile = (2 * length + sums_pass + reciprocals_cycles(lanes, row_units(lanes, units))
            + _TILE_DRAINS)
    if lookahead and resume:
        return tiles * (tile - length - _MAXIMA_DRAIN) + 2
    saved = (tiles - 1) * (length + _MAXIMA_DRAIN) if lookahead else 0
    return tiles * tile - saved + max(0, FILL_CYCLES - length - _MAXIMA_DRAIN) + 2


class RowSoftmax(Unit):
    """Executes SOFTMAX: ``softmax_rows`` of ``docs/numerics.md`` on ``array`` rows at once.

    For each tile of ``array`` rows: a pass over the row's words for the
    maxima, a pass for the sums of ``exp_q15`` (a table read per lane), one
    division per lane in ``units`` shared dividers (:class:`SoftmaxReciprocals`,
    lanes in turn, 26 cycles each) and a pass that reads the exps again,
    scales them and writes the probabilities, one word read per cycle. The
    instruction's ``exp_q15`` table (:class:`ExpTable`, one shared exp
    pipeline, 264 cycles) fills beside the first maxima pass.
    :func:`softmax_cycles` in all: ``tiles * (3 * length + 75) +
    max(0, 257 - length) + 2`` with the default 16 dividers of 32 lanes (each
    pass drains the pipeline: the read, the word read, the table's read and its
    entry, the product and the rounded probability each have a register).

    With a second activation read port (``config.act_read_ports == 2``) the
    sums pass reads two words a cycle, the odd ones through ``y_read``, and
    looks both up in a second read port of each lane's table copy: ``length // 2``
    cycles sooner. The output pass of a tile also reads the next tile's words,
    the same index through ``y_read``, into a second set of maxima: every tile
    but the first starts with its sums pass, ``length + 7`` cycles sooner. A SOFTMAX split
    into pieces (beside different hosts) goes on from one piece to the next
    the same way: a piece with ``carry`` set finds, during its last output
    pass, the maxima of the tile after its last, and the next SOFTMAX, with
    ``resume`` set, starts its first tile with the sums pass and keeps the
    exp table as filled (the golden interpreter checks that it may).

    Parameters
    ----------
    config : AcceleratorConfig
    units : int or None
        Shared dividers; ``ceil(array / 2)`` by default (:func:`row_units`).
    """

    def __init__(self, config, *, units=None):
        self._lookahead = config.act_read_ports == 2
        reads = ("act_read", "y_read") if self._lookahead else ("act_read",)
        super().__init__(config, scratchpad_ports(config, *reads, "act_write"))
        self._units = row_units(config.array, units)

    def elaborate(self, platform):
        m = Module()
        lanes = self._config.array
        inst = ISA[Opcode.SOFTMAX].view(self.instruction)

        tile = Signal(SIZE_BITS)
        index = Signal(SIZE_BITS)
        reading = Signal()
        phase = Signal(2)                      # 0 maxima, 1 sums, 2 outputs
        maxima = Array(Signal(signed(OPERAND_BITS), name=f"max_{lane}") for lane in range(lanes))
        sums = Array(Signal(SUM_BITS, name=f"sum_{lane}") for lane in range(lanes))

        resume = inst.resume if self._lookahead else C(0, 1)   # only with the maxima carried
        m.submodules.exp = exp = ExpTable(lanes=lanes, reads=2 if self._lookahead else 1)
        m.d.comb += [exp.params.ratio.eq(inst.ratio), exp.params.alpha.eq(inst.alpha),
                     exp.params.beta.eq(inst.beta), exp.params.gamma.eq(inst.gamma)]
        # The words read, registered before any arithmetic: the read data comes from a
        # block RAM (and a bank's multiplexer) late in its cycle.
        words = Signal.like(self.act_read.data)
        for lane in range(lanes):
            m.d.comb += exp.n[lane].eq(maxima[lane] - words[lane])

        next_tile = Signal()
        src_tile, dst_tile = tile_addresses(m, inst, load=self.start, advance=next_tile)
        # With the look-ahead the sums pass reads a pair of words per cycle.
        paired = (phase == 1) if self._lookahead else C(0, 1)
        step = Mux(paired, 2, 1)
        pass_end = reading & Mux(paired, index + 2 >= inst.length, index + 1 == inst.length)
        word = pass_word(m, inst, src_tile, load=self.start, advance=next_tile,
                         restart=pass_end, step=reading, size=step)
        m.d.comb += [
            self.act_read.addr.eq(word),
            self.act_read.en.eq(reading),
        ]
        # Side band: valid/first per stage after the read (the word, the operand register,
        # TABLE_LATENCY, the product, the output).
        depth = 4 + TABLE_LATENCY
        valid = [Signal(name=f"valid_{i}") for i in range(depth)]
        first = [Signal(name=f"first_{i}") for i in range(depth)]
        address = [Signal(SCRATCHPAD_ADDRESS_BITS, name=f"address_{i}") for i in range(depth)]
        m.d.sync += [valid[0].eq(reading), first[0].eq(reading & (index == 0)),
                     address[0].eq(dst_tile + index)]
        for i in range(1, depth):
            m.d.sync += [valid[i].eq(valid[i - 1]), first[i].eq(first[i - 1]),
                         address[i].eq(address[i - 1])]
        in_flight = Signal()
        m.d.comb += [in_flight.eq(Cat(*valid).any()), exp.en.eq(valid[1])]
        with m.If(valid[0]):
            m.d.sync += words.eq(self.act_read.data)
        if self._lookahead:
            output_pass = Signal()          # pulses as DIVIDE enters the output pass
            ahead, pair_valid = self._second_reads(
                m, inst, tile, reading, phase, first[1], src_tile=src_tile,
                load=self.start, advance=next_tile, restart=pass_end, enter=output_pass,
                step=step)
            # The pairs' odd words, looked up beside the even ones.
            m.d.comb += exp.pair_en.eq(pair_valid[1])
            for lane in range(lanes):
                m.d.comb += exp.pair_n[lane].eq(maxima[lane] - ahead.words[lane])

        # Pass 0: maxima of the registered words.
        with m.If((phase == 0) & valid[1]):
            _running_maxima(m, maxima, words, first[1])
        # Pass 1: sums of the exps leaving the table.
        exp_valid, exp_first = valid[1 + TABLE_LATENCY], first[1 + TABLE_LATENCY]
        with m.If((phase == 1) & exp_valid):
            for lane in range(lanes):
                pair = (Mux(pair_valid[1 + TABLE_LATENCY], exp.pair_e[lane], 0)
                        if self._lookahead else 0)
                m.d.sync += sums[lane].eq(Mux(exp_first, 0, sums[lane]) + exp.e[lane] + pair)
        # Division, lanes in turn in the shared dividers.
        m.submodules.reciprocals = reciprocals = SoftmaxReciprocals(lanes=lanes,
                                                                    units=self._units)
        m.d.comb += [reciprocals.sums[lane].eq(sums[lane]) for lane in range(lanes)]
        # Pass 2: probabilities: the product registered after the table, then rounded and
        # saturated into a register, then written. The table looks up, and the product
        # takes, words read only (before a memory's first read its data is undefined: X in
        # a 4-state simulator).
        probabilities = Signal(data.ArrayLayout(signed(OPERAND_BITS), lanes))
        for lane in range(lanes):
            product = exp.e[lane] * reciprocals.reciprocal[lane]
            registered = Signal(product.shape(), name=f"product_{lane}")
            with m.If(exp_valid):
                m.d.sync += registered.eq(product)
            shifted = registered << inst.probability_shift
            scaled = (shifted + (1 << (SOFTMAX_RECIPROCAL_BITS - 1))) >> SOFTMAX_RECIPROCAL_BITS
            m.d.sync += probabilities[lane].eq(Mux(scaled > _ONE, _ONE, scaled))
        m.d.comb += [self.act_write.addr.eq(address[-1]), self.act_write.data.eq(probabilities),
                     self.act_write.en.eq((phase == 2) & valid[-1])]

        m.d.sync += self.done.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += exp.start.eq(~resume)
                    m.d.sync += [self.busy.eq(1), tile.eq(0), index.eq(0), phase.eq(resume),
                                 reading.eq(1)]
                    if self._lookahead:     # the maxima the SOFTMAX before carried
                        with m.If(resume):
                            m.d.sync += [maxima[lane].eq(ahead.maxima[lane])
                                         for lane in range(lanes)]
                    m.next = "PASS"
            with m.State("PASS"):
                with m.If(reading):
                    m.d.sync += index.eq(index + step)
                    with m.If(pass_end):
                        m.d.sync += [reading.eq(0), index.eq(0)]
                with m.Elif(~in_flight):
                    with m.Switch(phase):
                        with m.Case(0):                  # the first tile's waits for the fill
                            with m.If(~exp.busy):
                                m.d.sync += [phase.eq(1), reading.eq(1)]
                        with m.Case(1):
                            m.d.comb += reciprocals.start.eq(1)
                            m.next = "DIVIDE"
                        with m.Case(2):
                            m.d.comb += next_tile.eq(1)
                            m.d.sync += [tile.eq(tile + 1), phase.eq(0)]
                            with m.If(tile + 1 == inst.m_tiles):
                                m.next = "FINISH"
                            with m.Else():
                                m.d.sync += reading.eq(1)
                                if self._lookahead:     # the maxima are there: sums next
                                    m.d.sync += [phase.eq(1), *(
                                        maxima[lane].eq(ahead.maxima[lane])
                                        for lane in range(lanes))]
            with m.State("DIVIDE"):
                with m.If(~reciprocals.busy):
                    m.d.sync += [phase.eq(2), reading.eq(1)]
                    if self._lookahead:
                        m.d.comb += output_pass.eq(1)
                    m.next = "PASS"
            with m.State("FINISH"):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                m.next = "IDLE"
        return m

    def _second_reads(self, m, inst, tile, reading, phase, first, *, src_tile, load, advance,
                      restart, enter, step):
        """What ``y_read`` reads: in the sums pass the odd word of each pair (``src_tile +
        index + 1``; none after a row's last word), in the output pass the next tile's word
        of the same index (after the last tile: with ``carry``), into the maxima of the
        next tile's rows. Returns the registered words read and those maxima (a
        :class:`_SecondReads`), and the pairs' valid flags per stage after the read, as
        the words' (``valid``).

        The address is one :func:`running_address`, stepping with the pass: the pair's
        odd word ``src_tile + 1`` as a pass starts (``load``, ``advance``, ``restart``, as
        for :func:`pass_word`), the next tile's first word ``src_tile + src_stride`` in
        the cycle ``enter`` starts the output pass (not at ``start``, where the sum of two
        fields of the instruction, which comes through the look-ahead's multiplexers,
        made the preset's slowest path)."""
        word = running_address(m, "second_word", step=reading, size=step, loads=[
            (load, inst.src + 1), (advance, src_tile + inst.src_stride + 1),
            (enter, src_tile + inst.src_stride), (restart, src_tile + 1)])
        ahead_read = reading & (phase == 2) & ((tile + 1 != inst.m_tiles) | inst.carry)
        # Whether the pair read next has its odd word (index + 1 < length), a register: the
        # comparison's carry chain before the scratchpad's enable made the preset's slowest
        # path. It comes from the words left in the pass (``left``, counted down), with no
        # carry chain either: two or more left now, four or more before a pair's read.
        left = Signal(SIZE_BITS)
        odd_word = Signal()
        with m.If(load | restart | advance):             # a pass starts at index 0
            m.d.sync += [left.eq(inst.length), odd_word.eq(inst.length[1:] != 0)]
        with m.Elif(reading):
            m.d.sync += [left.eq(left - step), odd_word.eq(left[2:] != 0)]
        pair_read = reading & (phase == 1) & odd_word
        m.d.comb += [self.y_read.addr.eq(word), self.y_read.en.eq(ahead_read | pair_read)]
        arrived = Signal()
        words = Signal.like(self.y_read.data)
        m.d.sync += arrived.eq(self.y_read.en)
        with m.If(arrived):
            m.d.sync += words.eq(self.y_read.data)
        ahead_arrived, ahead_registered = Signal(), Signal()
        m.d.sync += [ahead_arrived.eq(ahead_read), ahead_registered.eq(ahead_arrived)]
        ahead = [Signal(signed(OPERAND_BITS), name=f"ahead_max_{lane}")
                 for lane in range(self._config.array)]
        with m.If(ahead_registered):
            _running_maxima(m, ahead, words, first)
        pair_valid = [Signal(name=f"pair_valid_{i}") for i in range(2 + TABLE_LATENCY)]
        m.d.sync += [pair_valid[0].eq(pair_read),
                     *(later.eq(earlier) for earlier, later in zip(pair_valid, pair_valid[1:]))]
        return _SecondReads(words, ahead), pair_valid


class _SecondReads(NamedTuple):
    """The registered words ``y_read`` brought, and the next tile's maxima found in them."""
    words: Value
    maxima: list


def _running_maxima(m, maxima, words, first):
    """Each lane's maximum takes its word of ``words`` if larger, or if ``first``."""
    for lane, maximum in enumerate(maxima):
        value = words[lane]
        m.d.sync += maximum.eq(Mux(first | (value > maximum), value, maximum))
