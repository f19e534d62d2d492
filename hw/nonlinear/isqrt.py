"""Sequential integer square root: one result bit per cycle."""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_positive_int

__all__ = ["SequentialSqrt"]


class SequentialSqrt(wiring.Component):
    """``root = floor(sqrt(value))`` for an unsigned ``width``-bit value.

    Digit-by-digit (binary) square root over bit pairs, most significant
    first. ``start`` (while not :attr:`busy`) latches the value; :attr:`done`
    pulses ``ceil(width / 2)`` cycles later with :attr:`root` valid, which
    then holds until the next start.

    Parameters
    ----------
    width : int
        Width of the value; the root has ``ceil(width / 2)`` bits.
    """

    def __init__(self, *, width):
        check_positive_int("width", width)
        self._pairs = -(-width // 2)
        super().__init__({
            "start": In(1),
            "value": In(width),
            "busy": Out(1),
            "done": Out(1),
            "root": Out(self._pairs),
        })

    def elaborate(self, platform):
        m = Module()
        pairs = self._pairs
        value = Signal(2 * pairs)
        remainder = Signal(pairs + 2)
        pair = Signal(range(pairs))                  # bit pair taken next
        shifted = Signal(pairs + 4)
        trial = Signal(pairs + 4)
        m.d.comb += [
            shifted.eq(Cat(value.bit_select(pair * 2, 2), remainder)),
            trial.eq(Cat(Const(1, 2), self.root)),
        ]
        fits = shifted >= trial
        m.d.sync += self.done.eq(0)
        with m.If(~self.busy & self.start):
            m.d.sync += [self.busy.eq(1), value.eq(self.value), remainder.eq(0),
                         self.root.eq(0), pair.eq(pairs - 1)]
        with m.Elif(self.busy):
            m.d.sync += [
                remainder.eq(Mux(fits, shifted - trial, shifted)),
                self.root.eq(Cat(fits, self.root)),
                pair.eq(pair - 1),
            ]
            with m.If(pair == 0):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        return m
