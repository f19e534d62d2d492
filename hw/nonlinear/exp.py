"""Integer exp with range reduction and a quadratic polynomial."""

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_lanes
from ..dsp import joined, registered_halves
from ..numerics import (COEFFICIENT_BITS, EXP_BITS, EXP_POLYNOMIAL_SHIFT, EXP_PRODUCT_BITS,
                        EXP_SHIFT_LIMIT, OPERAND_BITS, PHI_BITS, RATIO_BITS, RATIO_FRACTION_BITS)

__all__ = ["ExpUnit", "ExpParamsLayout", "EXP_LATENCY"]

#: Register stages from :attr:`ExpUnit.n` to :attr:`ExpUnit.e` (cycles with ``enable``).
EXP_LATENCY = 6
#: The square's low bits in the first of the polynomial product's two DSP48E2 (17 x 16).
_LOW_BITS = 17


class ExpParamsLayout(data.Struct):
    """Run-time parameters, see ``vitforge.sw.params.softmax.exp_params``."""
    ratio: unsigned(RATIO_BITS)         # scale / ln 2 in Q.20
    alpha: unsigned(COEFFICIENT_BITS)   # Q0.16
    beta: unsigned(COEFFICIENT_BITS)    # Q1.15
    gamma: unsigned(COEFFICIENT_BITS)   # Q0.15


class ExpUnit(wiring.Component):
    """``e ~ exp(-n * scale) * 2**15`` for ``lanes`` values ``0 <= n <= 255`` per cycle.

    Exactly ``exp_q15`` of ``docs/numerics.md``: ``w = n * ratio`` splits into
    the shift ``z`` (integer part) and ``phi`` (15 fraction bits);
    ``e = ((alpha * (beta - phi)**2) >> 31) + gamma`` approximates
    ``2**-phi`` and is shifted right by ``z`` (truncating; 0 for ``z >= 16``).

    Pipeline: product, split, square, the polynomial's product (as two
    products of the square's low and high halves, one DSP48E2 each), its
    sum, shift: :data:`EXP_LATENCY`
    stages, all advancing together while ``enable`` is high (so a stalled
    consumer can freeze it). One vector per enabled cycle.

    Parameters
    ----------
    lanes : int

    Attributes
    ----------
    enable : ``In(1)``
    params : ``In(ExpParamsLayout)``
        Held constant while values are in flight.
    n : ``In(ArrayLayout(unsigned(8), lanes))``
    e : ``Out(ArrayLayout(unsigned(16), lanes))``
    """

    def __init__(self, *, lanes):
        check_lanes("lanes", lanes)
        super().__init__({
            "enable": In(1),
            "params": In(ExpParamsLayout),
            "n": In(data.ArrayLayout(unsigned(OPERAND_BITS), lanes)),
            "e": Out(data.ArrayLayout(unsigned(EXP_BITS), lanes)),
        })
        self._lanes = lanes

    def elaborate(self, platform):
        m = Module()
        params = self.params
        for lane in range(self._lanes):
            w = Signal(EXP_PRODUCT_BITS, name=f"w_{lane}")
            z = Signal(range(EXP_SHIFT_LIMIT + 1), name=f"z_{lane}")
            d = Signal(COEFFICIENT_BITS + 1, name=f"d_{lane}")
            z_3 = Signal.like(z, name=f"z3_{lane}")
            square = Signal(2 * len(d), name=f"square_{lane}")
            z_4 = Signal.like(z, name=f"z4_{lane}")
            z_5 = Signal.like(z, name=f"z5_{lane}")
            poly = Signal(EXP_BITS + 1, name=f"poly_{lane}")
            whole = w[RATIO_FRACTION_BITS:]
            phi = w[RATIO_FRACTION_BITS - PHI_BITS:RATIO_FRACTION_BITS]
            with m.If(self.enable):
                weighted = registered_halves(m, params.alpha, square, low_bits=_LOW_BITS,
                                             width=len(params.alpha) + len(square),
                                             name=f"weighted_{lane}")
                m.d.sync += [
                    w.eq(self.n[lane] * params.ratio),
                    z.eq(Mux(whole >= EXP_SHIFT_LIMIT, EXP_SHIFT_LIMIT, whole)),
                    d.eq(params.beta - phi),
                    z_3.eq(z),
                    square.eq(d * d),
                    z_4.eq(z_3),
                    z_5.eq(z_4),
                    poly.eq((joined(weighted, _LOW_BITS) >> EXP_POLYNOMIAL_SHIFT)
                            + params.gamma),
                    self.e[lane].eq(Mux(z_5 == EXP_SHIFT_LIMIT, 0, poly >> z_5)),
                ]
        return m
