"""Sequential restoring divider: one quotient bit per cycle."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from vitforge.errors import ConfigError

from ..checks import check_positive_int

__all__ = ["SequentialDivider"]


class SequentialDivider(wiring.Component):
    """``quotient = dividend // divisor`` for unsigned integers.

    Restoring long division, one quotient bit per cycle, most significant
    first. When the caller knows the quotient has at most ``quotient_width``
    bits (``dividend >> quotient_width < divisor``), only those are computed.
    ``start`` (while not :attr:`busy`) latches both operands; :attr:`done`
    pulses ``quotient_width`` cycles later with :attr:`quotient` valid, which
    then holds until the next start. Throughput: one division per
    ``quotient_width + 1`` cycles. The result is undefined for a zero divisor
    or a quotient wider than ``quotient_width``; callers exclude both.

    Parameters
    ----------
    dividend_width, divisor_width : int
        Operand widths.
    quotient_width : int or None
        Bits of the quotient; ``dividend_width`` when not given.
    """

    def __init__(self, *, dividend_width, divisor_width, quotient_width=None):
        check_positive_int("dividend_width", dividend_width)
        check_positive_int("divisor_width", divisor_width)
        quotient_width = dividend_width if quotient_width is None else quotient_width
        check_positive_int("quotient_width", quotient_width)
        if quotient_width > dividend_width:
            raise ConfigError(f"quotient_width must be at most dividend_width="
                              f"{dividend_width}, not {quotient_width}")
        self._quotient_width = quotient_width
        super().__init__({
            "start": In(1),
            "dividend": In(dividend_width),
            "divisor": In(divisor_width),
            "busy": Out(1),
            "done": Out(1),
            "quotient": Out(quotient_width),
        })

    def elaborate(self, platform):
        m = Module()
        width = self._quotient_width
        dividend = Signal(width)
        divisor = Signal.like(self.divisor)
        remainder = Signal(len(self.divisor) + 1)
        bit = Signal(range(width))                   # dividend bit taken next
        trial = Signal(len(self.divisor) + 2)
        m.d.comb += trial.eq(Cat(dividend.bit_select(bit, 1), remainder))
        fits = trial >= divisor
        m.d.sync += self.done.eq(0)
        with m.If(~self.busy & self.start):
            m.d.sync += [self.busy.eq(1), dividend.eq(self.dividend[:width]),
                         divisor.eq(self.divisor), remainder.eq(self.dividend[width:]),
                         bit.eq(width - 1)]
        with m.Elif(self.busy):
            m.d.sync += [
                remainder.eq(Mux(fits, trial - divisor, trial)),
                self.quotient.eq(Cat(fits, self.quotient)),
                bit.eq(bit - 1),
            ]
            with m.If(bit == 0):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        return m
