"""LOAD and STORE: moves between external memory and the scratchpads."""

from amaranth import Module, Signal

from ..gemm.requantize import RequantParams
from ..nonlinear.layernorm import ChannelParams
from .isa import Opcode, Space
from .ports import (MEMORY_DATA_BITS, Unit, act_word, field, memory_port, read_request,
                    write_request)

__all__ = ["Dma", "TABLE_WORDS"]

#: The GELU table is 16 external words of 16 entries.
TABLE_WORDS = 16


class Dma(Unit):
    """Executes one LOAD or STORE (``docs/isa.md``).

    LOAD issues one external read per entry as fast as the memory accepts
    them and writes each response into the target scratchpad as it arrives
    (entries are the low bits of a 16-byte word, see ``vitforge.sw.accel.memory``).
    STORE reads the next activation word while writing the previous one: one
    word per cycle.
    ``done`` pulses when the last entry is written.

    Requires ``array <= 16`` (one external word per activation word).

    Parameters
    ----------
    config : AcceleratorConfig
    """

    def __init__(self, config):
        if config.array > 16:
            raise ValueError(f"array must be at most 16 for the DMA, not {config.array}")
        word = act_word(config)
        super().__init__(config, {
            "mem": memory_port(),
            "act_read": read_request(range(config.act_depth), word),
            "act_write": write_request(range(config.act_depth), word),
            "wgt_write": write_request(range(config.wgt_depth), word),
            "prm_write": write_request(range(config.prm_depth), RequantParams),
            "lnp_write": write_request(range(config.lnp_depth), ChannelParams),
            "tbl_write": write_request(range(TABLE_WORDS), MEMORY_DATA_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        inst = self.instruction
        is_store = inst[:8] == Opcode.STORE
        space = field(inst, Opcode.LOAD, "space")
        load_count = field(inst, Opcode.LOAD, "count")
        load_dram = field(inst, Opcode.LOAD, "dram_addr")
        load_spad = field(inst, Opcode.LOAD, "spad_addr")
        store_count = field(inst, Opcode.STORE, "count")
        store_dram = field(inst, Opcode.STORE, "dram_addr")
        store_spad = field(inst, Opcode.STORE, "spad_addr")

        issued = Signal(20)            # LOAD: requests sent; STORE: words read
        received = Signal(20)          # LOAD: responses written; STORE: words written
        pending = Signal()             # STORE: a word read last cycle waits to be written
        m.d.sync += self.done.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), issued.eq(0), received.eq(0)]
                    with m.If(is_store):
                        m.next = "STORE"
                    with m.Else():
                        m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += [
                    self.mem.req.valid.eq(issued < load_count),
                    self.mem.req.payload.addr.eq(load_dram + issued),
                    self.mem.req.payload.write.eq(0),
                    self.mem.resp.ready.eq(1),
                ]
                with m.If(self.mem.req.valid & self.mem.req.ready):
                    m.d.sync += issued.eq(issued + 1)
                response = self.mem.resp.payload
                target = load_spad + received
                arrived = self.mem.resp.valid
                m.d.comb += [
                    self.act_write.addr.eq(target), self.act_write.data.eq(response),
                    self.act_write.en.eq(arrived & (space == Space.ACT)),
                    self.wgt_write.addr.eq(target), self.wgt_write.data.eq(response),
                    self.wgt_write.en.eq(arrived & (space == Space.WGT)),
                    self.prm_write.addr.eq(target), self.prm_write.data.eq(response),
                    self.prm_write.en.eq(arrived & (space == Space.PRM)),
                    self.lnp_write.addr.eq(target), self.lnp_write.data.eq(response),
                    self.lnp_write.en.eq(arrived & (space == Space.LNP)),
                    self.tbl_write.addr.eq((load_spad >> 4) + received),
                    self.tbl_write.data.eq(response),
                    self.tbl_write.en.eq(arrived & (space == Space.TBL)),
                ]
                with m.If(arrived):
                    m.d.sync += received.eq(received + 1)
                    with m.If(received + 1 == load_count):
                        m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                        m.next = "IDLE"
            with m.State("STORE"):
                # Read word i + 1 while word i is written: one word per cycle.
                advance = ~pending | self.mem.req.ready
                reading = advance & (issued < store_count)
                m.d.comb += [
                    self.act_read.addr.eq(store_spad + issued),
                    self.act_read.en.eq(reading),
                    self.mem.req.valid.eq(pending),
                    self.mem.req.payload.addr.eq(store_dram + received),
                    self.mem.req.payload.write.eq(1),
                    self.mem.req.payload.wdata.eq(self.act_read.data.as_value()),
                ]
                with m.If(advance):
                    m.d.sync += [pending.eq(reading), issued.eq(issued + reading)]
                with m.If(pending & self.mem.req.ready):
                    m.d.sync += received.eq(received + 1)
                    with m.If(received + 1 == store_count):
                        m.d.sync += [self.busy.eq(0), self.done.eq(1), pending.eq(0)]
                        m.next = "IDLE"
        return m
