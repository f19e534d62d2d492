"""Per-output-channel requantization of int32 sums to int8."""

from amaranth import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..numerics import (BIAS_BITS, MULTIPLIER_BITS, OPERAND_BITS, OPERAND_MAX, OPERAND_MIN,
                        REQUANT_PRODUCT_BITS, REQUANT_SUM_BITS, SHIFT_BITS)

__all__ = ["Requantizer", "RequantParams", "REQUANT_LATENCY"]


#: Cycles from :attr:`Requantizer.i_valid` to :attr:`Requantizer.o_valid`.
REQUANT_LATENCY = 6

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

    Pipeline, one register after each step, so that no multiplier or wide
    adder shares a cycle with another: the bias add; the low bits' product;
    the high part's product; their sum; the shift; the rounding and
    saturation. Latency :data:`REQUANT_LATENCY` cycles, one vector per cycle.
    The first step's registers load in valid cycles only, so that parameters
    read before a memory's first read (X in a 4-state simulator) reach no
    register.

    The 33 x 16 bit product takes one DSP48E2 (27 x 18 bits) per lane, not
    two: the sum is split as ``sum = high * 2**6 + low`` (``high`` signed,
    27 bits; ``low`` unsigned, 6 bits). ``low * multiplier`` is computed in
    LUTs (three 2-bit digits of ``low`` select 0, 1, 2 or 3 times the
    multiplier, and the selections are summed; 3 times the multiplier is
    one adder shared by the lanes). Then ``high * multiplier + (low *
    multiplier >> 6)`` (a multiply-add, for the DSP's post-adder) forms the
    product above its 6 low bits, which are those of ``low * multiplier``.

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
        lanes = range(self._lanes)

        def delayed(value, name, stages):
            """``value`` through ``stages`` registers: the last one."""
            for stage in range(stages):
                register = Signal.like(value, name=f"{name}_{stage + 1}")
                m.d.sync += register.eq(value)
                value = register
            return value

        # Stage 1, loaded in valid cycles only: add the bias; three times the multiplier.
        totals = [Signal(signed(REQUANT_SUM_BITS), name=f"total_{lane}") for lane in lanes]
        multiplier_3 = Signal(MULTIPLIER_BITS + 2)
        with m.If(self.i_valid):
            m.d.sync += [total.eq(self.i_acc[lane] + self.i_params.bias)
                         for lane, total in enumerate(totals)]
            multiplier_1 = delayed(self.i_params.multiplier, "multiplier", 1)
            m.d.sync += multiplier_3.eq(self.i_params.multiplier + (self.i_params.multiplier << 1))
            shift = delayed(self.i_params.shift, "shift", 1)
        valid = delayed(self.i_valid, "valid", 1)

        # Stage 2: the sum's LOW_BITS low bits times the multiplier, in fabric.
        multiples = (0, multiplier_1, multiplier_1 << 1, multiplier_3)
        low_products = [Signal(unsigned(LOW_BITS + MULTIPLIER_BITS), name=f"low_product_{lane}")
                        for lane in lanes]
        m.d.sync += [low_product.eq(_fabric_product(total[:LOW_BITS], multiples))
                     for total, low_product in zip(totals, low_products)]
        highs = [delayed(total[LOW_BITS:].as_signed(), f"high_{lane}", 1)
                 for lane, total in enumerate(totals)]
        multiplier_2 = delayed(multiplier_1, "multiplier", 1)

        # Stage 3: the high part's product, alone on the DSP.
        high_products = [Signal(signed(REQUANT_PRODUCT_BITS - LOW_BITS),
                                name=f"high_product_{lane}") for lane in lanes]
        m.d.sync += [high_product.eq(high * multiplier_2)
                     for high, high_product in zip(highs, high_products)]
        low_products = [delayed(low_product, f"low_product_{lane}", 1)
                        for lane, low_product in enumerate(low_products)]

        # Stage 4: the product, the low product's upper bits added (the DSP's post-adder
        # in Vivado; Yosys 0.23 leaves it in LUTs).
        products = [Signal(signed(REQUANT_PRODUCT_BITS), name=f"product_{lane}")
                    for lane in lanes]
        m.d.sync += [product.eq(Cat(low_product[:LOW_BITS],
                                    high_product + low_product[LOW_BITS:]))
                     for low_product, high_product, product
                     in zip(low_products, high_products, products)]
        shift = delayed(shift, "shift", 2)
        shift_zero = Signal()
        shift_minus_1 = Signal(unsigned(SHIFT_BITS))
        m.d.sync += [shift_zero.eq(shift == 0), shift_minus_1.eq(shift - 1)]

        # Stage 5: shift right arithmetically by shift - 1. Stage 6: round half up,
        # saturate. For shift > 0, (p + 2**(shift-1)) >> shift ==
        # ((p >> (shift-1)) + 1) >> 1 =: r. Only r's low 8 bits are kept, which take a
        # 9-bit adder; whether r saturates is read from the shifted value s, without an
        # adder: r > 127 when s > 254, r < -128 when s < -257.
        zero = delayed(shift_zero, "shift_zero", 1)
        for lane, product in enumerate(products):
            shifted = Signal(signed(REQUANT_PRODUCT_BITS), name=f"shifted_{lane}")
            m.d.sync += shifted.eq(Mux(shift_zero, product, product >> shift_minus_1))
            rounded = Mux(zero, shifted[:OPERAND_BITS],
                          (shifted[:OPERAND_BITS + 1] + 1)[1:OPERAND_BITS + 1])
            above = Mux(zero, _exceeds(shifted, OPERAND_MAX),
                        _exceeds(shifted, 2 * OPERAND_MAX))
            below = Mux(zero, _exceeds(~shifted, -OPERAND_MIN - 1),
                        _exceeds(~shifted, -2 * OPERAND_MIN))
            m.d.sync += self.o_data[lane].eq(
                Mux(above, OPERAND_MAX, Mux(below, OPERAND_MIN, rounded.as_signed())))
        m.d.sync += self.o_valid.eq(delayed(valid, "valid", REQUANT_LATENCY - 2))
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


def _exceeds(value, limit):
    """``value > limit`` for a signed ``value`` and a ``limit`` in ``[0, 512)``, from
    ``value``'s bits above the ninth (any set, the sign clear) and a 9-bit comparison of the
    rest: no carry chain as wide as ``value``."""
    return ~value[-1] & (value[9:].any() | (value[:9] > limit))
