"""Row softmax of int8 values with run-time row lengths."""

from amaranth import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from vitforge.errors import ConfigError

from ..checks import check_lanes, check_positive_int
from ..numerics import (EXP_AT_ZERO_MIN_BITS, EXP_BITS, OPERAND_BITS, OPERAND_MIN,
                        SOFTMAX_RECIPROCAL_BITS, softmax_one)
from .divider import SequentialDivider
from .exp import EXP_LATENCY, ExpParamsLayout, ExpUnit
from .reduce import reduce_tree
from .ring import next_slot

__all__ = ["SoftmaxUnit", "softmax_beat_layout", "SLOTS"]

#: Row buffers: one per phase (ingest, sum, reciprocal, output) and one more,
#: so a row's pipeline latencies between phases never stall the ingest.
SLOTS = 5

# Where a row buffer is: free, or which phase may take it next (or has it in flight).
_FREE, _INGESTED, _SUMMING, _SUMMED, _DIVIDING, _READY, _OUTPUTTING = range(7)


def softmax_beat_layout(lanes, element_shape):
    """One beat of a row: ``lanes`` elements, ``last`` beat flag, valid lanes of a last beat."""
    return data.StructLayout({
        "data": data.ArrayLayout(element_shape, lanes),
        "last": 1,
        "count": bits_for(lanes),
    })


class SoftmaxUnit(wiring.Component):
    """Softmax over rows of int8 values; probabilities of scale ``1 / one``.

    A row arrives as beats of ``lanes`` elements; its final beat has ``last``
    set and ``count`` valid lanes (``1..lanes``; earlier beats are full). Row
    lengths are run-time values up to ``max_length`` and may change from row to
    row. Each row goes through four phases, each working on a different row
    (one of :data:`SLOTS` row buffers) at the same time:

    1. *ingest*: store the beats, running maximum over the row;
    2. *sum*: ``e_i = exp_q15(max - q_i)`` (:class:`ExpUnit`), summed;
    3. *reciprocal*: ``r = floor(one * 2**32 / sum)`` by a
       :class:`SequentialDivider`, ``out_bits + 19`` cycles;
    4. *output*: ``e_i`` again, ``p_i = min((e_i * r + 2**31) >> 32, one)``.

    ``one = 2**(out_bits-1) - 1``; ``docs/numerics.md`` defines every step and
    ``vitforge.sw.golden.nonlinear.softmax`` is its twin.

    Throughput: one beat per cycle while rows have at least ``out_bits + 19``
    beats (the division of one row overlaps the other phases; shorter rows
    are limited to one row per ``out_bits + 19`` cycles). Latency of a row:
    its beats twice, the division, and about ``2 * EXP_LATENCY + 6`` cycles.

    A row longer than ``max_length`` raises the sticky :attr:`overflow` flag
    and is cut at ``max_length`` elements.

    Parameters
    ----------
    lanes : int
    max_length : int
        Longest row, in elements.
    out_bits : int
        Width of a probability (2..16); 8 gives int8 in ``[0, 127]``.

    Attributes
    ----------
    i : ``In(stream.Signature(softmax_beat_layout(lanes, signed(8))))``
    o : ``Out(stream.Signature(softmax_beat_layout(lanes, signed(out_bits))))``
    params : ``In(ExpParamsLayout)``
        Held constant while rows are in flight.
    overflow : ``Out(1)``
    """

    def __init__(self, *, lanes, max_length, out_bits=8):
        check_lanes("lanes", lanes)
        check_positive_int("max_length", max_length)
        check_positive_int("out_bits", out_bits)
        if not 2 <= out_bits <= 16:
            raise ConfigError(f"out_bits must lie in [2, 16], not {out_bits!r}")
        self._lanes = lanes
        self._max_beats = -(-max_length // lanes)
        self._out_bits = out_bits
        super().__init__({
            "i": In(stream.Signature(softmax_beat_layout(lanes, signed(OPERAND_BITS)))),
            "o": Out(stream.Signature(softmax_beat_layout(lanes, signed(out_bits)))),
            "params": In(ExpParamsLayout),
            "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, max_beats, out_bits = self._lanes, self._max_beats, self._out_bits
        one = softmax_one(out_bits)
        sum_width = EXP_BITS + ceil_log2(max_beats * lanes + 1)
        reciprocal_width = out_bits - 1 + SOFTMAX_RECIPROCAL_BITS - EXP_AT_ZERO_MIN_BITS

        beat_shape = data.ArrayLayout(signed(OPERAND_BITS), lanes)
        m.submodules.rows = rows = memory.Memory(shape=beat_shape, depth=SLOTS * max_beats,
                                                 init=[])
        row_write = rows.write_port()
        sum_read = rows.read_port()
        out_read = rows.read_port()

        slot_bits = range(SLOTS)
        beat_bits = range(max_beats)
        stage = Array(Signal(range(7), name=f"stage_{slot}") for slot in range(SLOTS))
        row_beats = Array(Signal(range(max_beats + 1), name=f"beats_{s}") for s in range(SLOTS))
        row_count = Array(Signal(bits_for(lanes), name=f"count_{s}") for s in range(SLOTS))
        row_max = Array(Signal(signed(OPERAND_BITS), name=f"max_{s}") for s in range(SLOTS))
        row_sum = Array(Signal(sum_width, name=f"sum_{s}") for s in range(SLOTS))
        row_reciprocal = Array(Signal(reciprocal_width, name=f"reciprocal_{s}")
                               for s in range(SLOTS))

        def lane_mask(last, count):
            return Cat(~last | (lane < count) for lane in range(lanes))

        # Phase 1: ingest.
        ingest_slot = Signal(slot_bits)
        ingest_beat = Signal(beat_bits)
        running_max = Signal(signed(OPERAND_BITS))
        beat_max = Signal(signed(OPERAND_BITS))
        payload = self.i.payload
        force_last = ingest_beat == max_beats - 1
        mask = lane_mask(payload.last | force_last,
                         Mux(payload.last, payload.count, lanes))
        candidates = [Mux(mask[lane], payload.data[lane], OPERAND_MIN) for lane in range(lanes)]
        m.d.comb += beat_max.eq(reduce_tree(candidates, lambda a, b: Mux(a > b, a, b)))
        row_max_now = Mux(ingest_beat == 0, beat_max,
                          Mux(beat_max > running_max, beat_max, running_max))
        m.d.comb += [
            self.i.ready.eq(stage[ingest_slot] == _FREE),
            row_write.addr.eq(ingest_slot * max_beats + ingest_beat),
            row_write.data.eq(payload.data),
            row_write.en.eq(self.i.valid & self.i.ready),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [running_max.eq(row_max_now), ingest_beat.eq(ingest_beat + 1)]
            with m.If(payload.last | force_last):
                m.d.sync += [
                    row_max[ingest_slot].eq(row_max_now),
                    row_beats[ingest_slot].eq(ingest_beat + 1),
                    row_count[ingest_slot].eq(Mux(payload.last, payload.count, lanes)),
                    stage[ingest_slot].eq(_INGESTED),
                    ingest_slot.eq(next_slot(ingest_slot, SLOTS)),
                    ingest_beat.eq(0),
                ]
                with m.If(force_last & ~payload.last):
                    m.d.sync += self.overflow.eq(1)

        # Phase 2: exp and sum, no stalls.
        self._exp_phase(m, "sum", sum_read, stage, _INGESTED, _SUMMING, row_beats, row_count,
                        row_max, enable=1, on_beat=lambda valid, mask, e, first, last, slot:
                        _sum_beat(m, valid, mask, e, first, last, slot, row_sum, stage,
                                  sum_width))

        # Phase 3: reciprocal, one row at a time.
        divide_slot = Signal(slot_bits)
        # exp(0) >= 2**14 keeps sum >= 2**14, so the quotient has out_bits + 17 bits.
        m.submodules.divider = divider = SequentialDivider(
            dividend_width=out_bits - 1 + SOFTMAX_RECIPROCAL_BITS, divisor_width=sum_width,
            quotient_width=reciprocal_width)
        m.d.comb += [
            divider.start.eq(stage[divide_slot] == _SUMMED),
            divider.dividend.eq(one << SOFTMAX_RECIPROCAL_BITS),
            divider.divisor.eq(row_sum[divide_slot]),
        ]
        with m.If(divider.start & ~divider.busy):
            m.d.sync += stage[divide_slot].eq(_DIVIDING)
        with m.If(divider.done):
            m.d.sync += [row_reciprocal[divide_slot].eq(divider.quotient),
                         stage[divide_slot].eq(_READY), divide_slot.eq(next_slot(divide_slot, SLOTS))]

        # Phase 4: exp again, scale by the reciprocal, output with back-pressure.
        advance = ~self.o.valid | self.o.ready
        self._exp_phase(m, "out", out_read, stage, _READY, _OUTPUTTING, row_beats, row_count,
                        row_max, enable=advance, on_beat=lambda valid, mask, e, first, last, slot:
                        _out_beat(m, valid, mask, e, last, slot, row_reciprocal, row_count,
                                  stage, advance, self.o, one))
        return m

    def _exp_phase(self, m, name, read_port, stage, ready_stage, busy_stage, row_beats,
                   row_count, row_max, *, enable, on_beat):
        """Read a row's beats in order and pass ``exp_q15(max - q)`` of each to ``on_beat``.

        Issues one read per enabled cycle from the next slot in ``ready_stage``
        and marks it ``busy_stage`` once its last beat is issued, so it is not
        taken twice; ``on_beat(valid, mask, e, first, last, slot)`` gets each
        result :data:`EXP_LATENCY` + 1 enabled cycles later and moves the slot
        on after its last beat.
        """
        lanes, max_beats = self._lanes, self._max_beats
        slot = Signal(range(SLOTS), name=f"{name}_slot")
        beat = Signal(range(max_beats), name=f"{name}_beat")
        issue = Signal(name=f"{name}_issue")
        last = beat == row_beats[slot] - 1
        m.d.comb += [
            issue.eq(stage[slot] == ready_stage),
            read_port.addr.eq(slot * max_beats + beat),
            read_port.en.eq(enable),
        ]
        with m.If(enable & issue):
            m.d.sync += beat.eq(beat + 1)
            with m.If(last):
                m.d.sync += [beat.eq(0), slot.eq(next_slot(slot, SLOTS))]

        # Side band, one register per pipeline stage (read + exp).
        depth = 1 + EXP_LATENCY
        valid = [Signal(name=f"{name}_valid_{i}") for i in range(depth)]
        first = [Signal(name=f"{name}_first_{i}") for i in range(depth)]
        is_last = [Signal(name=f"{name}_last_{i}") for i in range(depth)]
        tag = [Signal(range(SLOTS), name=f"{name}_tag_{i}") for i in range(depth)]
        with m.If(enable):
            m.d.sync += [valid[0].eq(issue), first[0].eq(issue & (beat == 0)),
                         is_last[0].eq(issue & last), tag[0].eq(slot)]
            for i in range(1, depth):
                m.d.sync += [valid[i].eq(valid[i - 1]), first[i].eq(first[i - 1]),
                             is_last[i].eq(is_last[i - 1]), tag[i].eq(tag[i - 1])]
        with m.If(enable & issue & last):
            m.d.sync += stage[slot].eq(busy_stage)

        exp = ExpUnit(lanes=lanes)
        m.submodules[f"{name}_exp"] = exp
        row_maximum = row_max[tag[0]]
        m.d.comb += [exp.enable.eq(enable), exp.params.eq(self.params)]
        for lane in range(lanes):
            m.d.comb += exp.n[lane].eq(row_maximum - read_port.data[lane])
        mask = Cat(~is_last[-1] | (lane < row_count[tag[-1]]) for lane in range(lanes))
        on_beat(valid[-1], mask, exp.e, first[-1], valid[-1] & is_last[-1], tag[-1])


def _sum_beat(m, valid, mask, e, first, last, slot, row_sum, stage, sum_width):
    """Phase 2 consumer: accumulate the masked exps of a row; store the sum on its last beat."""
    total = Signal(sum_width)
    beat_sum = reduce_tree([Mux(mask[lane], e[lane], 0) for lane in range(len(mask))],
                     lambda a, b: a + b)
    running = Mux(first, beat_sum, total + beat_sum)
    with m.If(valid):
        m.d.sync += total.eq(running)
    with m.If(last):
        m.d.sync += [row_sum[slot].eq(running), stage[slot].eq(_SUMMED)]


def _out_beat(m, valid, mask, e, last, slot, row_reciprocal, row_count, stage, advance, out,
              one):
    """Phase 4 consumer: probabilities of one beat into the output register."""
    lanes = len(mask)
    reciprocal = row_reciprocal[slot]
    with m.If(advance):
        m.d.sync += [out.valid.eq(valid), out.payload.last.eq(last),
                     out.payload.count.eq(Mux(last, row_count[slot], lanes))]
        for lane in range(lanes):
            scaled = ((e[lane] * reciprocal + (1 << (SOFTMAX_RECIPROCAL_BITS - 1)))
                      >> SOFTMAX_RECIPROCAL_BITS)
            m.d.sync += out.payload.data[lane].eq(
                Mux(~mask[lane], 0, Mux(scaled > one, one, scaled)))
        with m.If(last):
            m.d.sync += stage[slot].eq(_FREE)
