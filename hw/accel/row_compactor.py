"""The compaction datapath of the token selector: kept rows packed, weighted rows summed."""

from functools import reduce
import operator

from amaranth import C, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..numerics import OPERAND_BITS, PACKAGE_WEIGHT_BITS
from .config import SIZE_BITS
from .keep_marker import ROW_INFO
from .ports import act_word

__all__ = ["RowCompactor", "NUMERATOR_BITS"]

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

    Latency: three stages after the read (the prefix sums, a tree of
    ``ceil(log2 array)`` adders; the products and packed lanes; the sum and
    the buffer): ``full`` and the sum of a tile three cycles after its
    read; ``busy`` until then. Throughput: one tile per cycle. ``clear``
    empties the buffer and zeroes ``sum`` (not with a tile in stage three).

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

        # Stage 1: the prefix sums of the keep bits (a log-depth tree), the tile held.
        arrived = Signal()
        counted = Signal()
        m.d.sync += [arrived.eq(self.read), counted.eq(arrived)]
        x = Signal(self._word)
        rows = Signal.like(self.rows)
        m.d.sync += [x.eq(self.data), rows.eq(self.rows)]
        keep = [rows[index].keep for index in range(lanes)]
        prefix = [C(0, 1), *(Signal(range(index + 1), name=f"prefix_{index}")
                             for index in range(1, lanes + 1))]
        m.d.sync += [register.eq(total) for register, total
                     in zip(prefix[1:], _prefix_sums([self.rows[index].keep
                                                      for index in range(lanes)]))]

        # Stage 2: the tile's kept lanes packed to the bottom, the weighted lanes.
        packed = Signal(self._word)
        count = Signal(range(lanes + 1))
        products = [Signal(signed(OPERAND_BITS + PACKAGE_WEIGHT_BITS + 1),
                           name=f"product_{index}")
                    for index in range(lanes)]
        staged = Signal()
        m.d.sync += [staged.eq(counted), count.eq(prefix[-1])]
        for out in range(lanes):
            m.d.sync += packed[out].eq(reduce(operator.or_, (
                Mux(keep[index] & (prefix[index] == out), x[index], 0)
                for index in range(out, lanes))))
        for index in range(lanes):
            m.d.sync += products[index].eq(x[index] * rows[index].weight)

        # Stage 3: sum the products; append the packed lanes to `buffer`, a word when full.
        fill = Signal(range(lanes))           # rows waiting in `buffer`
        buffer = Signal(word_bits)
        numerator = Signal(signed(NUMERATOR_BITS))
        incoming = Signal(word_bits)
        window = Signal(2 * word_bits)
        merged = fill + count
        m.d.comb += [incoming.eq(Mux(staged, packed, self.tail.as_unsigned())),
                     window.eq(buffer | (incoming << (fill * OPERAND_BITS))),
                     self.full.eq(staged & (merged >= lanes)),
                     self.word.eq(window[:word_bits]), self.partial.eq(fill != 0),
                     self.sum.eq(numerator), self.busy.eq(arrived | counted | staged)]
        with m.If(self.clear):
            m.d.sync += [fill.eq(0), buffer.eq(0), numerator.eq(0)]
        with m.Elif(staged):
            m.d.sync += [numerator.eq(numerator + sum(products)),
                         fill.eq(merged), buffer.eq(window)]
            with m.If(self.full):
                m.d.sync += [fill.eq(merged - lanes), buffer.eq(window[word_bits:])]
        return m


def _prefix_sums(bits):
    """``[b0, b0 + b1, ..., sum(bits)]`` by a Kogge-Stone tree: ``ceil(log2 n)`` levels of
    small adders instead of a chain of ``n``."""
    sums = list(bits)
    distance = 1
    while distance < len(sums):
        sums = [total if index < distance else total + sums[index - distance]
                for index, total in enumerate(sums)]
        distance *= 2
    return sums

