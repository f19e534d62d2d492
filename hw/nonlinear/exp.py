"""Integer exp with range reduction and a quadratic polynomial."""

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_positive_int

__all__ = ["ExpUnit", "ExpParams", "EXP_LATENCY"]

#: Register stages from :attr:`ExpUnit.n` to :attr:`ExpUnit.e` (cycles with ``enable``).
EXP_LATENCY = 5


class ExpParams(data.Struct):
    """Run-time parameters, see ``vitforge.sw.nonlinear.softmax.exp_params``."""
    ratio: unsigned(24)     # scale / ln 2 in Q.20
    alpha: unsigned(16)     # Q0.16
    beta: unsigned(16)      # Q1.15
    gamma: unsigned(16)     # Q0.15


class ExpUnit(wiring.Component):
    """``e ~ exp(-n * scale) * 2**15`` for ``lanes`` values ``0 <= n <= 255`` per cycle.

    Exactly ``exp_q15`` of ``docs/numerics.md``: ``w = n * ratio`` splits into
    the shift ``z`` (integer part) and ``phi`` (15 fraction bits);
    ``e = ((alpha * (beta - phi)**2) >> 31) + gamma`` approximates
    ``2**-phi`` and is shifted right by ``z`` (truncating; 0 for ``z >= 16``).

    Pipeline: product, split, square, polynomial, shift: :data:`EXP_LATENCY`
    stages, all advancing together while ``enable`` is high (so a stalled
    consumer can freeze it). One vector per enabled cycle.

    Parameters
    ----------
    lanes : int

    Attributes
    ----------
    enable : ``In(1)``
    params : ``In(ExpParams)``
        Held constant while values are in flight.
    n : ``In(ArrayLayout(unsigned(8), lanes))``
    e : ``Out(ArrayLayout(unsigned(16), lanes))``
    """

    def __init__(self, *, lanes):
        check_positive_int("lanes", lanes)
        super().__init__({
            "enable": In(1),
            "params": In(ExpParams),
            "n": In(data.ArrayLayout(unsigned(8), lanes)),
            "e": Out(data.ArrayLayout(unsigned(16), lanes)),
        })
        self._lanes = lanes

    def elaborate(self, platform):
        m = Module()
        params = self.params
        for lane in range(self._lanes):
            w = Signal(32, name=f"w_{lane}")
            z = Signal(range(17), name=f"z_{lane}")
            d = Signal(17, name=f"d_{lane}")
            z_3 = Signal.like(z, name=f"z3_{lane}")
            square = Signal(34, name=f"square_{lane}")
            z_4 = Signal.like(z, name=f"z4_{lane}")
            poly = Signal(17, name=f"poly_{lane}")
            whole = w[20:]
            with m.If(self.enable):
                m.d.sync += [
                    w.eq(self.n[lane] * params.ratio),
                    z.eq(Mux(whole >= 16, 16, whole)),
                    d.eq(params.beta - w[5:20]),
                    z_3.eq(z),
                    square.eq(d * d),
                    z_4.eq(z_3),
                    poly.eq(((params.alpha * square) >> 31) + params.gamma),
                    self.e[lane].eq(Mux(z_4 == 16, 0, poly >> z_4)),
                ]
        return m
