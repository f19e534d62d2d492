"""``round_div(n, d)`` to int8: a sequential restoring divider for quotients known to fit."""

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..numerics import OPERAND_BITS

__all__ = ["RoundingDivider"]


class RoundingDivider(wiring.Component):
    """``floor((2 n + d) / (2 d))`` (round half up, :func:`vitforge.sw.golden.selector.round_div`).

    Only for quotients in the int8 range (means of int8 values): the divider
    computes the offset quotient ``q + 128 = floor((2 n + 257 d) / (2 d))``,
    in ``0 .. 255``, whose dividend is never negative, by 8 restoring steps
    (one compare-subtract of the divisor ``2 d << b`` per cycle, ``b = 7 .. 0``),
    and gives ``q`` back by flipping the quotient's top bit.

    Latency: ``start`` in cycle 0 (``numerator`` and ``denominator`` are taken
    then), ``done`` high in cycle 9 (:attr:`LATENCY`), ``quotient`` valid from
    then until the next ``start``. ``d == 0`` gives 127 (callers check it).

    Parameters
    ----------
    numerator_bits : int
        Width of the signed numerator ``n``.
    denominator_bits : int
        Width of the unsigned denominator ``d > 0``.
    """

    #: Cycles from ``start`` to ``done``.
    LATENCY = OPERAND_BITS + 1

    def __init__(self, numerator_bits, denominator_bits):
        self._widths = numerator_bits, denominator_bits
        super().__init__({"start": In(1), "numerator": In(signed(numerator_bits)),
                          "denominator": In(unsigned(denominator_bits)),
                          "quotient": Out(signed(OPERAND_BITS)), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        numerator_bits, denominator_bits = self._widths
        # 2 n + 257 d < 2 d * 256: the dividend is below the first divisor times two
        # (257 = 1 - 2 * OPERAND_MIN).
        remainder = Signal(max(numerator_bits, denominator_bits + OPERAND_BITS) + 2)
        divisor = Signal(denominator_bits + OPERAND_BITS)
        offset = Signal(OPERAND_BITS)                  # q + 128, built from the top bit
        steps = Signal(range(OPERAND_BITS + 1))
        m.d.sync += self.done.eq(0)
        m.d.comb += self.quotient.eq(offset ^ (1 << (OPERAND_BITS - 1)))
        with m.If(self.start):
            m.d.sync += [
                # 257 d as a shifted sum: no multiplier in the start cycle.
                remainder.eq(2 * self.numerator + (self.denominator << OPERAND_BITS)
                             + self.denominator),
                divisor.eq(self.denominator << OPERAND_BITS),        # 2 d << 7
                steps.eq(OPERAND_BITS),
            ]
        with m.Elif(steps != 0):
            fits = remainder >= divisor
            with m.If(fits):
                m.d.sync += remainder.eq(remainder - divisor)
            m.d.sync += [offset.eq((offset << 1) | fits), divisor.eq(divisor >> 1),
                         steps.eq(steps - 1)]
            with m.If(steps == 1):
                m.d.sync += self.done.eq(1)
        return m
