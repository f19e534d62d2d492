"""LOAD_SPARSE's index expansion: a group's index record bytes -> absolute A-row numbers."""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .ports import MEMORY_DATA_BITS

__all__ = ["IndexExpander"]

_WORD_BYTES = MEMORY_DATA_BITS // 8


class IndexExpander(wiring.Component):
    """Expands index records (``docs/sparsity.md``) into row numbers, one byte per cycle.

    A record is, for each of ``blocks`` kept blocks, its block number (one
    byte) and then ``kept_rows`` row offsets (one byte each), packed into
    whole external words and zero-padded. The expander reads one byte of the
    word on ``record`` per cycle while ``record.valid`` is high: a block
    number becomes the base ``block << block_shift``, an offset comes out on
    ``row`` as ``base + offset`` in the same cycle. ``record.ready`` is high
    in the cycle of a word's last byte, or of the record's last used byte
    (the rest of that word is padding and is dropped); ``last`` marks that
    cycle. The next record starts with the next word.

    Throughput: one record byte per cycle (``blocks * (1 + kept_rows)``
    cycles per record when words are there); no latency (combinational
    outputs, counters updated at the clock edge).

    Parameters
    ----------
    row_bits : int
        Width of a row number (``GemmConfig.index_bits``); wider sums are
        truncated.

    Attributes
    ----------
    record : ``In(stream.Signature(MEMORY_DATA_BITS))``
        Record words, in order.
    blocks, kept_rows : ``In(9)``
        The record's shape (held while it is read; both at least 1).
    block_shift : ``In(4)``
        ``log2`` of the rows of a block.
    row : ``Out`` ``valid`` and ``data`` (``row_bits``)
        A row number, one per offset byte.
    last : ``Out(1)``
        The record's last used byte is read this cycle.
    """

    def __init__(self, row_bits):
        super().__init__({
            "record": In(stream.Signature(MEMORY_DATA_BITS)),
            "blocks": In(9),
            "kept_rows": In(9),
            "block_shift": In(4),
            "row": Out(wiring.Signature({"valid": Out(1), "data": Out(row_bits)})),
            "last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        position = Signal(range(_WORD_BYTES))       # byte of the word
        field = Signal.like(self.kept_rows)          # 0: block number, 1..kept_rows: offsets
        block = Signal.like(self.blocks)             # kept block of the record
        base = Signal.like(self.row.data)            # first row of the current block

        byte = self.record.payload.word_select(position, 8)
        block_end = field == self.kept_rows
        record_end = block_end & (block == self.blocks - 1)
        take = self.record.valid
        m.d.comb += [
            self.row.valid.eq(take & (field != 0)),
            self.row.data.eq(base + byte),
            self.last.eq(take & record_end),
            self.record.ready.eq(take & ((position == _WORD_BYTES - 1) | record_end)),
        ]
        with m.If(take):
            m.d.sync += [position.eq(position + 1), field.eq(field + 1)]
            with m.If(field == 0):
                m.d.sync += base.eq(byte << self.block_shift)
            with m.If(block_end):
                m.d.sync += [field.eq(0), block.eq(block + 1)]
            with m.If(record_end):
                m.d.sync += [position.eq(0), block.eq(0)]
        return m
