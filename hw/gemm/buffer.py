"""On-chip buffer with one write port and one read port."""

from amaranth import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2

__all__ = ["DualPortBuffer"]


class DualPortBuffer(wiring.Component):
    """Simple dual-port RAM: one side writes while the other reads.

    The engine keeps loads and compute apart by address: while it reads one
    region, a loader (the host in simulation, a DMA later) fills another. This
    is the double buffering of ``docs/architecture.md``; the ports never wait
    for each other.

    Parameters
    ----------
    shape : shape-castable
        Shape of one word, e.g. ``data.ArrayLayout(signed(8), 16)``.
    depth : int
        Number of words.

    Attributes
    ----------
    write : ``Out(memory.WritePort.Signature)``
        ``addr``, ``data`` and ``en``; the word is written at the clock edge.
    read : ``Out(memory.ReadPort.Signature)``
        ``addr`` and ``en`` in, ``data`` out one cycle later (latency 1). A read
        and a write of the same address in one cycle return the old word.
    """

    def __init__(self, *, shape, depth):
        if not isinstance(depth, int) or depth <= 0:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        self._shape = shape
        self._depth = depth
        addr_width = max(1, ceil_log2(depth))
        super().__init__({
            "write": Out(memory.WritePort.Signature(addr_width=addr_width, shape=shape)),
            "read": Out(memory.ReadPort.Signature(addr_width=addr_width, shape=shape)),
        })

    @property
    def depth(self):
        return self._depth

    def elaborate(self, platform):
        m = Module()
        m.submodules.storage = storage = memory.Memory(shape=self._shape, depth=self._depth,
                                                       init=[])
        write_port = storage.write_port()
        read_port = storage.read_port()
        m.d.comb += [
            write_port.addr.eq(self.write.addr),
            write_port.data.eq(self.write.data),
            write_port.en.eq(self.write.en),
            read_port.addr.eq(self.read.addr),
            read_port.en.eq(self.read.en),
            self.read.data.eq(read_port.data),
        ]
        return m
