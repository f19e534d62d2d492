"""GELU on int8 activations through a run-time loaded table."""

from amaranth import Module, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..checks import check_lanes
from ..numerics import GELU_TABLE_DEPTH, OPERAND_BITS

__all__ = ["GeluUnit", "GELU_LATENCY"]

#: Cycles from an accepted input beat to its output beat (without stalls).
GELU_LATENCY = 1


class GeluUnit(wiring.Component):
    """Element-wise ``y = table[x]`` for ``lanes`` int8 values per beat.

    The table holds ``GELU(x * scale_in) / scale_out`` rounded to the nearest
    int8 for each of the 256 int8 inputs, computed in software from the two
    scales (``vitforge.sw.params.gelu.gelu_table``) and written through
    :attr:`table_write` before use: one design serves every layer and scale,
    and every output is the best int8 rounding of exact GELU, which no
    low-degree polynomial on int8 inputs reaches (``docs/nonlinear.md``).

    Each lane has its own copy of the table (a 256 x 8 distributed RAM), all
    written at once.

    Throughput: one beat (``lanes`` elements) per cycle. Latency:
    :data:`GELU_LATENCY` cycle. ``o`` may stall through ``o.ready``; the unit
    then holds its output and stops accepting input (``i.ready`` low).

    Parameters
    ----------
    lanes : int
        Elements per beat.

    Attributes
    ----------
    i : ``In(stream.Signature(ArrayLayout(signed(8), lanes)))``
    o : ``Out(stream.Signature(ArrayLayout(signed(8), lanes)))``
    table_write : ``Out(memory.WritePort.Signature(addr_width=8, shape=signed(8)))``
        Entry ``addr`` is the output for input ``addr - 256`` if ``addr >= 128``,
        else for input ``addr`` (i.e. the input's two's-complement bits).
    """

    def __init__(self, *, lanes):
        check_lanes("lanes", lanes)
        beat = data.ArrayLayout(signed(OPERAND_BITS), lanes)
        super().__init__({
            "i": In(stream.Signature(beat)),
            "o": Out(stream.Signature(beat)),
            "table_write": Out(memory.WritePort.Signature(addr_width=OPERAND_BITS,
                                                          shape=signed(OPERAND_BITS))),
        })
        self._lanes = lanes

    def elaborate(self, platform):
        m = Module()
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        with m.If(advance):
            m.d.sync += self.o.valid.eq(self.i.valid)
        for lane in range(self._lanes):
            table = memory.Memory(shape=signed(OPERAND_BITS), depth=GELU_TABLE_DEPTH, init=[])
            m.submodules[f"table_{lane}"] = table
            write = table.write_port()
            read = table.read_port()
            m.d.comb += [
                write.addr.eq(self.table_write.addr),
                write.data.eq(self.table_write.data),
                write.en.eq(self.table_write.en),
                read.addr.eq(self.i.payload[lane].as_unsigned()),
                read.en.eq(advance),
                self.o.payload[lane].eq(read.data),
            ]
        return m
