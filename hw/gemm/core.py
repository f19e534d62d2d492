"""GEMM datapath without memories: controller, PE array, writeback."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from ..numerics import OPERAND_BITS
from .array import PEArray
from .cascade_array import CascadeArray
from .descriptor import descriptor_layout
from .requantize import RequantParams
from .tile_controller import TileController
from .writeback import Writeback

__all__ = ["GemmCore", "COUNTER_BITS"]

#: Width of the performance counters.
COUNTER_BITS = 32


def _read_request(address_shape, data_shape):
    return Out(wiring.Signature({"addr": Out(address_shape), "en": Out(1),
                                 "data": In(data_shape)}))


class GemmCore(wiring.Component):
    """Executes :class:`GemmDescriptor` commands through memory ports it does not own.

    The operand memories (A, B, parameters) must return read data one cycle
    after ``en``; A and B return the aligned group of ``config.k_per_cycle``
    words holding ``addr`` (:class:`DualPortBuffer` with ``words_per_read``);
    the result words leave through ``c_write``. Both the stand-alone
    :class:`GemmEngine` (its own buffers) and the programmable accelerator (A
    and C in one activation scratchpad) wrap this core.

    Throughput and latency: see :class:`GemmEngine`.

    Attributes
    ----------
    cmd : ``In(stream.Signature(descriptor_layout(config)))``
    a_read, b_read, p_read : read requests (``addr``, ``en`` out; ``data`` in)
    i_read : index-buffer read request (``addr``, ``en`` out; ``data`` in,
        ``config.index_bits`` unsigned): one entry per B word, read by sparse
        commands one cycle ahead of the B word (see :class:`TileController`)
    c_write : write requests (``addr``, ``data``, ``en`` out)
    busy, done : ``Out(1)``
        ``done`` pulses in the cycle ``busy`` falls.
    busy_cycles, mac_cycles : ``Out(32)``
    """

    def __init__(self, config):
        self._config = config
        layout = descriptor_layout(config)
        rows_word = data.ArrayLayout(signed(OPERAND_BITS), config.rows)
        cols_word = data.ArrayLayout(signed(OPERAND_BITS), config.cols)
        a_group, b_group = rows_word, cols_word
        if config.k_per_cycle > 1:
            a_group = data.ArrayLayout(rows_word, config.k_per_cycle)
            b_group = data.ArrayLayout(cols_word, config.k_per_cycle)
        super().__init__({
            "cmd": In(stream.Signature(layout)),
            "a_read": _read_request(layout["a_addr"].shape, a_group),
            "b_read": _read_request(layout["b_addr"].shape, b_group),
            "i_read": _read_request(layout["b_addr"].shape, config.index_bits),
            "p_read": _read_request(layout["p_addr"].shape, RequantParams),
            "c_write": Out(wiring.Signature({"addr": Out(layout["c_addr"].shape),
                                             "data": Out(rows_word), "en": Out(1)})),
            "busy": Out(1),
            "done": Out(1),
            "busy_cycles": Out(COUNTER_BITS),
            "mac_cycles": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        m.submodules.controller = controller = TileController(config)
        if config.k_per_cycle == 1:
            m.submodules.array = array = PEArray(rows=config.rows, cols=config.cols,
                                                 acc_width=config.acc_width,
                                                 macs_per_dsp=config.macs_per_dsp)
            m.d.comb += [array.a.eq(self.a_read.data), array.b.eq(self.b_read.data)]
        else:
            m.submodules.array = array = CascadeArray(
                rows=config.rows, cols=config.cols, depth=config.k_per_cycle,
                acc_width=config.acc_width)
            self._feed_slabs(m, array, controller)
        m.submodules.writeback = writeback = Writeback(config)

        connect(m, flipped(self.cmd), controller.cmd)
        connect(m, flipped(self.i_read), controller.i_read)
        m.d.comb += [
            self.a_read.addr.eq(controller.a_read.addr),
            self.a_read.en.eq(controller.a_read.en),
            self.b_read.addr.eq(controller.b_read.addr),
            self.b_read.en.eq(controller.b_read.en),
            array.valid.eq(controller.valid),
            array.first.eq(controller.first),
            array.last.eq(controller.last),
            array.shift.eq(writeback.shift),

            writeback.tile_done.eq(controller.tile_done),
            writeback.tile.eq(controller.tile),
            writeback.column.eq(array.column),
            self.p_read.addr.eq(writeback.p_read.addr),
            self.p_read.en.eq(writeback.p_read.en),
            writeback.p_read.data.eq(self.p_read.data),
            self.c_write.addr.eq(writeback.c_write.addr),
            self.c_write.data.eq(writeback.c_write.data),
            self.c_write.en.eq(writeback.c_write.en),
        ]

        # In flight: tiles being issued, and finished tiles until their last
        # word is written (the writeback sees a tile from its tile_done on).
        busy = Signal()
        busy_before = Signal()
        m.d.comb += [
            busy.eq(controller.running | writeback.busy),
            self.busy.eq(busy),
            self.done.eq(busy_before & ~busy),
        ]
        m.d.sync += busy_before.eq(busy)
        with m.If(busy):
            m.d.sync += self.busy_cycles.eq(self.busy_cycles + 1)
        with m.If(controller.valid):
            m.d.sync += self.mac_cycles.eq(self.mac_cycles + 1)
        return m

    def _feed_slabs(self, m, array, controller):
        """The read groups as the cascade array's steps: step 0 is the group's word at the
        controller's lane (a sparse command's single word), the other steps the group's
        words, A zeroed where the step is past the tile's ``k`` (its product is then 0)."""
        a_words, b_words = self.a_read.data, self.b_read.data
        m.d.comb += [array.a[0].eq(a_words[controller.a_lane]),
                     array.b[0].eq(b_words[controller.b_lane])]
        for t in range(1, self._config.k_per_cycle):
            m.d.comb += [array.a[t].eq(Mux(controller.live[t], a_words[t], 0)),
                         array.b[t].eq(b_words[t])]
