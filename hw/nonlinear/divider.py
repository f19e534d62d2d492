"""Sequential restoring divider: one quotient bit per cycle."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_positive_int

__all__ = ["SequentialDivider"]


class SequentialDivider(wiring.Component):
    """``quotient = dividend // divisor`` for unsigned integers.

    Restoring long division over the dividend's bits, most significant first.
    ``start`` (while not :attr:`busy`) latches both operands; :attr:`done`
    pulses ``dividend_width`` cycles later with :attr:`quotient` valid, which
    then holds until the next start. Throughput: one division per
    ``dividend_width + 1`` cycles. A zero divisor gives an all-ones quotient;
    callers exclude it.

    Parameters
    ----------
    dividend_width, divisor_width : int
        Operand widths; the quotient is ``dividend_width`` bits wide.
    """

    def __init__(self, *, dividend_width, divisor_width):
        check_positive_int("dividend_width", dividend_width)
        check_positive_int("divisor_width", divisor_width)
        self._dividend_width = dividend_width
        super().__init__({
            "start": In(1),
            "dividend": In(dividend_width),
            "divisor": In(divisor_width),
            "busy": Out(1),
            "done": Out(1),
            "quotient": Out(dividend_width),
        })

    def elaborate(self, platform):
        m = Module()
        width = self._dividend_width
        dividend = Signal(width)
        divisor = Signal.like(self.divisor)
        remainder = Signal(len(self.divisor) + 1)
        bit = Signal(range(width))                   # dividend bit taken next
        trial = Signal(len(self.divisor) + 2)
        m.d.comb += trial.eq(Cat(dividend.bit_select(bit, 1), remainder))
        fits = trial >= divisor
        m.d.sync += self.done.eq(0)
        with m.If(~self.busy & self.start):
            m.d.sync += [self.busy.eq(1), dividend.eq(self.dividend), divisor.eq(self.divisor),
                         remainder.eq(0), bit.eq(width - 1)]
        with m.Elif(self.busy):
            m.d.sync += [
                remainder.eq(Mux(fits, trial - divisor, trial)),
                self.quotient.eq(Cat(fits, self.quotient)),
                bit.eq(bit - 1),
            ]
            with m.If(bit == 0):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        return m
