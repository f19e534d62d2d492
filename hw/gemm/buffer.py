"""On-chip buffer with one write port and one read port of one or more consecutive words."""

from amaranth import Module
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2, exact_log2

__all__ = ["DualPortBuffer"]


class DualPortBuffer(wiring.Component):
    """Simple dual-port RAM: one side writes a word while the other reads words.

    The engine keeps loads and compute apart by address: while it reads one
    region, a loader (the host in simulation, a DMA later) fills another. This
    is the double buffering of ``docs/architecture.md``; the ports never wait
    for each other.

    With ``words_per_read = w > 1`` the buffer is ``w`` memories (banks) of
    ``depth / w`` words, word ``x`` in bank ``x % w`` at row ``x // w``, and
    a read returns the ``w`` words of the aligned group holding ``addr``:
    words ``addr - addr % w`` to ``addr - addr % w + w - 1``.

    Parameters
    ----------
    shape : shape-castable
        Shape of one word, e.g. ``data.ArrayLayout(signed(8), 16)``.
    depth : int
        Number of words (a multiple of ``words_per_read``).
    words_per_read : int
        Words a read returns, a power of two.

    Attributes
    ----------
    write : ``Out(memory.WritePort.Signature)``
        ``addr``, ``data`` and ``en``; the word is written at the clock edge.
    read : ``Out(memory.ReadPort.Signature)``
        ``addr`` and ``en`` in, ``data`` out one cycle later (latency 1): one
        word, or an ``ArrayLayout(shape, words_per_read)`` when
        ``words_per_read > 1``. A read and a write of the same address in one
        cycle return the old word.
    """

    def __init__(self, *, shape, depth, words_per_read=1):
        if not isinstance(depth, int) or depth <= 0:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        if (not isinstance(words_per_read, int) or words_per_read <= 0
                or words_per_read & (words_per_read - 1)):
            raise ValueError(f"words_per_read must be a power of two, not {words_per_read!r}")
        if depth % words_per_read:
            raise ValueError(f"depth must be a multiple of words_per_read={words_per_read}, "
                             f"not {depth}")
        self._shape = shape
        self._depth = depth
        self._words_per_read = words_per_read
        addr_width = max(1, ceil_log2(depth))
        read_shape = shape if words_per_read == 1 else data.ArrayLayout(shape, words_per_read)
        super().__init__({
            "write": Out(memory.WritePort.Signature(addr_width=addr_width, shape=shape)),
            "read": Out(memory.ReadPort.Signature(addr_width=addr_width, shape=read_shape)),
        })

    @property
    def depth(self):
        return self._depth

    def elaborate(self, platform):
        m = Module()
        banks = self._words_per_read
        bank_bits = exact_log2(banks)
        data_out = [self.read.data] if banks == 1 else list(self.read.data)
        write_bank = self.write.addr[:bank_bits]
        for bank, word in enumerate(data_out):
            store = memory.Memory(shape=self._shape, depth=self._depth // banks, init=[])
            m.submodules["storage" if banks == 1 else f"bank_{bank}"] = store
            write_port = store.write_port()
            read_port = store.read_port()
            m.d.comb += [
                write_port.addr.eq(self.write.addr[bank_bits:]),
                write_port.data.eq(self.write.data),
                write_port.en.eq(self.write.en & (write_bank == bank) if banks > 1
                                 else self.write.en),
                read_port.addr.eq(self.read.addr[bank_bits:]),
                read_port.en.eq(self.read.en),
                word.eq(read_port.data),
            ]
        return m
