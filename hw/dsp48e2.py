"""One DSP48E2 as a link of a multiply-add cascade: ``P <- addend + A * B``."""

from amaranth import ClockSignal, Const, Instance, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CascadeMultiplyAdd", "SynthesisTarget", "add_cascade", "MULTIPLICAND_BITS", "MULTIPLIER_BITS",
           "P_BITS", "CASCADE_LATENCY"]

#: Width of the multiplier's A input (UltraScale+ DSP48E2, UG579).
MULTIPLICAND_BITS = 27
#: Width of the multiplier's B input.
MULTIPLIER_BITS = 18
#: Width of the ``P`` register and of the ``PCIN``/``PCOUT`` cascade.
P_BITS = 48
#: Cycles from ``a``/``b`` to ``p``: the ``AREG``/``BREG``, ``MREG`` and ``PREG`` stages.
CASCADE_LATENCY = 3

# OPMODE fields (UG579, table 2-7): X = Y = M (the multiplier's two partial products).
_XY_MULTIPLIER = 0b0101
_Z_PCIN = 0b001 << 4
_W_RND = 0b10 << 7


class SynthesisTarget:
    """The ``platform`` of a netlist for synthesis rather than simulation.

    Under it, :class:`CascadeMultiplyAdd` elaborates to a ``DSP48E2`` primitive,
    so that Vivado and Yosys' resource estimate see the cascade and the adders
    exactly where the hardware has them (Yosys 0.23 keeps an inferred
    post-multiplier adder in fabric). Every other component ignores it.
    """

    dsp48e2_primitives = True


def add_cascade(m, length, *, round_constant, b_bits=MULTIPLIER_BITS):
    """``length`` :class:`CascadeMultiplyAdd` links added to ``m`` as ``link_0``, ...,
    each link's ``pcin`` driven by the previous one's ``pcout``; returns them. Link 0
    adds ``round_constant``; the caller drives every ``a`` and ``b``."""
    links = [CascadeMultiplyAdd(first=t == 0, round_constant=round_constant, b_bits=b_bits)
             for t in range(length)]
    for t, link in enumerate(links):
        m.submodules[f"link_{t}"] = link
        if t:
            m.d.comb += link.pcin.eq(links[t - 1].pcout)
    return links


class CascadeMultiplyAdd(wiring.Component):
    """``P <- addend + A * B`` on one DSP48E2, where the addend is the previous link's ``P``.

    A chain of these sums ``depth`` products in one DSP column, the partial sum
    travelling on the dedicated ``PCOUT -> PCIN`` cascade, with no fabric. The
    first link adds the constant ``round_constant`` instead (the ``RND``
    parameter through the W multiplexer), which is free.

    Pipeline: ``a`` and ``b`` are registered (``AREG = BREG = 1``), their
    product is registered (``MREG``), and ``P`` takes the sum (``PREG``): ``p``
    shows ``addend + a * b`` :data:`CASCADE_LATENCY` cycles after ``a`` and
    ``b``, where ``addend`` is ``pcin`` one cycle before ``p``. So link ``t``
    of a chain takes its operands ``t`` cycles after link 0. Throughput: one
    product per cycle. Every clock enable is high and no register resets;
    registers start at zero, as after configuration.

    Arithmetic is exact modulo ``2**48``: ``a * b`` is a 27 x 18 signed product.

    Under a :class:`SynthesisTarget` platform the block is a ``DSP48E2``
    instance with these settings (``OPMODE`` X = Y = M, Z = PCIN or W = RND,
    ``ALUMODE`` sum); otherwise it is behavioural Amaranth with the same cycle
    behaviour, which simulators run.

    Parameters
    ----------
    first : bool
        The chain's first link: it adds ``round_constant`` and ignores ``pcin``.
    round_constant : int
        The first link's addend, ``0 <= round_constant < 2**47``.
    b_bits : int
        Width of ``b``, at most 18; the B port takes it sign-extended. (A port
        as wide as its value keeps its name in Amaranth's Verilog, so identical
        cascades stay identical modules for the per-module estimate.)

    Attributes
    ----------
    a : ``In(signed(27))``
    b : ``In(signed(b_bits))``
    pcin : ``In(signed(48))``
        The previous link's ``pcout`` (a dedicated route: nothing else may drive it).
    p, pcout : ``Out(signed(48))``
        The register ``P``, to fabric and to the next link.
    """

    def __init__(self, *, first, round_constant=0, b_bits=MULTIPLIER_BITS):
        if not 0 <= round_constant < 1 << (P_BITS - 1):
            raise ValueError(f"round_constant must be in [0, 2**47), not {round_constant}")
        if not 1 <= b_bits <= MULTIPLIER_BITS:
            raise ValueError(f"b_bits must be in [1, {MULTIPLIER_BITS}], not {b_bits}")
        super().__init__({
            "a": In(signed(MULTIPLICAND_BITS)),
            "b": In(signed(b_bits)),
            "pcin": In(signed(P_BITS)),
            "p": Out(signed(P_BITS)),
            "pcout": Out(signed(P_BITS)),
        })
        self._first = first
        self._round_constant = round_constant if first else 0

    def elaborate(self, platform):
        m = Module()
        if getattr(platform, "dsp48e2_primitives", False):
            self._instantiate(m)
            return m
        a = Signal.like(self.a)
        b = Signal.like(self.b)
        product = Signal(signed(MULTIPLICAND_BITS + MULTIPLIER_BITS))
        addend = self._round_constant if self._first else self.pcin
        m.d.sync += [a.eq(self.a), b.eq(self.b), product.eq(a * b),
                     self.p.eq(addend + product)]
        m.d.comb += self.pcout.eq(self.p)
        return m

    def _instantiate(self, m):
        opmode = _XY_MULTIPLIER | (_W_RND if self._first else _Z_PCIN)
        a_port = Signal(signed(30))
        b_port = Signal(signed(MULTIPLIER_BITS))
        m.d.comb += [a_port.eq(self.a), b_port.eq(self.b)]
        # Cascade inputs other than a chained PCIN stay unconnected: Vivado lets
        # nothing but another DSP's cascade output drive them.
        cascade = {} if self._first else {"i_PCIN": self.pcin}
        registers = dict(AREG=1, BREG=1, ACASCREG=1, BCASCREG=1, MREG=1, PREG=1, ADREG=0,
                         DREG=0, CREG=0, INMODEREG=0, OPMODEREG=0, ALUMODEREG=0,
                         CARRYINREG=0, CARRYINSELREG=0)
        enables = ("A1", "A2", "B1", "B2", "M", "P", "AD", "D", "C", "CTRL", "ALUMODE",
                   "INMODE", "CARRYIN")
        resets = ("A", "B", "M", "P", "D", "C", "CTRL", "ALUMODE", "INMODE", "ALLCARRYIN")
        m.submodules.dsp = Instance(
            "DSP48E2",
            *[("p", name, value) for name, value in registers.items()],
            p_AMULTSEL="A", p_BMULTSEL="B", p_A_INPUT="DIRECT", p_B_INPUT="DIRECT",
            p_PREADDINSEL="A", p_USE_MULT="MULTIPLY", p_USE_SIMD="ONE48",
            p_USE_PATTERN_DETECT="NO_PATDET", p_RND=Const(self._round_constant, P_BITS),
            i_CLK=ClockSignal(),
            i_A=a_port, i_B=b_port, i_C=Const(0, P_BITS), i_D=Const(0, MULTIPLICAND_BITS),
            i_CARRYIN=0, i_CARRYINSEL=Const(0, 3),
            i_OPMODE=Const(opmode, 9), i_ALUMODE=Const(0, 4), i_INMODE=Const(0, 5),
            *[("i", f"CE{name}", 1) for name in enables],
            *[("i", f"RST{name}", 0) for name in resets],
            o_P=self.p, o_PCOUT=self.pcout, **cascade)
