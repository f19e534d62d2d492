"""GEMM engine: buffers, PE array, tile controller and writeback."""

from amaranth import Module, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from ..numerics import OPERAND_BITS
from .buffer import DualPortBuffer
from .core import COUNTER_BITS, GemmCore
from .descriptor import descriptor_layout
from .requantize import RequantParams

__all__ = ["GemmEngine", "COUNTER_BITS"]


def _load_port(shape, depth):
    return Out(memory.WritePort.Signature(addr_width=max(1, (depth - 1).bit_length()),
                                         shape=shape))


class GemmEngine(wiring.Component):
    """int8 GEMM with int32 accumulation and per-channel requantization.

    Executes :class:`GemmDescriptor` commands over four on-chip buffers: A
    (activations, ``rows`` int8 per word), B (weights, ``cols`` int8 per word),
    P (per-channel :class:`RequantParams`) and C (results, ``rows`` int8 per
    word). Loads through the ``*_load`` ports and reads through ``c_read`` may
    run while a command executes (double buffering by address region). A
    fifth buffer, I (``b_depth`` entries of ``config.index_bits`` unsigned),
    holds the A-row number of each B word for sparse commands (see
    :class:`GemmDescriptor`). A and B are ``config.k_per_cycle`` banks, so
    that a read returns that many consecutive words.

    Throughput: ``rows * cols * k_per_cycle`` MACs per cycle; a dense command
    takes ``m_tiles * ceil(n / cols) * max(ceil(k / k_per_cycle), cols)``
    issue cycles (sparse ones one step per cycle: ``max(k, cols)`` per tile)
    plus the last tile's latency, drain and writes
    (``vitforge.sw.gemm.plan.command_cycles`` is exact). A new command is
    accepted once the previous one has issued its last tile, so its drain
    overlaps the next command.

    Parameters
    ----------
    config : GemmConfig

    Attributes
    ----------
    cmd : ``In(stream.Signature(descriptor_layout(config)))``
    a_load, b_load, i_load, p_load : ``Out(memory.WritePort.Signature)``
        Load ports, as a memory's write port (``addr``, ``data``, ``en`` in).
    c_read : ``Out(memory.ReadPort.Signature)``
        Result words, one cycle read latency.
    busy : ``Out(1)``
        A command is running or its results are not all written yet.
    done : ``Out(1)``
        Pulses in the cycle ``busy`` falls.
    busy_cycles, mac_cycles : ``Out(32)``
        Cycles with ``busy`` high, and cycles in which the array did a MAC
        step (``rows * cols`` MACs each); both count from reset and wrap.
    """

    def __init__(self, config):
        self._config = config
        rows_word = data.ArrayLayout(signed(OPERAND_BITS), config.rows)
        cols_word = data.ArrayLayout(signed(OPERAND_BITS), config.cols)
        super().__init__({
            "cmd": In(stream.Signature(descriptor_layout(config))),
            "a_load": _load_port(rows_word, config.a_depth),
            "b_load": _load_port(cols_word, config.b_depth),
            "i_load": _load_port(unsigned(config.index_bits), config.b_depth),
            "p_load": _load_port(RequantParams, config.param_depth),
            "c_read": Out(memory.ReadPort.Signature(
                addr_width=max(1, (config.c_depth - 1).bit_length()), shape=rows_word)),
            "busy": Out(1),
            "done": Out(1),
            "busy_cycles": Out(COUNTER_BITS),
            "mac_cycles": Out(COUNTER_BITS),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        m = Module()
        config = self._config

        m.submodules.a_buffer = a_buffer = DualPortBuffer(
            shape=data.ArrayLayout(signed(OPERAND_BITS), config.rows), depth=config.a_depth,
            words_per_read=config.k_per_cycle)
        m.submodules.b_buffer = b_buffer = DualPortBuffer(
            shape=data.ArrayLayout(signed(OPERAND_BITS), config.cols), depth=config.b_depth,
            words_per_read=config.k_per_cycle)
        m.submodules.i_buffer = i_buffer = DualPortBuffer(
            shape=unsigned(config.index_bits), depth=config.b_depth)
        m.submodules.p_buffer = p_buffer = DualPortBuffer(
            shape=RequantParams, depth=config.param_depth)
        m.submodules.c_buffer = c_buffer = DualPortBuffer(
            shape=data.ArrayLayout(signed(OPERAND_BITS), config.rows), depth=config.c_depth)
        m.submodules.core = core = GemmCore(config)

        connect(m, flipped(self.a_load), a_buffer.write)
        connect(m, flipped(self.b_load), b_buffer.write)
        connect(m, flipped(self.i_load), i_buffer.write)
        connect(m, flipped(self.p_load), p_buffer.write)
        connect(m, flipped(self.c_read), c_buffer.read)
        connect(m, flipped(self.cmd), core.cmd)
        for buffer, port in ((a_buffer, core.a_read), (b_buffer, core.b_read),
                             (i_buffer, core.i_read), (p_buffer, core.p_read)):
            m.d.comb += [buffer.read.addr.eq(port.addr), buffer.read.en.eq(port.en),
                         port.data.eq(buffer.read.data)]
        m.d.comb += [
            c_buffer.write.addr.eq(core.c_write.addr),
            c_buffer.write.data.eq(core.c_write.data),
            c_buffer.write.en.eq(core.c_write.en),
            self.busy.eq(core.busy),
            self.done.eq(core.done),
            self.busy_cycles.eq(core.busy_cycles),
            self.mac_cycles.eq(core.mac_cycles),
        ]
        return m
