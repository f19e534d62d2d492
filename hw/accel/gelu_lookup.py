"""The GELU table: a copy per lane, filled by LOAD into TBL, read a word of lanes at a time."""

from amaranth import Module, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..numerics import OPERAND_BITS
from .config import TABLE_ENTRIES_PER_WORD, TABLE_WORDS
from .ports import MEMORY_DATA_BITS

__all__ = ["GeluLookup", "table_write_port"]


def table_write_port():
    """The member through which the DMA fills a GELU table: ``addr``, ``data`` and ``en`` in
    (a table word of :data:`~.config.TABLE_ENTRIES_PER_WORD` one-byte entries)."""
    return Out(memory.WritePort.Signature(addr_width=(TABLE_WORDS - 1).bit_length(),
                                          shape=MEMORY_DATA_BITS))


class GeluLookup(wiring.Component):
    """Looks up ``lanes`` int8 values at once in the GELU table (``docs/isa.md``, GELU).

    The table is :data:`~.config.TABLE_WORDS` words of 16 one-byte entries,
    written through ``tbl_write``. Every lane has its own copy with one read
    port (in distributed RAM a read port is a copy anyway; one memory with
    ``lanes`` read ports also makes Yosys' memory mapping run out of memory):
    the value's high four bits pick the word, its low four bits the entry.

    Latency: one cycle. The entries of the values on ``value`` in a cycle
    ``take`` is high are on ``entry`` in the next cycle (only then: the
    words read follow ``value`` every cycle). Throughput: a word per cycle.

    Parameters
    ----------
    lanes : int

    Attributes
    ----------
    tbl_write : table write port (``addr``, ``data``, ``en`` in)
    value : ``In(ArrayLayout(unsigned(8), lanes))``
        The values' int8 bit patterns.
    take : ``In(1)``
    entry : ``Out(ArrayLayout(unsigned(8), lanes))``
        Their entries' int8 bit patterns.
    """

    def __init__(self, lanes):
        self._lanes = lanes
        super().__init__({
            "tbl_write": table_write_port(),
            "value": In(data.ArrayLayout(unsigned(OPERAND_BITS), lanes)),
            "take": In(1),
            "entry": Out(data.ArrayLayout(unsigned(OPERAND_BITS), lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        select_bits = (TABLE_ENTRIES_PER_WORD - 1).bit_length()
        for lane in range(self._lanes):
            m.submodules[f"table_{lane}"] = table = memory.Memory(
                shape=MEMORY_DATA_BITS, depth=TABLE_WORDS, init=[])
            writer, reader = table.write_port(), table.read_port()
            m.d.comb += [writer.addr.eq(self.tbl_write.addr), writer.data.eq(self.tbl_write.data),
                         writer.en.eq(self.tbl_write.en)]
            value = self.value[lane]
            selected = Signal(select_bits, name=f"selected_{lane}")
            m.d.comb += reader.addr.eq(value[select_bits:])
            with m.If(self.take):
                m.d.sync += selected.eq(value[:select_bits])
            m.d.comb += self.entry[lane].eq(reader.data.word_select(selected, OPERAND_BITS))
        return m
