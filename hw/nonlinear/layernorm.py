"""LayerNorm of int8 rows over a configured hidden size."""

from amaranth import Array, Module, Mux, Signal, signed, unsigned
from amaranth.hdl import EnableInserter
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from vitforge.errors import ConfigError

from ..checks import check_lanes, check_positive_int
from ..gemm.requantize import REQUANT_LATENCY, Requantizer
from ..numerics import (BETA_BITS, CENTRED_BITS, EPS_BITS, GAMMA_BITS, LAYERNORM_QUOTIENT_BITS,
                        LAYERNORM_RECIPROCAL_BITS, MAX_ACC_BITS, MAX_CHANNELS, MAX_PRODUCT,
                        MULTIPLIER_BITS, NORMALIZE_SHIFT, NORMALIZED_BITS, OPERAND_BITS,
                        OPERAND_MIN, SHIFT_BITS, SQRT_GUARD_BITS)
from .divider import SequentialDivider
from .isqrt import SequentialSqrt
from .reduce import reduce_tree
from .ring import next_slot

__all__ = ["LayerNormUnit", "LayerNormParamsLayout", "ChannelParams", "LAYERNORM_SLOTS"]

#: Row buffers: one per phase (ingest, square root, reciprocal, output) and
#: one more, so latencies between phases never stall the ingest.
LAYERNORM_SLOTS = 5

_FREE, _INGESTED, _ROOTING, _ROOTED, _DIVIDING, _READY, _OUTPUTTING = range(7)


class LayerNormParamsLayout(data.Struct):
    """Row-independent run-time parameters (``vitforge.sw.params.layernorm``)."""
    eps: unsigned(EPS_BITS)
    multiplier: unsigned(MULTIPLIER_BITS)
    shift: unsigned(SHIFT_BITS)


class ChannelParams(data.Struct):
    """Per-channel run-time parameters."""
    gamma: signed(GAMMA_BITS)
    beta: signed(BETA_BITS)


class LayerNormUnit(wiring.Component):
    """LayerNorm over rows of ``channels`` int8 values, to int8.

    Computes ``layernorm`` of ``docs/numerics.md`` exactly: sums ``s1``,
    ``s2``; ``D = C*s2 - s1**2 + eps`` (never divided by when zero: a constant
    row with ``eps = 0`` gives ``r = 0`` and outputs ``beta``);
    ``r = floor(2**40 / isqrt(D << 16))``; ``z = ((C*x - s1) * r) >> 22``;
    ``y = requantize(z * gamma_c, beta_c, multiplier, shift)``.

    A row is ``channels / lanes`` beats. Four phases work on different rows
    at once (:data:`LAYERNORM_SLOTS` row buffers): *ingest* (store, sum),
    *square root* (``D``, a :class:`SequentialSqrt`, about 26 cycles),
    *reciprocal* (a :class:`SequentialDivider`, 33 cycles) and *output*.

    Throughput: one beat per cycle while a row has at least 34 beats; shorter
    rows are limited to one row per 34 cycles (the divider). Output latency of a beat once its row is ready:
    :data:`REQUANT_LATENCY` + 3 cycles. ``o.ready`` low stalls the output
    phase; input is taken while a row buffer is free.

    Parameters
    ----------
    lanes : int
    channels : int
        Hidden size, a multiple of ``lanes``, at most
        :data:`~vitforge.hw.numerics.MAX_CHANNELS`.

    Attributes
    ----------
    i, o : streams of ``ArrayLayout(signed(8), lanes)``
    params : ``In(LayerNormParamsLayout)``
    channel_write : ``Out(memory.WritePort.Signature)`` of ``ArrayLayout(ChannelParams, lanes)``
        Word ``k`` holds the parameters of channels ``k*lanes .. k*lanes + lanes - 1``.
    """

    def __init__(self, *, lanes, channels):
        check_lanes("lanes", lanes)
        check_positive_int("channels", channels)
        if channels > MAX_CHANNELS:
            raise ConfigError(f"channels must be at most {MAX_CHANNELS}, not {channels}")
        if channels % lanes:
            raise ConfigError(f"channels must be a multiple of lanes={lanes}, not {channels}")
        self._lanes = lanes
        self._channels = channels
        self._beats = channels // lanes
        beat = data.ArrayLayout(signed(OPERAND_BITS), lanes)
        super().__init__({
            "i": In(stream.Signature(beat)),
            "o": Out(stream.Signature(beat)),
            "params": In(LayerNormParamsLayout),
            "channel_write": Out(memory.WritePort.Signature(
                addr_width=max(1, bits_for(self._beats - 1)),
                shape=data.ArrayLayout(ChannelParams, lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, channels, beats = self._lanes, self._channels, self._beats
        beat_shape = data.ArrayLayout(signed(OPERAND_BITS), lanes)

        m.submodules.rows = rows = memory.Memory(shape=beat_shape,
                                                 depth=LAYERNORM_SLOTS * beats, init=[])
        row_write = rows.write_port()
        row_read = rows.read_port()
        m.submodules.channel_params = channel_params = memory.Memory(
            shape=data.ArrayLayout(ChannelParams, lanes), depth=beats, init=[])
        channel_write = channel_params.write_port()
        channel_read = channel_params.read_port()
        m.d.comb += [channel_write.addr.eq(self.channel_write.addr),
                     channel_write.data.eq(self.channel_write.data),
                     channel_write.en.eq(self.channel_write.en)]

        sum_shape = signed(bits_for(-OPERAND_MIN * channels) + 1)
        square_sum_shape = unsigned(bits_for(MAX_PRODUCT * channels))
        stage = Array(Signal(range(7), name=f"stage_{s}") for s in range(LAYERNORM_SLOTS))
        row_sum = Array(Signal(sum_shape, name=f"sum_{s}") for s in range(LAYERNORM_SLOTS))
        row_square_sum = Array(Signal(square_sum_shape, name=f"square_sum_{s}")
                               for s in range(LAYERNORM_SLOTS))
        row_reciprocal = Array(Signal(LAYERNORM_QUOTIENT_BITS, name=f"reciprocal_{s}")
                               for s in range(LAYERNORM_SLOTS))

        # Phase 1: ingest and sum.
        ingest_slot = Signal(range(LAYERNORM_SLOTS))
        ingest_beat = Signal(range(beats))
        total = Signal(sum_shape)
        square_total = Signal(square_sum_shape)
        values = [self.i.payload[lane] for lane in range(lanes)]
        beat_sum = reduce_tree(values, lambda a, b: a + b)
        beat_square_sum = reduce_tree([v * v for v in values], lambda a, b: a + b)
        first = ingest_beat == 0
        new_total = Mux(first, 0, total) + beat_sum
        new_square_total = Mux(first, 0, square_total) + beat_square_sum
        accept = self.i.valid & self.i.ready
        m.d.comb += [
            self.i.ready.eq(stage[ingest_slot] == _FREE),
            row_write.addr.eq(ingest_slot * beats + ingest_beat),
            row_write.data.eq(self.i.payload),
            row_write.en.eq(accept),
        ]
        with m.If(accept):
            m.d.sync += [total.eq(new_total), square_total.eq(new_square_total),
                         ingest_beat.eq(ingest_beat + 1)]
            with m.If(ingest_beat == beats - 1):
                m.d.sync += [
                    row_sum[ingest_slot].eq(new_total),
                    row_square_sum[ingest_slot].eq(new_square_total),
                    stage[ingest_slot].eq(_INGESTED),
                    ingest_slot.eq(next_slot(ingest_slot, LAYERNORM_SLOTS)),
                    ingest_beat.eq(0),
                ]

        # Phase 2: square root of D, one row at a time.
        sqrt_slot = Signal(range(LAYERNORM_SLOTS))
        deviation_width = max(square_sum_shape.width + bits_for(channels), EPS_BITS) + 1
        m.submodules.sqrt = sqrt = SequentialSqrt(width=deviation_width + SQRT_GUARD_BITS)
        row_root = Array(Signal(len(sqrt.root), name=f"root_{s}")
                         for s in range(LAYERNORM_SLOTS))
        s1 = row_sum[sqrt_slot]
        deviation = channels * row_square_sum[sqrt_slot] - s1 * s1 + self.params.eps
        m.d.comb += [sqrt.start.eq(stage[sqrt_slot] == _INGESTED),
                     sqrt.value.eq(deviation << SQRT_GUARD_BITS)]
        with m.If(sqrt.start & ~sqrt.busy):
            m.d.sync += stage[sqrt_slot].eq(_ROOTING)
        with m.If(sqrt.done):
            m.d.sync += [row_root[sqrt_slot].eq(sqrt.root), stage[sqrt_slot].eq(_ROOTED),
                         sqrt_slot.eq(next_slot(sqrt_slot, LAYERNORM_SLOTS))]

        # Phase 3: reciprocal of the root (0 for a zero root), one row at a time.
        # A root is 0 or at least 256 (D >= 1 after the guard bits), so the
        # quotient 2**40 // root has at most 33 bits.
        divide_slot = Signal(range(LAYERNORM_SLOTS))
        m.submodules.divider = divider = SequentialDivider(
            dividend_width=LAYERNORM_RECIPROCAL_BITS + 1, divisor_width=len(sqrt.root),
            quotient_width=LAYERNORM_QUOTIENT_BITS)
        root = row_root[divide_slot]
        waiting = stage[divide_slot] == _ROOTED
        m.d.comb += [divider.start.eq(waiting & (root != 0)),
                     divider.dividend.eq(1 << LAYERNORM_RECIPROCAL_BITS),
                     divider.divisor.eq(root)]
        with m.If(divider.start & ~divider.busy):
            m.d.sync += stage[divide_slot].eq(_DIVIDING)
        zero_root = waiting & (root == 0)
        with m.If(divider.done | zero_root):
            m.d.sync += [
                row_reciprocal[divide_slot].eq(Mux(zero_root, 0, divider.quotient)),
                stage[divide_slot].eq(_READY),
                divide_slot.eq(next_slot(divide_slot, LAYERNORM_SLOTS)),
            ]

        # Phase 4: normalize, scale, requantize; stalls with the output.
        advance = ~self.o.valid | self.o.ready
        out_slot = Signal(range(LAYERNORM_SLOTS))
        out_beat = Signal(range(beats))
        issue = stage[out_slot] == _READY
        last = out_beat == beats - 1
        m.d.comb += [
            row_read.addr.eq(out_slot * beats + out_beat),
            row_read.en.eq(advance),
            channel_read.addr.eq(out_beat),
            channel_read.en.eq(advance),
        ]
        with m.If(advance & issue):
            m.d.sync += out_beat.eq(out_beat + 1)
            with m.If(last):
                m.d.sync += [
                    out_beat.eq(0), stage[out_slot].eq(_OUTPUTTING),
                    out_slot.eq(next_slot(out_slot, LAYERNORM_SLOTS)),
                ]

        # Side band through read (1), product (2), scale (3), requantizer.
        depth = 3 + REQUANT_LATENCY
        valid = [Signal(name=f"valid_{i}") for i in range(depth)]
        row_end = [Signal(name=f"row_end_{i}") for i in range(depth)]
        tag = [Signal(range(LAYERNORM_SLOTS), name=f"tag_{i}") for i in range(depth)]
        with m.If(advance):
            m.d.sync += [valid[0].eq(issue), row_end[0].eq(issue & last), tag[0].eq(out_slot)]
            for i in range(1, depth):
                m.d.sync += [valid[i].eq(valid[i - 1]), row_end[i].eq(row_end[i - 1]),
                             tag[i].eq(tag[i - 1])]
            with m.If(valid[-1] & row_end[-1]):
                m.d.sync += stage[tag[-1]].eq(_FREE)

        products = [Signal(signed(CENTRED_BITS + LAYERNORM_RECIPROCAL_BITS + 2),
                           name=f"product_{lane}") for lane in range(lanes)]
        gammas = [Signal(signed(GAMMA_BITS), name=f"gamma_{lane}") for lane in range(lanes)]
        betas = [Signal(signed(BETA_BITS), name=f"beta_{lane}") for lane in range(lanes)]
        scaled = [Signal(signed(MAX_ACC_BITS), name=f"scaled_{lane}") for lane in range(lanes)]
        betas_2 = [Signal(signed(BETA_BITS), name=f"beta2_{lane}") for lane in range(lanes)]
        for lane in range(lanes):
            centred = channels * row_read.data[lane] - row_sum[tag[0]]
            normalized = (products[lane] >> NORMALIZE_SHIFT)[:NORMALIZED_BITS].as_signed()
            requantizer = EnableInserter(advance)(Requantizer(lanes=1, acc_width=MAX_ACC_BITS))
            m.submodules[f"requantizer_{lane}"] = requantizer
            with m.If(advance):
                m.d.sync += [
                    products[lane].eq(centred * row_reciprocal[tag[0]]),
                    gammas[lane].eq(channel_read.data[lane].gamma),
                    betas[lane].eq(channel_read.data[lane].beta),
                    scaled[lane].eq(normalized * gammas[lane]),
                    betas_2[lane].eq(betas[lane]),
                ]
            m.d.comb += [
                requantizer.i_valid.eq(valid[2]),
                requantizer.i_acc[0].eq(scaled[lane]),
                requantizer.i_params.bias.eq(betas_2[lane]),
                requantizer.i_params.multiplier.eq(self.params.multiplier),
                requantizer.i_params.shift.eq(self.params.shift),
                self.o.payload[lane].eq(requantizer.o_data[0]),
            ]
        m.d.comb += self.o.valid.eq(valid[-1])
        return m
