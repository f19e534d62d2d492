"""LAYERNORM's once-per-row statistics: square roots and reciprocals shared by the lanes."""

from functools import reduce
from operator import or_

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..dsp import joined, registered_halves
from ..nonlinear.divider import SequentialDivider
from ..nonlinear.isqrt import SequentialSqrt
from ..numerics import (CENTRED_BITS, EPS_BITS, LAYERNORM_QUOTIENT_BITS,
                        LAYERNORM_RECIPROCAL_BITS, MAX_CHANNELS, MAX_PRODUCT, NORMALIZE_SHIFT,
                        NORMALIZED_BITS, SQRT_GUARD_BITS)
from .config import SIZE_BITS
from .row_units import row_units

__all__ = ["LayerNormStatistics", "statistics_period", "statistics_cycles", "SUM_SHAPE",
           "SQUARE_SUM_SHAPE", "PRODUCT_BITS"]

#: A lane's ``s1`` (``|s1| <= 128 * C``), in the width of ``C * x - s1``.
SUM_SHAPE = signed(CENTRED_BITS)
#: A lane's ``s2 <= 16384 * C``.
SQUARE_SUM_SHAPE = signed(bits_for(MAX_PRODUCT * MAX_CHANNELS, require_sign_bit=True))
#: The low bits of ``(C * x - s1) * r`` that ``z`` (``NORMALIZED_BITS`` bits from bit
#: ``NORMALIZE_SHIFT``) depends on: the products are computed modulo ``2**PRODUCT_BITS``.
PRODUCT_BITS = NORMALIZE_SHIFT + NORMALIZED_BITS
# D = C * s2 - s1**2 + eps <= C * 16384 * C + eps.
_DEVIATION_BITS = bits_for(MAX_CHANNELS * MAX_PRODUCT * MAX_CHANNELS + (1 << EPS_BITS) - 1,
                           require_sign_bit=True)
_SQRT_WIDTH = _DEVIATION_BITS + SQRT_GUARD_BITS
# From a unit's start to its done pulse, in which it may start again.
_SQRT_CYCLES = -(-_SQRT_WIDTH // 2) + 1
_DIVISION_CYCLES = LAYERNORM_QUOTIENT_BITS + 1
# Registers from a lane's issue to its D: the lane's sums, their products, D.
_D_STAGES = 3
# Registers from a lane's reciprocal to its scale and offset: the reciprocal, the products
# of its low and high bits, their sums.
_LEAVE_STAGES = 3
# The reciprocal's low bits: a product of them fits one DSP48E2 (27 x 18 signed).
_LOW_BITS = 17
#: The low half of ``|s1|`` in the square of the sums (``|s1| <= 2**(CENTRED_BITS - 1)``).
_SQUARE_LOW_BITS = CENTRED_BITS // 2


def statistics_period(units):
    """Cycles between the lanes of one of ``units`` units: the slower of the square root
    and the division, and at least one cycle per unit (each issues in its own cycle)."""
    return max(_SQRT_CYCLES, _DIVISION_CYCLES, units)


def statistics_cycles(lanes, units):
    """Cycles of :class:`LayerNormStatistics` from ``start`` to ``busy`` falling: the last
    lane's issue, three cycles for ``D``, the square root, the division and
    :data:`_LEAVE_STAGES` + 1 cycles to the registers."""
    last = lanes - 1
    issued = statistics_period(units) * (last // units) + last % units + 1
    return issued + _D_STAGES + _SQRT_CYCLES + _DIVISION_CYCLES + _LEAVE_STAGES + 1


class LayerNormStatistics(wiring.Component):
    """Each lane's ``scale = C * r`` and ``offset = s1 * r``, both modulo ``2**PRODUCT_BITS``.

    From a lane's sums ``s1``, ``s2`` (``layernorm_rows`` of ``docs/numerics.md``):
    ``D = C * s2 - s1**2 + eps``, ``s = isqrt(D << SQRT_GUARD_BITS)`` and
    ``r = 2**LAYERNORM_RECIPROCAL_BITS // s`` (0 when ``s == 0``). Then
    ``(C * x - s1) * r = x * scale - offset`` modulo ``2**PRODUCT_BITS``, which
    holds every bit that ``z = ((C * x - s1) * r) >> NORMALIZE_SHIFT`` keeps
    (``NORMALIZED_BITS`` of them), so the streaming pass needs one multiply.

    ``units`` square-root/divider pairs (:class:`SequentialSqrt`, 27 cycles
    from start to done; :class:`SequentialDivider`, 34) serve the lanes, unit ``u`` the lanes
    ``u, u + units, ...`` in turn, the next lane's root beside the last one's
    division. One pipeline for ``D`` (a register for the lane's sums, then
    one multiplier stage, then the sum) and one for ``scale`` and ``offset``
    (the products of the reciprocal's low 17 and high 16 bits, one DSP48E2
    each, then their sums) serve every unit: lane ``l`` is issued
    ``1 + P * (l // units) + l % units`` cycles after ``start``
    (``P = statistics_period(units)``, 34 up to 34 units), so at most one lane
    a cycle enters or leaves them. :attr:`busy` rises in the cycle after
    ``start`` and falls :func:`statistics_cycles` cycles after it, every lane's
    :attr:`scale` and :attr:`offset` written, which then hold until the next
    ``start``. The inputs must hold while :attr:`busy`.

    Parameters
    ----------
    lanes : int
    units : int or None
        Shared square-root/divider pairs; :func:`row_units` of ``lanes`` by default.

    Attributes
    ----------
    start : ``In(1)``
        Pulse while not :attr:`busy`.
    channels : ``In(SIZE_BITS)``
        ``C``.
    eps : ``In(EPS_BITS)``
    s1 : ``In(ArrayLayout(SUM_SHAPE, lanes))``
    s2 : ``In(ArrayLayout(SQUARE_SUM_SHAPE, lanes))``
    busy : ``Out(1)``
    scale, offset : ``Out(ArrayLayout(unsigned(PRODUCT_BITS), lanes))``
    """

    def __init__(self, *, lanes, units=None):
        self._lanes = lanes
        self._units = row_units(lanes, units)
        words = data.ArrayLayout(unsigned(PRODUCT_BITS), lanes)
        super().__init__({
            "start": In(1),
            "channels": In(SIZE_BITS),
            "eps": In(EPS_BITS),
            "s1": In(data.ArrayLayout(SUM_SHAPE, lanes)),
            "s2": In(data.ArrayLayout(SQUARE_SUM_SHAPE, lanes)),
            "busy": Out(1),
            "scale": Out(words),
            "offset": Out(words),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, units = self._lanes, self._units
        period = statistics_period(units)

        # Issue: lane l in slot l % units of round l // units.
        slot = Signal(range(period))
        lane = Signal(range(lanes))
        issuing = Signal()
        issue = Signal()
        m.d.comb += issue.eq(issuing & (slot < units))
        with m.If(issuing):
            m.d.sync += slot.eq(Mux(slot == period - 1, 0, slot + 1))
        with m.If(issue):
            m.d.sync += lane.eq(lane + 1)
            with m.If(lane == lanes - 1):
                m.d.sync += issuing.eq(0)

        # D in three stages (the lane's sums, their products, then D), tagged with the unit.
        # The lanes' sums in issue order (shift registers: no multiplexer over the lanes).
        pending_s1, pending_s2 = Signal.like(self.s1), Signal.like(self.s2)
        with m.If(self.start):
            m.d.sync += [pending_s1.eq(self.s1), pending_s2.eq(self.s2)]
        with m.Elif(issue):
            m.d.sync += [pending_s1.eq(pending_s1.as_value() >> SUM_SHAPE.width),
                         pending_s2.eq(pending_s2.as_value() >> SQUARE_SUM_SHAPE.width)]
        issued_s1 = Signal(SUM_SHAPE.width)           # |s1|
        issued_s2 = Signal(SQUARE_SUM_SHAPE)
        square_sum = Signal(signed(SIZE_BITS + SQUARE_SUM_SHAPE.width + 1))
        # s1 * s1 is wider than one DSP48E2: |s1| times its low and high halves, one DSP
        # each, added into D in the stage after (no DSP and adder in one stage).
        sum_square = registered_halves(m, issued_s1, issued_s1, low_bits=_SQUARE_LOW_BITS,
                                       width=2 * SUM_SHAPE.width, name="sum_square")
        deviation = Signal(_DEVIATION_BITS)
        valid = Signal(_D_STAGES)
        unit = [Signal(range(units), name=f"unit_{stage}") for stage in range(_D_STAGES)]
        m.d.sync += [
            issued_s1.eq(abs(pending_s1[0])), issued_s2.eq(pending_s2[0]),
            square_sum.eq(self.channels * issued_s2),
            deviation.eq(square_sum - joined(sum_square, _SQUARE_LOW_BITS) + self.eps),
            valid.eq(Cat(issue, valid[:-1])),
            unit[0].eq(slot), *(later.eq(earlier) for earlier, later in zip(unit, unit[1:])),
        ]

        # The units: a root, then its reciprocal, 0 for a zero root.
        reciprocals, done = [], []
        for index in range(units):
            sqrt = SequentialSqrt(width=_SQRT_WIDTH)
            divider = SequentialDivider(dividend_width=LAYERNORM_RECIPROCAL_BITS + 1,
                                        divisor_width=len(sqrt.root),
                                        quotient_width=LAYERNORM_QUOTIENT_BITS)
            m.submodules[f"sqrt_{index}"] = sqrt
            m.submodules[f"divider_{index}"] = divider
            zero = Signal(name=f"zero_{index}")
            m.d.comb += [
                sqrt.start.eq(valid[-1] & (unit[-1] == index)),
                sqrt.value.eq(deviation << SQRT_GUARD_BITS),
                divider.start.eq(sqrt.done),
                divider.dividend.eq(1 << LAYERNORM_RECIPROCAL_BITS),
                divider.divisor.eq(sqrt.root),
            ]
            with m.If(sqrt.done):
                m.d.sync += zero.eq(sqrt.root == 0)
            reciprocals.append(Mux(divider.done & ~zero, divider.quotient, 0))
            done.append(divider.done)

        # Lanes leave in the order they were issued, one a cycle at most.
        reciprocal = Signal(LAYERNORM_QUOTIENT_BITS)
        leaving = Signal()
        out_lane = Signal(range(lanes))
        scale = Signal(PRODUCT_BITS)
        offset = Signal(PRODUCT_BITS)
        writing = Signal()
        write_lane = Signal(range(lanes))
        # The lanes' s1 in the order they leave: the head is the one leaving with
        # `reciprocal` (a shift register, not a multiplexer over the lanes).
        leaving_s1 = Signal.like(self.s1)
        with m.If(self.start):
            m.d.sync += leaving_s1.eq(self.s1)
        with m.Elif(leaving):
            m.d.sync += leaving_s1.eq(leaving_s1.as_value() >> SUM_SHAPE.width)
        # Each product in two halves of the reciprocal (one DSP48E2 each), summed in the
        # next stage: a product wider than a DSP is not one stage of DSPs and an adder.
        halves = {name: registered_halves(m, multiplicand, reciprocal, low_bits=_LOW_BITS,
                                          width=PRODUCT_BITS, name=name)
                  for name, multiplicand in (("scale", self.channels),
                                             ("offset", leaving_s1[0]))}
        products = Signal()
        product_lane = Signal(range(lanes))
        m.d.sync += [
            reciprocal.eq(reduce(or_, reciprocals)),
            leaving.eq(Cat(*done).any()),
            products.eq(leaving),
            scale.eq(joined(halves["scale"], _LOW_BITS)),
            offset.eq(joined(halves["offset"], _LOW_BITS)),
            writing.eq(products),
            product_lane.eq(out_lane),
            write_lane.eq(product_lane),
        ]
        with m.If(leaving):
            m.d.sync += out_lane.eq(out_lane + 1)
        with m.If(writing):
            m.d.sync += [self.scale[write_lane].eq(scale), self.offset[write_lane].eq(offset)]
            with m.If(write_lane == lanes - 1):
                m.d.sync += self.busy.eq(0)

        with m.If(self.start):
            m.d.sync += [self.busy.eq(1), issuing.eq(1), slot.eq(0), lane.eq(0),
                         out_lane.eq(0)]
        return m
