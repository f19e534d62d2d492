"""LAYERNORM over activation words: one token per lane, its channels in consecutive words."""

from amaranth import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data

from ..gemm.requantize import REQUANT_LATENCY, Requantizer
from ..nonlinear.divider import SequentialDivider
from ..nonlinear.isqrt import SequentialSqrt
from ..nonlinear.layernorm import ChannelParams
from .isa import Opcode
from .ports import Unit, act_word, field, read_request, write_request

__all__ = ["RowLayerNorm"]

# Fixed-point steps of docs/numerics.md (LayerNorm).
_SQRT_GUARD_BITS = 16
_RECIPROCAL_BITS = 40
_QUOTIENT_BITS = 33
_NORMALIZE_SHIFT = 22
_MAX_CHANNELS = 1024


class RowLayerNorm(Unit):
    """Executes LAYERNORM: ``layernorm_rows`` of ``docs/numerics.md`` on ``array`` tokens at once.

    For each tile of ``array`` tokens: a pass summing ``x`` and ``x**2`` per
    lane over the channels' words; per lane (all lanes in parallel) an integer
    square root (26 cycles) and a reciprocal (33 cycles); a pass that
    normalizes, scales by gamma, adds beta and requantizes (the GEMM's
    :class:`Requantizer`, channel ``j``'s gamma/beta shared by all lanes).
    About ``2 * channels + 70`` cycles per tile.

    Parameters
    ----------
    config : AcceleratorConfig
    """

    def __init__(self, config):
        word = act_word(config)
        super().__init__(config, {
            "act_read": read_request(range(config.act_depth), word),
            "lnp_read": read_request(range(config.lnp_depth), ChannelParams),
            "act_write": write_request(range(config.act_depth), word),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._config.array
        inst = self.instruction
        f = {name: field(inst, Opcode.LAYERNORM, name) for name in
             ("src", "src_stride", "dst", "dst_stride", "m_tiles", "channels", "lnp_addr",
              "eps", "multiplier", "shift")}
        sum_shape = signed(20)                      # |s1| <= 128 * 1024
        square_shape = signed(26)                   # s2 <= 16384 * 1024

        tile = Signal(16)
        index = Signal(16)
        reading = Signal()
        output_pass = Signal()
        s1 = Array(Signal(sum_shape, name=f"s1_{lane}") for lane in range(lanes))
        s2 = Array(Signal(square_shape, name=f"s2_{lane}") for lane in range(lanes))

        m.d.comb += [
            self.act_read.addr.eq(f["src"] + tile * f["src_stride"] + index),
            self.act_read.en.eq(reading),
            self.lnp_read.addr.eq(f["lnp_addr"] + index),
            self.lnp_read.en.eq(reading),
        ]
        depth = 3 + REQUANT_LATENCY                 # read, product, scale, requantizer
        valid = [Signal(name=f"valid_{i}") for i in range(depth)]
        first = Signal()
        address = [Signal(20, name=f"address_{i}") for i in range(depth)]
        m.d.sync += [valid[0].eq(reading), first.eq(reading & (index == 0)),
                     address[0].eq(f["dst"] + tile * f["dst_stride"] + index)]
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
            sqrt = SequentialSqrt(width=36 + _SQRT_GUARD_BITS)
            divider = SequentialDivider(dividend_width=_RECIPROCAL_BITS + 1, divisor_width=26,
                                        quotient_width=_QUOTIENT_BITS)
            m.submodules[f"sqrt_{lane}"] = sqrt
            m.submodules[f"divider_{lane}"] = divider
            deviation = f["channels"] * s2[lane] - s1[lane] * s1[lane] + f["eps"]
            reciprocal = Signal(_QUOTIENT_BITS, name=f"reciprocal_{lane}")
            m.d.comb += [
                sqrt.start.eq(start_sqrt),
                sqrt.value.eq(deviation << _SQRT_GUARD_BITS),
                divider.start.eq(sqrt.done),
                divider.dividend.eq(1 << _RECIPROCAL_BITS),
                divider.divisor.eq(sqrt.root),
                reciprocal.eq(Mux(sqrt.root == 0, 0, divider.quotient)),
            ]
            roots.append(sqrt)
            dividers.append(divider)
            reciprocals.append(reciprocal)

        # Pass 2: normalize (product), scale by gamma, requantize with beta.
        m.submodules.requantizer = requantizer = Requantizer(lanes=lanes, acc_width=32)
        beta = Signal(signed(32))
        scaled = Signal(data.ArrayLayout(signed(32), lanes))
        gamma = Signal(signed(16))
        beta_1 = Signal(signed(32))
        for lane in range(lanes):
            product = Signal(signed(20 + _QUOTIENT_BITS + 2), name=f"product_{lane}")
            centred = f["channels"] * self.act_read.data[lane] - s1[lane]
            m.d.sync += product.eq(centred * reciprocals[lane])
            normalized = (product >> _NORMALIZE_SHIFT)[:18].as_signed()
            m.d.sync += scaled[lane].eq(normalized * gamma)
        m.d.sync += [gamma.eq(self.lnp_read.data.gamma), beta_1.eq(self.lnp_read.data.beta),
                     beta.eq(beta_1)]
        m.d.comb += [
            requantizer.i_valid.eq(valid[2]),
            requantizer.i_acc.eq(scaled),
            requantizer.i_params.bias.eq(beta),
            requantizer.i_params.multiplier.eq(f["multiplier"]),
            requantizer.i_params.shift.eq(f["shift"]),
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
                    with m.If(index + 1 == f["channels"]):
                        m.d.sync += [reading.eq(0), index.eq(0)]
                with m.Elif(~in_flight):
                    with m.If(~output_pass):
                        m.d.comb += start_sqrt.eq(1)
                        m.next = "STATISTICS"
                    with m.Else():
                        m.d.sync += [tile.eq(tile + 1), output_pass.eq(0)]
                        with m.If(tile + 1 == f["m_tiles"]):
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
