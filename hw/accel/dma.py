"""LOAD, LOAD_SPARSE and STORE: moves between external memory and the scratchpads."""

from amaranth import C, Cat, Module, Mux, Signal

from .config import (DRAM_WORD_BYTES, SCRATCHPAD_ADDRESS_BITS, SIGMOID_ENTRIES_PER_WORD,
                     SIGMOID_WORDS, TABLE_ENTRIES_PER_WORD, TABLE_WORDS)
from .entry_gearbox import EntryGearbox
from .isa import ISA, Opcode, Space
from .ports import MEMORY_DATA_BITS, Unit, memory_port, scratchpad_ports, write_request
from .sparse_loader import IndexExpander

__all__ = ["Dma", "dma_cycles"]

#: A table LOAD's ``spad_addr`` is an entry; the table memories are addressed in words.
_TABLE_WORD_SHIFT = TABLE_ENTRIES_PER_WORD.bit_length() - 1
_SIGMOID_WORD_SHIFT = SIGMOID_ENTRIES_PER_WORD.bit_length() - 1
#: LOAD_SPARSE's index records are whole external words.
_WORD_BYTE_SHIFT = DRAM_WORD_BYTES.bit_length() - 1


def _times(value, constant):
    """``value * constant`` as a sum of shifted copies: a multiplier would map to a DSP48E2,
    whose combinational delay before the register made the slowest path of the 40x40 design
    (5.9 ns)."""
    return sum(value << bit for bit in range(constant.bit_length()) if constant >> bit & 1)


def dma_cycles(config, instruction):
    """Cycles from ``start`` to ``done`` of a LOAD, STORE or LOAD_SPARSE ``instruction``
    (its fields as attributes) when memory accepts a request every cycle and answers each in
    the next: one per external word (weights: :meth:`AcceleratorConfig.weight_words`) and,
    for LOAD_SPARSE, one per used index-record byte; two more (four for LOAD_SPARSE: its
    totals take two)."""
    if instruction.opcode == Opcode.LOAD_SPARSE:
        length = instruction.blocks * instruction.kept_rows
        record = instruction.blocks * (1 + instruction.kept_rows)
        return instruction.tiles * (record + config.weight_words(length)) + 4
    if instruction.opcode == Opcode.LOAD and instruction.space == Space.WGT:
        return config.weight_words(instruction.count) + 2
    entry = config.act_entry_words
    if instruction.opcode == Opcode.LOAD and instruction.space != Space.ACT:
        entry = 1
    return instruction.count * entry + 2


class Dma(Unit):
    """Executes one LOAD, LOAD_SPARSE or STORE (``docs/isa.md``).

    An activation entry is ``config.act_entry_words`` external words (one up
    to a 16x16 array, two up to 32x32, ...: the entry's bytes, lane 0 first,
    zero-padded; see ``vitforge.sw.accel.memory``); weight entries wider than
    a word lie back to back (:meth:`AcceleratorConfig.weight_words`: 2.5 words
    each on a 40x40 array, where padding would take 3), taken apart by an
    :class:`EntryGearbox` where ``array`` is not a multiple of 16; a
    parameter, LayerNorm or table entry is one word.

    LOAD issues one external read per word as fast as the memory accepts
    them, gathers the words of an entry as they arrive and writes the entry
    into the target scratchpad with its last word (the GELU table into the
    element-wise unit through ``tbl_write``, the sigmoid tables into the
    token selector through ``sig_write``). STORE reads an activation
    entry and writes its words out, reading the next entry while the last
    word of the previous one is written: one external word per cycle.
    ``done`` pulses when the last entry is written.

    LOAD_SPARSE reads ``tiles`` groups, each an index record
    (``record_bytes(blocks, kept_rows)`` bytes) and then its
    ``L = blocks * kept_rows`` value entries, issuing reads as LOAD does. An
    :class:`IndexExpander` turns the record into rows, one byte per cycle
    (holding ``mem.resp.ready`` low meanwhile), written to
    ``IDX[spad_addr + t*L + j]``; the values go to ``WGT[spad_addr + t*L + j]``
    as a LOAD writes WGT. With memory that answers every read in the next
    cycle it takes ``tiles * (blocks * (1 + kept_rows) + weight_words(L)) + 4``
    cycles from ``start`` to ``done``, two of them to multiply out its
    totals (``SPARSE_TOTALS``, ``SPARSE_WORDS``). The other products of
    fields are registered at ``start``.

    Parameters
    ----------
    config : AcceleratorConfig
    """

    def __init__(self, config):
        super().__init__(config, {
            "mem": memory_port(),
            **scratchpad_ports(config, "act_read", "act_write", "wgt_write", "prm_write",
                               "lnp_write", "idx_write"),
            "tbl_write": write_request(range(TABLE_WORDS), MEMORY_DATA_BITS),
            "sig_write": write_request(range(SIGMOID_WORDS), MEMORY_DATA_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        load = ISA[Opcode.LOAD].view(self.instruction)
        sparse = ISA[Opcode.LOAD_SPARSE].view(self.instruction)
        store = ISA[Opcode.STORE].view(self.instruction)
        config = self._config
        entry_words = config.act_entry_words
        entry_bits = len(self.act_read.data.as_value())
        space = load.space
        # Entries of entry_words words: ACT, WGT and LOAD_SPARSE's values.
        wide = (space == Space.ACT) | (space == Space.WGT) | (sparse.opcode == Opcode.LOAD_SPARSE)

        issued = Signal(32)            # LOAD: words requested; STORE: entries read
        received = Signal(SCRATCHPAD_ADDRESS_BITS)   # entries written (to a scratchpad or out)
        words_out = Signal(24)         # STORE: words written out
        piece = Signal(range(max(entry_words, 2)))  # word of the entry arriving / going out
        pending = Signal()             # STORE: an entry read waits on the read port's output
        # Running scratchpad addresses (no adder between a counter and a port): the entry
        # written next, and LOAD_SPARSE's IDX entry written next.
        target = Signal(SCRATCHPAD_ADDRESS_BITS)
        indexed = Signal(SCRATCHPAD_ADDRESS_BITS)
        # Fields that meet arithmetic, registered at start: the entries to move, and
        # LOAD_SPARSE's tiles.
        count = Signal(SCRATCHPAD_ADDRESS_BITS)
        tiles = Signal.like(sparse.tiles)
        # Products of fields, registered at start (LOAD_SPARSE's totals one cycle later).
        length = Signal.like(sparse.blocks * sparse.kept_rows)    # LOAD_SPARSE: L
        # A record's words: its blocks * (kept_rows + 1) bytes, the product being L + blocks.
        record_words = (length + sparse.blocks + DRAM_WORD_BYTES - 1) >> _WORD_BYTE_SHIFT
        entries = Signal.like(sparse.tiles * length)    # LOAD_SPARSE: value entries
        group_words = Signal.like(record_words + self._weight_words(length))  # per group
        words = Signal.like(Mux(wide, load.count * entry_words, sparse.tiles * group_words))
        group_entry = Signal.like(length)            # LOAD_SPARSE: value entry of the group
        values = Signal()              # LOAD_SPARSE: the group's values arrive (else its record)
        m.d.sync += self.done.eq(0)

        # External words of a LOAD entry, gathered until its last one arrives.
        response = self.mem.resp.payload
        taking = Signal()              # a response word for an entry is taken this cycle
        gathered = [Signal(MEMORY_DATA_BITS, name=f"gathered_{index}")
                    for index in range(entry_words - 1)]
        entry = Cat(*gathered, response)[:entry_bits]
        last_piece = ~wide | (piece == entry_words - 1)
        complete = Signal()
        m.d.comb += complete.eq(taking & last_piece)
        weight = entry                 # a weight entry as it is written into WGT
        # Weights arrive back to back: entries that are not whole words go through a gearbox.
        packing = Signal()
        gathering = C(1)
        if config.array > DRAM_WORD_BYTES and config.array % DRAM_WORD_BYTES:
            m.submodules.gearbox = gearbox = EntryGearbox(config.array)
            m.d.comb += [gearbox.word.eq(response), gearbox.take.eq(taking & packing),
                         gearbox.restart.eq(~packing)]
            weight, gathering = gearbox.entry, ~packing
            with m.If(packing):
                m.d.comb += complete.eq(gearbox.complete)
        with m.If(taking & ~last_piece & gathering):
            m.d.sync += piece.eq(piece + 1)
            with m.Switch(piece):
                for index, register in enumerate(gathered):
                    with m.Case(index):
                        m.d.sync += register.eq(response)
        with m.If(complete):
            m.d.sync += [received.eq(received + 1), target.eq(target + 1), piece.eq(0)]

        m.submodules.expander = expander = IndexExpander(len(self.idx_write.data))
        # Each row into IDX a cycle after the expander makes it, from registers (the
        # response word's byte and the row's adder were too slow for the block RAM's data
        # input): the record's rows are all written before its group's values end.
        m.d.sync += self.idx_write.en.eq(0)
        m.d.comb += self.idx_write.addr.eq(indexed)
        with m.If(self.idx_write.en):
            m.d.sync += indexed.eq(indexed + 1)
        # The record's shape, registered at start: the instruction comes through the side
        # units' multiplexer, too late for the expander's comparisons.
        with m.If(self.start):
            m.d.sync += [expander.blocks.eq(sparse.blocks),
                         expander.kept_rows.eq(sparse.kept_rows),
                         expander.block_shift.eq(sparse.block_shift)]

        def finish():
            m.d.sync += [self.busy.eq(0), self.done.eq(1)]
            m.next = "IDLE"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), issued.eq(0), received.eq(0),
                                 words_out.eq(0), piece.eq(0), indexed.eq(sparse.spad_addr),
                                 group_entry.eq(0), values.eq(0), tiles.eq(sparse.tiles),
                                 count.eq(Mux(store.opcode == Opcode.STORE, store.count,
                                              load.count)),
                                 target.eq(self._first_target(store, load)),
                                 words.eq(Mux(space == Space.WGT,
                                              self._weight_words(load.count),
                                              Mux(wide, _times(load.count, entry_words),
                                                  load.count))),
                                 length.eq(sparse.blocks * sparse.kept_rows)]
                    with m.If(store.opcode == Opcode.STORE):
                        m.next = "STORE"
                    with m.Elif(sparse.opcode == Opcode.LOAD_SPARSE):
                        m.next = "SPARSE_TOTALS"
                    with m.Else():
                        m.next = "LOAD"
            with m.State("SPARSE_TOTALS"):
                m.d.sync += [group_words.eq(record_words + self._weight_words(length)),
                             entries.eq(tiles * length), target.eq(sparse.spad_addr)]
                m.next = "SPARSE_WORDS"
            with m.State("SPARSE_WORDS"):
                m.d.sync += words.eq(tiles * group_words)
                m.next = "LOAD_SPARSE"
            with m.State("LOAD"):
                self._request_reads(m, load.dram_addr, issued, words)
                m.d.comb += [self.mem.resp.ready.eq(1), taking.eq(self.mem.resp.valid),
                             packing.eq(space == Space.WGT)]
                m.d.comb += [
                    self.act_write.addr.eq(target), self.act_write.data.eq(entry),
                    self.act_write.en.eq(complete & (space == Space.ACT)),
                    self.wgt_write.addr.eq(target), self.wgt_write.data.eq(weight),
                    self.wgt_write.en.eq(complete & (space == Space.WGT)),
                    self.prm_write.addr.eq(target), self.prm_write.data.eq(response),
                    self.prm_write.en.eq(complete & (space == Space.PRM)),
                    self.lnp_write.addr.eq(target), self.lnp_write.data.eq(response),
                    self.lnp_write.en.eq(complete & (space == Space.LNP)),
                    self.tbl_write.addr.eq(target),
                    self.tbl_write.data.eq(response),
                    self.tbl_write.en.eq(complete & (space == Space.TBL)),
                    self.sig_write.addr.eq(target),
                    self.sig_write.data.eq(response),
                    self.sig_write.en.eq(complete & (space == Space.SIG)),
                ]
                with m.If(complete & (received + 1 == count)):
                    finish()
            with m.State("LOAD_SPARSE"):
                self._request_reads(m, sparse.dram_addr, issued, words)
                m.d.comb += [
                    expander.record.payload.eq(response),
                    expander.record.valid.eq(self.mem.resp.valid & ~values),
                    taking.eq(self.mem.resp.valid & values), packing.eq(values),
                    self.mem.resp.ready.eq(Mux(values, 1, expander.record.ready)),
                    self.wgt_write.addr.eq(target),
                    self.wgt_write.data.eq(weight),
                    self.wgt_write.en.eq(complete),
                ]
                m.d.sync += [self.idx_write.data.eq(expander.row.data),
                             self.idx_write.en.eq(expander.row.valid)]
                with m.If(expander.last):
                    m.d.sync += values.eq(1)
                with m.If(complete):
                    m.d.sync += group_entry.eq(group_entry + 1)
                    with m.If(group_entry == length - 1):
                        m.d.sync += [group_entry.eq(0), values.eq(0)]
                    with m.If(received + 1 == entries):
                        finish()
            with m.State("STORE"):
                # Read entry i + 1 while the last word of entry i is written.
                final_word = piece == entry_words - 1
                advance = ~pending | (self.mem.req.ready & final_word)
                reading = advance & (issued < count)
                padded = Cat(self.act_read.data.as_value(),
                             C(0, entry_words * MEMORY_DATA_BITS - entry_bits))
                m.d.comb += [
                    self.act_read.addr.eq(target),
                    self.act_read.en.eq(reading),
                    self.mem.req.valid.eq(pending),
                    self.mem.req.payload.addr.eq(store.dram_addr + words_out),
                    self.mem.req.payload.write.eq(1),
                    self.mem.req.payload.wdata.eq(padded.word_select(piece, MEMORY_DATA_BITS)),
                ]
                with m.If(advance):
                    m.d.sync += pending.eq(reading)
                with m.If(reading):
                    m.d.sync += [issued.eq(issued + 1), target.eq(target + 1)]
                with m.If(pending & self.mem.req.ready):
                    m.d.sync += [words_out.eq(words_out + 1),
                                 piece.eq(Mux(final_word, 0, piece + 1))]
                    with m.If(final_word):
                        m.d.sync += received.eq(received + 1)
                        with m.If(received + 1 == count):
                            m.d.sync += pending.eq(0)
                            finish()
        return m

    @staticmethod
    def _first_target(store, load):
        """The first scratchpad address: a STORE's ACT word, a table LOAD's table word, any
        other LOAD's entry (LOAD_SPARSE sets its own when it has its totals)."""
        space = load.space
        return Mux(store.opcode == Opcode.STORE, store.spad_addr,
                   Mux(space == Space.TBL, load.spad_addr >> _TABLE_WORD_SHIFT,
                       Mux(space == Space.SIG, load.spad_addr >> _SIGMOID_WORD_SHIFT,
                           load.spad_addr)))

    def _weight_words(self, entries):
        """:meth:`AcceleratorConfig.weight_words` of a value (:func:`_times`), rounded up."""
        array = self._config.array
        if array <= DRAM_WORD_BYTES:
            return entries
        return (_times(entries, array) + DRAM_WORD_BYTES - 1) >> _WORD_BYTE_SHIFT

    def _request_reads(self, m, dram_addr, issued, words):
        """Request external words ``dram_addr ..`` one per cycle as memory accepts them."""
        m.d.comb += [
            self.mem.req.valid.eq(issued < words),
            self.mem.req.payload.addr.eq(dram_addr + issued),
            self.mem.req.payload.write.eq(0),
        ]
        with m.If(self.mem.req.valid & self.mem.req.ready):
            m.d.sync += issued.eq(issued + 1)
