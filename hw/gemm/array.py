"""Output-stationary array of processing elements with column-wise drain."""

from amaranth import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..numerics import OPERAND_BITS
from .pe import ProcessingElement

__all__ = ["PEArray", "ARRAY_LATENCY"]


#: Cycles from operands at the array's inputs to the finished sums in the PEs.
ARRAY_LATENCY = 2


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

    Parameters
    ----------
    rows, cols : int
        Array size.
    acc_width : int
        Accumulator width of each PE.

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

    def __init__(self, *, rows, cols, acc_width):
        super().__init__({
            "a": In(data.ArrayLayout(signed(OPERAND_BITS), rows)),
            "b": In(data.ArrayLayout(signed(OPERAND_BITS), cols)),
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "shift": In(1),
            "column": Out(data.ArrayLayout(signed(acc_width), rows)),
        })
        self._rows = rows
        self._cols = cols
        self._acc_width = acc_width

    def elaborate(self, platform):
        m = Module()
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
        return m
