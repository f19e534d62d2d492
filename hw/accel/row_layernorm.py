"""LAYERNORM over activation words: one token per lane, its channels in consecutive words."""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data

from ..dsp import joined, registered_halves
from ..gemm.requantize import REQUANT_LATENCY, Requantizer
from ..nonlinear.square import fabric_square
from ..numerics import BETA_BITS, GAMMA_BITS, MAX_ACC_BITS, NORMALIZE_SHIFT, NORMALIZED_BITS
from .config import SCRATCHPAD_ADDRESS_BITS, SIZE_BITS
from .isa import ISA, Opcode
from .layernorm_statistics import (PRODUCT_BITS, SQUARE_SUM_SHAPE, SUM_SHAPE, LayerNormStatistics,
                                   statistics_cycles)
from .ports import Unit, pass_word, running_address, scratchpad_ports, tile_addresses
from .row_units import row_units

__all__ = ["RowLayerNorm", "layernorm_cycles"]

#: Cycles per tile beside the two passes' words and the statistics: the passes' pipeline
#: drains and the state changes.
_TILE_DRAINS = 24
#: Cycles of the sums pass beside its words: its drain and state change.
_SUMS_DRAIN = 12
#: The low bits of ``scale`` in the normalising product's first DSP48E2 (26 x 8 bits, the
#: operand signed; the rest in a second).
_SCALE_LOW_BITS = 26


def layernorm_cycles(lanes, tiles, channels, units=None, lookahead=False):
    """Cycles of a LAYERNORM of ``tiles`` tiles of ``channels`` channels on ``lanes`` lanes
    with ``units`` statistics units (:func:`row_units` by default): per tile both passes,
    the statistics and the drains, and the start and FINISH states. With ``lookahead`` (a
    second activation read port) every tile but the first sums its words during the output
    pass of the tile before it, which saves its sums pass and that pass's drain."""
    tile = 2 * channels + statistics_cycles(lanes, row_units(lanes, units)) + _TILE_DRAINS
    saved = (tiles - 1) * (channels + _SUMS_DRAIN) if lookahead else 0
    return tiles * tile - saved + 2


class RowLayerNorm(Unit):
    """Executes LAYERNORM: ``layernorm_rows`` of ``docs/numerics.md`` on ``array`` tokens at once.

    For each tile of ``array`` tokens: a pass summing ``x`` and ``x**2`` per
    lane over the channels' words (the square a table in fabric,
    :func:`fabric_square`); the once-per-row statistics of every lane in
    ``units`` shared units (:class:`LayerNormStatistics`: the integer square
    root and reciprocal, lanes in turn); a pass that normalizes
    (``x * scale - offset``, one multiply per lane), scales by gamma, adds
    beta and requantizes (the GEMM's :class:`Requantizer`, channel ``j``'s
    gamma/beta shared by all lanes). :func:`layernorm_cycles` in all:
    ``tiles * (2 * channels + 142) + 2`` with the default 16 units of 32 lanes.

    With a second activation read port (``config.act_read_ports == 2``) the
    output pass of a tile also reads the next tile's words, the same index
    through ``y_read``, into the sums (which the statistics took at their
    start): every tile but the first starts with its statistics,
    ``channels + 12`` cycles sooner.

    Parameters
    ----------
    config : AcceleratorConfig
    units : int or None
        Shared statistics units; ``ceil(array / 2)`` by default (:func:`row_units`).
    """

    def __init__(self, config, *, units=None):
        self._lookahead = config.act_read_ports == 2
        reads = ("act_read", "y_read") if self._lookahead else ("act_read",)
        super().__init__(config, scratchpad_ports(config, *reads, "lnp_read", "act_write"))
        self._units = row_units(config.array, units)

    def elaborate(self, platform):
        m = Module()
        lanes = self._config.array
        inst = ISA[Opcode.LAYERNORM].view(self.instruction)

        tile = Signal(SIZE_BITS)
        index = Signal(SIZE_BITS)
        reading = Signal()
        output_pass = Signal()
        s1 = Signal(data.ArrayLayout(SUM_SHAPE, lanes))
        s2 = Signal(data.ArrayLayout(SQUARE_SUM_SHAPE, lanes))
        m.submodules.statistics = statistics = LayerNormStatistics(lanes=lanes, units=self._units)
        m.d.comb += [statistics.channels.eq(inst.channels), statistics.eps.eq(inst.eps),
                     statistics.s1.eq(s1), statistics.s2.eq(s2)]

        next_tile = Signal()
        src_tile, dst_tile = tile_addresses(m, inst, load=self.start, advance=next_tile)
        pass_end = reading & (index + 1 == inst.channels)
        word = pass_word(m, inst, src_tile, load=self.start, advance=next_tile,
                         restart=pass_end, step=reading)
        channel = running_address(m, "channel", step=reading,
                                  loads=[(self.start | pass_end, inst.lnp_addr)])
        m.d.comb += [
            self.act_read.addr.eq(word),
            self.act_read.en.eq(reading),
            self.lnp_read.addr.eq(channel),
            self.lnp_read.en.eq(reading),
        ]
        depth = 5 + REQUANT_LATENCY     # read, operand, product, centred, scale, requantizer
        valid = [Signal(name=f"valid_{i}") for i in range(depth)]
        first_read, first = Signal(), Signal()     # the tile's first word: read, registered
        address = [Signal(SCRATCHPAD_ADDRESS_BITS, name=f"address_{i}") for i in range(depth)]
        m.d.sync += [valid[0].eq(reading), first_read.eq(reading & (index == 0)),
                     first.eq(first_read),
                     address[0].eq(dst_tile + index)]
        for i in range(1, depth):
            m.d.sync += [valid[i].eq(valid[i - 1]), address[i].eq(address[i - 1])]
        in_flight = Cat(*valid).any()
        # The words summed: the sums pass's, and with the look-ahead the next tile's during
        # the output pass (read and registered, as ``valid[0]`` and ``valid[1]``).
        # ``has_next`` is registered: a pass starts two cycles or more after ``tile`` changes.
        enter = Signal()            # pulses as STATISTICS enters the output pass
        has_next = Signal()         # a tile follows this one
        summing = [Signal(name=f"summing_{i}") for i in range(2)]
        m.d.sync += has_next.eq(tile + 1 != inst.m_tiles)
        ahead = self._look_ahead(m, inst, reading & output_pass & has_next, src_tile=src_tile,
                                 enter=enter) if self._lookahead else None
        summed_ahead = has_next if self._lookahead else 0
        m.d.sync += [summing[0].eq(reading & (~output_pass | summed_ahead)),
                     summing[1].eq(summing[0])]

        # Pass 2: normalize (product), scale by gamma, requantize with beta. The registers
        # taking read data load only when it is a word read (before a memory's first read
        # it is undefined: X in a 4-state simulator).
        m.submodules.requantizer = requantizer = Requantizer(lanes=lanes, acc_width=MAX_ACC_BITS)
        beta = Signal(signed(BETA_BITS))
        scaled = Signal(data.ArrayLayout(signed(MAX_ACC_BITS), lanes))
        gammas = [Signal(signed(GAMMA_BITS), name=f"gamma_{i}") for i in range(3)]
        betas = [Signal(signed(BETA_BITS), name=f"beta_{i}") for i in range(3)]
        for lane in range(lanes):
            # (C * x - s1) * r modulo 2**PRODUCT_BITS, all that z keeps: x registered,
            # x times the low and the high bits of scale (one DSP48E2 each), then their
            # sum less the offset in the next cycle.
            operand = Signal(signed(8), name=f"operand_{lane}")
            centred = Signal(PRODUCT_BITS, name=f"centred_{lane}")
            with m.If(valid[0]):
                m.d.sync += operand.eq(self.act_read.data[lane])
            summed = operand
            if ahead is not None:
                summed = Signal(signed(8), name=f"summed_{lane}")
                with m.If(summing[0]):
                    m.d.sync += summed.eq(Mux(output_pass, ahead[lane],
                                              self.act_read.data[lane]))
            # Pass 1: the sums, of the registered x (the read data leaves a block RAM late
            # in its cycle, too late for the square's table and an adder after it).
            with m.If(summing[1]):
                m.d.sync += [s1[lane].eq(Mux(first, 0, s1[lane]) + summed),
                             s2[lane].eq(Mux(first, 0, s2[lane]) + fabric_square(summed))]
            product = registered_halves(m, operand, statistics.scale[lane],
                                        low_bits=_SCALE_LOW_BITS, width=PRODUCT_BITS,
                                        name=f"product_{lane}")
            m.d.sync += centred.eq(joined(product, _SCALE_LOW_BITS) - statistics.offset[lane])
            normalized = centred[NORMALIZE_SHIFT:NORMALIZE_SHIFT + NORMALIZED_BITS].as_signed()
            m.d.sync += scaled[lane].eq(normalized * gammas[-1])
        with m.If(valid[0]):
            m.d.sync += [gammas[0].eq(self.lnp_read.data.gamma),
                         betas[0].eq(self.lnp_read.data.beta)]
        m.d.sync += [*(later.eq(earlier) for pair in (gammas, betas)
                       for earlier, later in zip(pair, pair[1:])),
                     beta.eq(betas[-1])]
        m.d.comb += [
            requantizer.i_valid.eq(valid[4]),
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
                    with m.If(pass_end):
                        m.d.sync += [reading.eq(0), index.eq(0)]
                with m.Elif(~in_flight):
                    with m.If(~output_pass):
                        m.d.comb += statistics.start.eq(1)
                        m.next = "STATISTICS"
                    with m.Else():
                        m.d.comb += next_tile.eq(1)
                        m.d.sync += [tile.eq(tile + 1), output_pass.eq(0)]
                        with m.If(~has_next):
                            m.next = "FINISH"
                        with m.Else():
                            if self._lookahead:     # the sums are there
                                m.d.comb += statistics.start.eq(1)
                                m.next = "STATISTICS"
                            else:
                                m.d.sync += reading.eq(1)
            with m.State("STATISTICS"):
                with m.If(~statistics.busy):
                    m.d.comb += enter.eq(1)
                    m.d.sync += [output_pass.eq(1), reading.eq(1)]
                    m.next = "PASS"
            with m.State("FINISH"):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                m.next = "IDLE"
        return m

    def _look_ahead(self, m, inst, reading, *, src_tile, enter):
        """The next tile's words, read through ``y_read`` in the cycles ``reading`` (the
        output pass's reads, but the last tile's): the read data, a word per cycle after.

        The next tile's first word is ``src_tile + src_stride``, registered in the cycle
        ``enter`` starts the output pass (a running address: no adder on the port's
        address, as :class:`~.row_softmax.RowSoftmax`'s look-ahead)."""
        word = running_address(m, "ahead_word", step=reading,
                               loads=[(enter, src_tile + inst.src_stride)])
        m.d.comb += [self.y_read.addr.eq(word), self.y_read.en.eq(reading)]
        return self.y_read.data
