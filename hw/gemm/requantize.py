"""Per-output-channel requantization of int32 sums to int8."""

from amaranth import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..numerics import (BIAS_BITS, MULTIPLIER_BITS, OPERAND_BITS, OPERAND_MAX, OPERAND_MIN,
                        REQUANT_PRODUCT_BITS, REQUANT_SUM_BITS, SHIFT_BITS)

__all__ = ["Requantizer", "RequantParams", "REQUANT_LATENCY"]


#: Cycles from :attr:`Requantizer.i_valid` to :attr:`Requantizer.o_valid`.
REQUANT_LATENCY = 3

#: Low bits of the 33-bit sum multiplied in fabric, so that the rest fits a
#: DSP48E2's 27-bit multiplier input.
LOW_BITS = REQUANT_SUM_BITS - 27


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

    The 33 x 16 bit product takes one DSP48E2 (27 x 18 bits) per lane, not
    two: the sum is split as ``sum = high * 2**6 + low`` (``high`` signed,
    27 bits; ``low`` unsigned, 6 bits). Stage 1 also computes ``low *
    multiplier`` in LUTs (three 2-bit digits of ``low`` select 0, 1, 2 or 3
    times the multiplier, and the selections are summed; 3 times the
    multiplier is one adder shared by the lanes). Stage 2 forms ``high *
    multiplier + (low * multiplier >> 6)`` (a multiply-add, for the DSP's
    post-adder; Yosys 0.23 leaves the adder in LUTs) above the product's 6
    low bits, which are those of ``low * multiplier``.

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

        # Stage 1: add the bias; multiply the sum's LOW_BITS low bits in fabric.
        sums = [Signal(signed(REQUANT_SUM_BITS), name=f"sum_{lane}")
                for lane in range(self._lanes)]
        low_products = [Signal(unsigned(LOW_BITS + MULTIPLIER_BITS), name=f"low_product_{lane}")
                        for lane in range(self._lanes)]
        multiplier_1 = Signal(unsigned(MULTIPLIER_BITS))
        shift_1 = Signal(unsigned(SHIFT_BITS))
        valid_1 = Signal()
        multiplier = self.i_params.multiplier
        multiplier_3 = Signal(MULTIPLIER_BITS + 2)
        m.d.comb += multiplier_3.eq(multiplier + (multiplier << 1))
        multiples = (0, multiplier, multiplier << 1, multiplier_3)
        for lane, (sum_, low_product) in enumerate(zip(sums, low_products)):
            total = Signal(signed(REQUANT_SUM_BITS), name=f"total_{lane}")
            m.d.comb += total.eq(self.i_acc[lane] + self.i_params.bias)
            m.d.sync += [sum_.eq(total),
                         low_product.eq(_fabric_product(total[:LOW_BITS], multiples))]
        m.d.sync += [multiplier_1.eq(multiplier),
                     shift_1.eq(self.i_params.shift), valid_1.eq(self.i_valid)]

        # Stage 2: the rest of the product, on the DSP.
        products = [Signal(signed(REQUANT_PRODUCT_BITS), name=f"product_{lane}")
                    for lane in range(self._lanes)]
        shift_2 = Signal(unsigned(SHIFT_BITS))
        shift_minus_1_2 = Signal(unsigned(SHIFT_BITS))
        valid_2 = Signal()
        for sum_, low_product, product in zip(sums, low_products, products):
            high = sum_[LOW_BITS:].as_signed()
            m.d.sync += product.eq(Cat(low_product[:LOW_BITS],
                                       high * multiplier_1 + low_product[LOW_BITS:]))
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


def _fabric_product(value, multiples):
    """``value * multiplier`` (unsigned) from ``multiples`` of the multiplier, in LUTs.

    ``multiples`` is ``(0, multiplier, 2 * multiplier, 3 * multiplier)``: each
    2-bit digit of ``value`` selects one, and the selections are summed with
    their weights. There is no ``*``, which Yosys would map to a DSP (it maps
    a ``$mul`` of as few as 2 x 2 bits, with a 9-bit product, to one).
    """
    return sum(Array(multiples)[value[index:index + 2]] << index
               for index in range(0, len(value), 2))
