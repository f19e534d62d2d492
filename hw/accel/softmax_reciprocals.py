"""SOFTMAX's once-per-row reciprocals: dividers shared by the lanes, lanes in turn."""

from amaranth import Array, Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..nonlinear.divider import SequentialDivider
from ..numerics import (EXP_AT_ZERO_MIN_BITS, EXP_BITS, OPERAND_BITS, SOFTMAX_RECIPROCAL_BITS,
                        softmax_one)
from .row_units import row_units

__all__ = ["SoftmaxReciprocals", "reciprocals_cycles", "SUM_BITS", "QUOTIENT_BITS"]

#: A row's sum of ``exp_q15``: rows up to ``2**16`` long.
SUM_BITS = EXP_BITS + 16
_DIVIDEND_BITS = OPERAND_BITS - 1 + SOFTMAX_RECIPROCAL_BITS
#: The reciprocal's bits: the sum is at least ``exp_q15(0) >= 2**EXP_AT_ZERO_MIN_BITS``.
QUOTIENT_BITS = _DIVIDEND_BITS - EXP_AT_ZERO_MIN_BITS
_ONE = softmax_one(OPERAND_BITS)          # int8 probabilities, scale 1/127


def reciprocals_cycles(lanes, units):
    """Cycles of :class:`SoftmaxReciprocals` from ``start`` to ``busy`` falling: one to
    start, then ``ceil(lanes / units)`` divisions of ``QUOTIENT_BITS + 1`` cycles in each
    unit, and one to the registers."""
    return 1 + -(-lanes // units) * (QUOTIENT_BITS + 1) + 1


class SoftmaxReciprocals(wiring.Component):
    """``reciprocal = (127 << SOFTMAX_RECIPROCAL_BITS) // sum`` of every lane's row sum.

    ``softmax_rows`` of ``docs/numerics.md``. ``units`` :class:`SequentialDivider`
    serve the lanes, unit ``u`` the lanes ``u, u + units, ...`` in turn, one
    division after the other (``QUOTIENT_BITS + 1`` cycles each), all units at
    once. :attr:`busy` rises in the cycle after ``start`` and falls
    :func:`reciprocals_cycles` cycles after it, every lane's :attr:`reciprocal`
    written, which then holds until the next ``start``. The sums must hold
    while :attr:`busy` and be at least ``2**EXP_AT_ZERO_MIN_BITS``.

    Parameters
    ----------
    lanes : int
    units : int or None
        Shared dividers; :func:`row_units` of ``lanes`` by default.

    Attributes
    ----------
    start : ``In(1)``
        Pulse while not :attr:`busy`.
    sums : ``In(ArrayLayout(unsigned(SUM_BITS), lanes))``
    busy : ``Out(1)``
    reciprocal : ``Out(ArrayLayout(unsigned(QUOTIENT_BITS), lanes))``
    """

    def __init__(self, *, lanes, units=None):
        self._lanes = lanes
        self._units = row_units(lanes, units)
        super().__init__({
            "start": In(1),
            "sums": In(data.ArrayLayout(SUM_BITS, lanes)),
            "busy": Out(1),
            "reciprocal": Out(data.ArrayLayout(QUOTIENT_BITS, lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        active = []
        for unit in range(self._units):
            served = range(unit, self._lanes, self._units)
            divider = SequentialDivider(dividend_width=_DIVIDEND_BITS, divisor_width=SUM_BITS,
                                        quotient_width=QUOTIENT_BITS)
            m.submodules[f"divider_{unit}"] = divider
            started = Signal(range(len(served) + 1), name=f"started_{unit}")
            fresh = Signal(name=f"fresh_{unit}")           # nothing started since start
            running = Signal(name=f"running_{unit}")
            m.d.comb += [
                divider.dividend.eq(_ONE << SOFTMAX_RECIPROCAL_BITS),
                divider.divisor.eq(Array(self.sums[lane] for lane in served)[started]),
                divider.start.eq(running & (fresh | divider.done) & (started < len(served))),
            ]
            with m.If(divider.start):
                m.d.sync += [started.eq(started + 1), fresh.eq(0)]
            for index, lane in enumerate(served):
                with m.If(divider.done & (started == index + 1)):
                    m.d.sync += self.reciprocal[lane].eq(divider.quotient)
            with m.If(divider.done & (started == len(served))):
                m.d.sync += running.eq(0)
            with m.If(self.start):
                m.d.sync += [started.eq(0), fresh.eq(1), running.eq(1)]
            active.append(running)
        m.d.comb += self.busy.eq(Cat(*active).any())
        return m
