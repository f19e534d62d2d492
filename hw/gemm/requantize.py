"""Per-output-channel requantization of int32 sums to int8."""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..numerics import (BIAS_BITS, MULTIPLIER_BITS, OPERAND_BITS, OPERAND_MAX, OPERAND_MIN,
                        REQUANT_PRODUCT_BITS, REQUANT_SUM_BITS, SHIFT_BITS)

__all__ = ["Requantizer", "RequantParams", "REQUANT_LATENCY"]


#: Cycles from :attr:`Requantizer.i_valid` to :attr:`Requantizer.o_valid`.
REQUANT_LATENCY = 3


class RequantParams(data.Struct):
    """Requantization parameters of one output channel (``docs/numerics.md``)."""
    bias: signed(BIAS_BITS)
    multiplier: unsigned(MULTIPLIER_BITS)
    shift: unsigned(SHIFT_BITS)


class Requantizer(wiring.Component):
    """``lanes`` parallel requantizers sharing one channel's parameters.

    For each lane::

        y = saturate_int8(((acc + bias) * multiplier + round) >> shift)
        round = (1 << shift) >> 1          # round half up; 0 when shift == 0

    exactly as ``requantize`` in ``docs/numerics.md``: the sum is 33 bits, the
    product 50 bits, the shift arithmetic (towards minus infinity after the
    rounding offset), and the result saturates to ``[-128, 127]``.

    Pipeline: bias add, multiply, round/shift/saturate, one register each:
    latency :data:`REQUANT_LATENCY` cycles, one vector per cycle.

    Parameters
    ----------
    lanes : int
        Values per vector (the PE array's rows).
    acc_width : int
        Width of the incoming sums (signed, at most 32).

    Attributes
    ----------
    i_valid : ``In(1)``
    i_acc : ``In(ArrayLayout(signed(acc_width), lanes))``
    i_params : ``In(RequantParams)``
        Parameters of the channel ``i_acc`` belongs to, in the same cycle.
    o_valid : ``Out(1)``
    o_data : ``Out(ArrayLayout(signed(8), lanes))``
    """

    def __init__(self, *, lanes, acc_width):
        super().__init__({
            "i_valid": In(1),
            "i_acc": In(data.ArrayLayout(signed(acc_width), lanes)),
            "i_params": In(RequantParams),
            "o_valid": Out(1),
            "o_data": Out(data.ArrayLayout(signed(OPERAND_BITS), lanes)),
        })
        self._lanes = lanes

    def elaborate(self, platform):
        m = Module()

        # Stage 1: add the bias.
        sums = [Signal(signed(REQUANT_SUM_BITS), name=f"sum_{lane}")
                for lane in range(self._lanes)]
        multiplier_1 = Signal(unsigned(MULTIPLIER_BITS))
        shift_1 = Signal(unsigned(SHIFT_BITS))
        valid_1 = Signal()
        m.d.sync += [sum_.eq(self.i_acc[lane] + self.i_params.bias)
                     for lane, sum_ in enumerate(sums)]
        m.d.sync += [multiplier_1.eq(self.i_params.multiplier),
                     shift_1.eq(self.i_params.shift), valid_1.eq(self.i_valid)]

        # Stage 2: scale by the multiplier.
        products = [Signal(signed(REQUANT_PRODUCT_BITS), name=f"product_{lane}")
                    for lane in range(self._lanes)]
        shift_2 = Signal(unsigned(SHIFT_BITS))
        shift_minus_1_2 = Signal(unsigned(SHIFT_BITS))
        valid_2 = Signal()
        m.d.sync += [product.eq(sum_ * multiplier_1) for sum_, product in zip(sums, products)]
        m.d.sync += [shift_2.eq(shift_1), shift_minus_1_2.eq(shift_1 - 1), valid_2.eq(valid_1)]

        # Stage 3: round half up, shift right arithmetically, saturate. For
        # shift > 0, (p + 2**(shift-1)) >> shift == ((p >> (shift-1)) + 1) >> 1,
        # which needs no adder wider than the product.
        for lane, product in enumerate(products):
            shifted = Signal(signed(REQUANT_PRODUCT_BITS), name=f"shifted_{lane}")
            halved = (((product >> shift_minus_1_2) + 1) >> 1)
            m.d.comb += shifted.eq(Mux(shift_2 == 0, product, halved))
            m.d.sync += self.o_data[lane].eq(
                Mux(shifted > OPERAND_MAX, OPERAND_MAX,
                    Mux(shifted < OPERAND_MIN, OPERAND_MIN, shifted)))
        m.d.sync += self.o_valid.eq(valid_2)
        return m
