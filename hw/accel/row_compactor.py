"""The compaction datapath of the token selector: kept rows packed, weighted rows summed."""

from functools import reduce
import operator

from amaranth import C, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..nonlinear.reduce import reduce_tree
from ..numerics import OPERAND_BITS, PACKAGE_WEIGHT_BITS
from .config import SIZE_BITS
from .keep_marker import ROW_INFO
from .ports import act_word

__all__ = ["RowCompactor", "NUMERATOR_BITS", "COMPACTOR_LATENCY"]

#: Registers of the prefix sums: the tile held, then the two halves of the tree.
_PREFIX_STAGES = 2
#: Products summed in one register of the sum's first stage (two levels of adders).
_SUM_GROUP = 4
#: Cycles from a tile's ``read`` to its sum; its ``full`` comes two cycles earlier.
COMPACTOR_LATENCY = _PREFIX_STAGES + 5

#: A weighted sum of int8 tokens: TOKEN_MEAN sums up to ``alive * group < 2**32`` values.
NUMERATOR_BITS = 2 * SIZE_BITS + OPERAND_BITS


class RowCompactor(wiring.Component):
    """Packs the kept rows of a channel's tiles into full words, and sums its weighted rows.

    The unit reads the tiles of one channel word after another (``read``: a
    tile is read in this cycle; its word is on ``data`` and the row info of
    its lanes on ``rows`` in the next). Each tile's kept lanes are packed to
    the bottom in order (prefix sums of the keep bits) and appended to a
    buffer of up to ``array - 1`` rows; a word is ``full`` when the buffer
    reaches ``array`` rows: ``word`` is to be written in that cycle and the
    rest of the rows stay. Outside a tile's cycle, ``word`` is what waits in
    the buffer with ``tail`` after it and zeros above (the last word of a
    channel: the package token after the last row), and ``partial`` says
    that rows wait. Meanwhile ``sum`` adds up ``sum_i weight_i x_i`` of
    every tile (``array`` products of 8 x 20 bits, exact).

    Latency: :data:`COMPACTOR_LATENCY` (7) stages after the read (the tile
    held; the prefix sums, a tree of ``ceil(log2 array)`` levels of small
    adders, half of them in each of two stages; the products and packed
    lanes; the buffer, and the products summed in groups of four; the groups
    in pairs; the sum): ``full`` five cycles after a tile's read, its sum
    seven; ``busy`` until then. Throughput: one tile per cycle. ``clear`` (only while no tile is in
    flight: ``busy`` low) empties the buffer and zeroes ``sum``.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    read : ``In(1)``
    data : ``In(act_word(config))``
    rows : ``In(ArrayLayout(ROW_INFO, array))``
    tail : ``In(signed(8))``
    clear : ``In(1)``
    word : ``Out(act_word(config))``
    full : ``Out(1)``
    partial : ``Out(1)``
    sum : ``Out(signed(40))``
    busy : ``Out(1)``
    """

    def __init__(self, config):
        self._lanes = config.array
        self._word = act_word(config)
        super().__init__({
            "read": In(1),
            "data": In(self._word),
            "rows": In(data.ArrayLayout(ROW_INFO, config.array)),
            "tail": In(signed(OPERAND_BITS)),
            "clear": In(1),
            "word": Out(self._word),
            "full": Out(1),
            "partial": Out(1),
            "sum": Out(signed(NUMERATOR_BITS)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        word_bits = lanes * OPERAND_BITS

        # Stage 1: the tile held. Stages 2 and 3: the prefix sums of its keep bits, a
        # Kogge-Stone tree, half of its levels in each.
        # valid[0]: the tile arrives; valid[-1]: its prefix sums are registered.
        valid = [Signal(name=f"valid_{stage}") for stage in range(_PREFIX_STAGES + 2)]
        m.d.sync += [valid[0].eq(self.read),
                     *(later.eq(earlier) for earlier, later in zip(valid, valid[1:]))]
        held = [(Signal(self._word, name=f"data_{stage}"),
                 Signal.like(self.rows, name=f"rows_{stage}"))
                for stage in range(_PREFIX_STAGES + 1)]
        with m.If(valid[0]):                # a word read: X before a memory's first read
            m.d.sync += held[0][0].eq(self.data)
        m.d.sync += [held[0][1].eq(self.rows),
                     *(register.eq(value) for earlier, later in zip(held, held[1:])
                       for register, value in zip(later, earlier))]
        x, rows = held[-1]
        keep = [rows[index].keep for index in range(lanes)]
        sums = [held[0][1][index].keep for index in range(lanes)]
        distances = [1 << level for level in range((lanes - 1).bit_length())]
        half = -(-len(distances) // 2)
        for stage, levels in enumerate((distances[:half], distances[half:])):
            registers = [Signal(range(index + 2), name=f"prefix_{stage}_{index}")
                         for index in range(lanes)]
            m.d.sync += [register.eq(total)
                         for register, total in zip(registers, _prefix_levels(sums, levels))]
            sums = registers
        prefix = [C(0, 1), *sums]

        # Stage 4: the tile's kept lanes packed to the bottom, the weighted lanes.
        packed = Signal(self._word)
        count = Signal(range(lanes + 1))
        products = [Signal(signed(OPERAND_BITS + PACKAGE_WEIGHT_BITS + 1),
                           name=f"product_{index}")
                    for index in range(lanes)]
        staged = Signal()
        m.d.sync += [staged.eq(valid[-1]), count.eq(prefix[-1])]
        for out in range(lanes):
            m.d.sync += packed[out].eq(reduce(operator.or_, (
                Mux(keep[index] & (prefix[index] == out), x[index], 0)
                for index in range(out, lanes))))
        for index in range(lanes):
            m.d.sync += products[index].eq(x[index] * rows[index].weight)

        # Stage 5: append the packed lanes to `buffer`, a word when full; sum the products
        # in groups. Stage 6: the groups in pairs. Stage 7: add the pairs to the sum.
        groups = [Signal(signed(OPERAND_BITS + PACKAGE_WEIGHT_BITS + 1 + _SUM_GROUP.bit_length()),
                         name=f"group_{first}")
                  for first in range(0, lanes, _SUM_GROUP)]
        m.d.sync += [group.eq(reduce_tree(products[first:first + _SUM_GROUP], operator.add))
                     for group, first in zip(groups, range(0, lanes, _SUM_GROUP))]
        pairs = [Signal(signed(len(groups[0]) + 1), name=f"pair_{first}")
                 for first in range(0, len(groups), 2)]
        m.d.sync += [pair.eq(reduce_tree(groups[first:first + 2], operator.add))
                     for pair, first in zip(pairs, range(0, len(groups), 2))]
        paired, summing = Signal(), Signal()
        m.d.sync += [paired.eq(staged), summing.eq(paired)]
        fill = Signal(range(lanes))           # rows waiting in `buffer`
        buffer = Signal(word_bits)
        numerator = Signal(signed(NUMERATOR_BITS))
        incoming = Signal(word_bits)
        window = Signal(2 * word_bits)
        merged = fill + count
        # Whether a tile fills a word is known a cycle ahead, from the fill it will meet
        # and its count (the last prefix sum), so that `full` is a register's.
        # (`clear` comes only while no tile is in flight: it need not be in that fill.)
        # Each of the three fills it may meet is tested against the count coming (the last
        # prefix sum) at once, and the fill chosen after: no adder after the choice.
        next_fill = Signal.like(fill)
        full_ahead = Signal()
        coming = prefix[-1]
        m.d.comb += next_fill.eq(Mux(self.full, merged - lanes, Mux(staged, merged, fill)))
        m.d.sync += [fill.eq(Mux(self.clear, 0, next_fill)),
                     full_ahead.eq(Mux(self.full, merged + coming >= 2 * lanes,
                                       Mux(staged, merged + coming >= lanes,
                                           fill + coming >= lanes)))]
        m.d.comb += [incoming.eq(Mux(staged, packed, self.tail.as_unsigned())),
                     window.eq(buffer | (incoming << (fill * OPERAND_BITS))),
                     self.full.eq(staged & full_ahead),
                     self.word.eq(window[:word_bits]), self.partial.eq(fill != 0),
                     self.sum.eq(numerator),
                     self.busy.eq(Cat(*valid, staged, paired, summing).any())]
        with m.If(self.clear):
            m.d.sync += [buffer.eq(0), numerator.eq(0)]
        with m.Else():
            with m.If(summing):
                m.d.sync += numerator.eq(reduce_tree([numerator, *pairs], operator.add))
            with m.If(self.full):
                m.d.sync += buffer.eq(window[word_bits:])
            with m.Elif(staged):
                m.d.sync += buffer.eq(window)
        return m


def _prefix_levels(sums, distances):
    """Levels of a Kogge-Stone prefix sum: at each distance ``d``, ``sums[i] += sums[i - d]``.
    With the distances 1, 2, 4, ... below ``len(sums)``, ``sums[i]`` becomes the sum of the
    first ``i + 1`` values, in ``ceil(log2 n)`` levels of small adders instead of ``n``."""
    for distance in distances:
        sums = [total if index < distance else total + sums[index - distance]
                for index, total in enumerate(sums)]
    return sums
