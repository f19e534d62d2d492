"""Output-stationary array of processing elements with column-wise drain."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..numerics import OPERAND_BITS
from .pe import ProcessingElement
from .pe_pair import DSP_RUN_PRODUCTS, PackedPEPair, pack_weights

__all__ = ["PEArray", "ARRAY_LATENCY", "tile_ports"]


#: Cycles from operands at the array's inputs to the finished sums in the PEs.
ARRAY_LATENCY = 2


def tile_ports(rows, acc_width):
    """The qualifier and drain ports of an output-stationary array of ``rows`` rows."""
    return {
        "valid": In(1),
        "first": In(1),
        "last": In(1),
        "shift": In(1),
        "column": Out(data.ArrayLayout(signed(acc_width), rows)),
    }


class PEArray(wiring.Component):
    """``rows x cols`` PEs computing one ``rows x cols`` output tile per pass.

    Every cycle the column vector ``a`` (one int8 per row) and the row vector
    ``b`` (one int8 per column) are broadcast across the array, and PE
    ``(i, j)`` accumulates ``a[i] * b[j]``: an outer product per cycle, so a
    tile of depth ``K`` takes ``K`` cycles at ``rows * cols`` MACs per cycle.

    When the ``last`` product of a tile has been accumulated
    (:data:`ARRAY_LATENCY` cycles after it entered), every PE copies its sum
    into its result register. With ``shift`` high the result registers of each
    row move one place towards column 0, so :attr:`column` shows the finished
    tile's column ``0, 1, ..., cols-1`` on consecutive shift cycles while the
    next tile is already accumulating. The next tile's ``last`` may enter at
    most every ``cols`` cycles.

    With ``macs_per_dsp=2`` each pair of adjacent columns is one
    :class:`PackedPEPair` per row: one DSP48E2 multiplies the row's activation
    by both columns' weights, packed once per column pair here. The array
    cuts each sum into runs of :data:`DSP_RUN_PRODUCTS` products for the
    pairs' DSP accumulators. Latency, throughput and results are those of the
    ``macs_per_dsp=1`` array, on half the multipliers.

    Parameters
    ----------
    rows, cols : int
        Array size (logical MACs; ``cols`` is even when ``macs_per_dsp`` is 2).
    acc_width : int
        Accumulator width of each PE.
    macs_per_dsp : int
        1: a :class:`ProcessingElement` (one multiplier) per MAC; 2: a
        :class:`PackedPEPair` per two MACs of a row.

    Attributes
    ----------
    a : ``In(ArrayLayout(signed(8), rows))``
    b : ``In(ArrayLayout(signed(8), cols))``
    valid, first, last : ``In(1)``
        Qualifiers of ``a``/``b``, see :class:`ProcessingElement`.
    shift : ``In(1)``
        Advance the drain chain by one column.
    column : ``Out(ArrayLayout(signed(acc_width), rows))``
        Result registers of column 0.
    """

    def __init__(self, *, rows, cols, acc_width, macs_per_dsp=1):
        super().__init__({
            "a": In(data.ArrayLayout(signed(OPERAND_BITS), rows)),
            "b": In(data.ArrayLayout(signed(OPERAND_BITS), cols)),
            **tile_ports(rows, acc_width),
        })
        self._rows = rows
        self._cols = cols
        self._acc_width = acc_width
        self._macs_per_dsp = macs_per_dsp

    def elaborate(self, platform):
        m = Module()
        if self._macs_per_dsp == 2:
            self._add_pairs(m)
        else:
            self._add_single_pes(m)
        return m

    def _add_single_pes(self, m):
        for i in range(self._rows):
            row = [ProcessingElement(self._acc_width) for _ in range(self._cols)]
            for j, pe in enumerate(row):
                m.submodules[f"pe_{i}_{j}"] = pe
                m.d.comb += [
                    pe.a.eq(self.a[i]),
                    pe.b.eq(self.b[j]),
                    pe.valid.eq(self.valid),
                    pe.first.eq(self.first),
                    pe.last.eq(self.last),
                    pe.shift.eq(self.shift),
                ]
                if j + 1 < self._cols:
                    m.d.comb += pe.shift_in.eq(row[j + 1].result)
            m.d.comb += self.column[i].eq(row[0].result)

    def _add_pairs(self, m):
        # The DSP accumulator's runs: the same for every pair, so counted once.
        run_count = Signal(range(DSP_RUN_PRODUCTS))     # products already in P
        run_fresh = Signal()                            # the run in P began the sum
        restart = Signal()
        dump = Signal()
        fresh = Signal()
        m.d.comb += [
            restart.eq(self.first | (run_count == 0)),
            dump.eq(self.last | (run_count == DSP_RUN_PRODUCTS - 1)),
            fresh.eq(self.first | run_fresh),
        ]
        with m.If(self.valid):
            with m.If(dump):
                m.d.sync += run_count.eq(0)
            with m.Else():
                m.d.sync += run_count.eq(Mux(restart, 1, run_count + 1))
            m.d.sync += run_fresh.eq(fresh & ~dump)

        pairs = self._cols // 2
        packed = [pack_weights(self.b[2 * p], self.b[2 * p + 1]) for p in range(pairs)]
        for i in range(self._rows):
            row = [PackedPEPair(self._acc_width) for _ in range(pairs)]
            for p, pair in enumerate(row):
                m.submodules[f"pe_pair_{i}_{p}"] = pair
                m.d.comb += [
                    pair.a.eq(self.a[i]),
                    pair.packed.eq(packed[p]),
                    pair.valid.eq(self.valid),
                    pair.restart.eq(restart),
                    pair.dump.eq(dump),
                    pair.fresh.eq(fresh),
                    pair.last.eq(self.last),
                    pair.shift.eq(self.shift),
                ]
                if p + 1 < pairs:
                    m.d.comb += pair.shift_in.eq(row[p + 1].results[0])
            m.d.comb += self.column[i].eq(row[0].results[0])
