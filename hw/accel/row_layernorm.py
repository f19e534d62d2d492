"""LAYERNORM over activation words: one token per lane, its channels in consecutive words."""

from amaranth import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data
from amaranth.utils import bits_for

from ..gemm.requantize import REQUANT_LATENCY, Requantizer
from ..nonlinear.divider import SequentialDivider
from ..nonlinear.isqrt import SequentialSqrt
from ..numerics import (BETA_BITS, CENTRED_BITS, EPS_BITS, GAMMA_BITS, LAYERNORM_QUOTIENT_BITS,
                        LAYERNORM_RECIPROCAL_BITS, MAX_ACC_BITS, MAX_CHANNELS, MAX_PRODUCT,
                        NORMALIZE_SHIFT, NORMALIZED_BITS, SQRT_GUARD_BITS)
from .config import SCRATCHPAD_ADDRESS_BITS, SIZE_BITS
from .isa import ISA, Opcode
from .ports import Unit, scratchpad_ports

__all__ = ["RowLayerNorm"]

# Widths that hold every row of up to MAX_CHANNELS channels (the count is a run-time field).
# s1 (|s1| <= 128 * C) is kept in the width of C * x - s1.
_SUM_SHAPE = signed(CENTRED_BITS)
# s2 <= 16384 * C.
_SQUARE_SUM_SHAPE = signed(bits_for(MAX_PRODUCT * MAX_CHANNELS, require_sign_bit=True))
# D = C * s2 - s1**2 + eps <= C * 16384 * C + eps.
_DEVIATION_BITS = bits_for(MAX_CHANNELS * MAX_PRODUCT * MAX_CHANNELS + (1 << EPS_BITS) - 1,
                           require_sign_bit=True)


class RowLayerNorm(Unit):
    """Executes LAYERNORM: ``layernorm_rows`` of ``docs/numerics.md`` on ``array`` tokens at once.

    For each tile of ``array`` tokens: a pass summing ``x`` and ``x**2`` per
    lane over the channels' words; per lane (all lanes in parallel) an integer
    square root (26 cycles) and a reciprocal (33 cycles); a pass that
    normalizes, scales by gamma, adds beta and requantizes (the GEMM's
    :class:`Requantizer`, channel ``j``'s gamma/beta shared by all lanes).
    ``2 * channels + 75`` cycles per tile and 2 more per instruction.

    Parameters
    ----------
    config : AcceleratorConfig
    """

    def __init__(self, config):
        super().__init__(config, scratchpad_ports(config, "act_read", "lnp_read", "act_write"))

    def elaborate(self, platform):
        m = Module()
        lanes = self._config.array
        inst = ISA[Opcode.LAYERNORM].view(self.instruction)

        tile = Signal(SIZE_BITS)
        index = Signal(SIZE_BITS)
        reading = Signal()
        output_pass = Signal()
        s1 = Array(Signal(_SUM_SHAPE, name=f"s1_{lane}") for lane in range(lanes))
        s2 = Array(Signal(_SQUARE_SUM_SHAPE, name=f"s2_{lane}") for lane in range(lanes))

        m.d.comb += [
            self.act_read.addr.eq(inst.src + tile * inst.src_stride + index),
            self.act_read.en.eq(reading),
            self.lnp_read.addr.eq(inst.lnp_addr + index),
            self.lnp_read.en.eq(reading),
        ]
        depth = 3 + REQUANT_LATENCY                 # read, product, scale, requantizer
        valid = [Signal(name=f"valid_{i}") for i in range(depth)]
        first = Signal()
        address = [Signal(SCRATCHPAD_ADDRESS_BITS, name=f"address_{i}") for i in range(depth)]
        m.d.sync += [valid[0].eq(reading), first.eq(reading & (index == 0)),
                     address[0].eq(inst.dst + tile * inst.dst_stride + index)]
        for i in range(1, depth):
            m.d.sync += [valid[i].eq(valid[i - 1]), address[i].eq(address[i - 1])]
        in_flight = Cat(*valid).any()

        # Pass 1: sums.
        with m.If(~output_pass & valid[0]):
            for lane in range(lanes):
                x = self.act_read.data[lane]
                m.d.sync += [s1[lane].eq(Mux(first, 0, s1[lane]) + x),
                             s2[lane].eq(Mux(first, 0, s2[lane]) + x * x)]

        # Square roots and reciprocals, every lane at once.
        start_sqrt = Signal()
        roots, reciprocals, dividers = [], [], []
        for lane in range(lanes):
            sqrt = SequentialSqrt(width=_DEVIATION_BITS + SQRT_GUARD_BITS)
            divider = SequentialDivider(dividend_width=LAYERNORM_RECIPROCAL_BITS + 1,
                                        divisor_width=len(sqrt.root),
                                        quotient_width=LAYERNORM_QUOTIENT_BITS)
            m.submodules[f"sqrt_{lane}"] = sqrt
            m.submodules[f"divider_{lane}"] = divider
            deviation = inst.channels * s2[lane] - s1[lane] * s1[lane] + inst.eps
            reciprocal = Signal(LAYERNORM_QUOTIENT_BITS, name=f"reciprocal_{lane}")
            m.d.comb += [
                sqrt.start.eq(start_sqrt),
                sqrt.value.eq(deviation << SQRT_GUARD_BITS),
                divider.start.eq(sqrt.done),
                divider.dividend.eq(1 << LAYERNORM_RECIPROCAL_BITS),
                divider.divisor.eq(sqrt.root),
                reciprocal.eq(Mux(sqrt.root == 0, 0, divider.quotient)),
            ]
            roots.append(sqrt)
            dividers.append(divider)
            reciprocals.append(reciprocal)

        # Pass 2: normalize (product), scale by gamma, requantize with beta.
        m.submodules.requantizer = requantizer = Requantizer(lanes=lanes, acc_width=MAX_ACC_BITS)
        beta = Signal(signed(BETA_BITS))
        scaled = Signal(data.ArrayLayout(signed(MAX_ACC_BITS), lanes))
        gamma = Signal(signed(GAMMA_BITS))
        beta_1 = Signal(signed(BETA_BITS))
        for lane in range(lanes):
            product = Signal(signed(CENTRED_BITS + LAYERNORM_QUOTIENT_BITS + 2),
                             name=f"product_{lane}")
            centred = inst.channels * self.act_read.data[lane] - s1[lane]
            m.d.sync += product.eq(centred * reciprocals[lane])
            normalized = (product >> NORMALIZE_SHIFT)[:NORMALIZED_BITS].as_signed()
            m.d.sync += scaled[lane].eq(normalized * gamma)
        m.d.sync += [gamma.eq(self.lnp_read.data.gamma), beta_1.eq(self.lnp_read.data.beta),
                     beta.eq(beta_1)]
        m.d.comb += [
            requantizer.i_valid.eq(valid[2]),
            requantizer.i_acc.eq(scaled),
            requantizer.i_params.bias.eq(beta),
            requantizer.i_params.multiplier.eq(inst.multiplier),
            requantizer.i_params.shift.eq(inst.shift),
            self.act_write.addr.eq(address[-1]),
            self.act_write.data.eq(requantizer.o_data),
            self.act_write.en.eq(output_pass & valid[-1]),
        ]

        m.d.sync += self.done.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), tile.eq(0), index.eq(0), output_pass.eq(0),
                                 reading.eq(1)]
                    m.next = "PASS"
            with m.State("PASS"):
                with m.If(reading):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index + 1 == inst.channels):
                        m.d.sync += [reading.eq(0), index.eq(0)]
                with m.Elif(~in_flight):
                    with m.If(~output_pass):
                        m.d.comb += start_sqrt.eq(1)
                        m.next = "STATISTICS"
                    with m.Else():
                        m.d.sync += [tile.eq(tile + 1), output_pass.eq(0)]
                        with m.If(tile + 1 == inst.m_tiles):
                            m.next = "FINISH"
                        with m.Else():
                            m.d.sync += reading.eq(1)
            with m.State("STATISTICS"):
                # Every lane started together and takes the same cycles (a zero
                # root's division runs too; its result is replaced by 0).
                with m.If(dividers[0].done):
                    m.d.sync += [output_pass.eq(1), reading.eq(1)]
                    m.next = "PASS"
            with m.State("FINISH"):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                m.next = "IDLE"
        return m
