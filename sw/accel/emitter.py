"""Instruction emission and the external-memory image a program is laid out in."""

from vitforge.hw.accel.config import DRAM_WORD_BYTES
from vitforge.hw.accel.isa import (INSTRUCTION_BYTES, Opcode, Space, beside_refusal, decode,
                                   encode, written_activations)
from vitforge.sw.gemm.layout import pack_weights

from .memory import pack_entries, pack_sparse
from .program import ExternalMatrix, TraceEntry, activation_bytes

__all__ = ["Emitter"]


class Emitter:
    """Appends instructions and the data they load to a program being built.

    Data sections go to the image in the order they are loaded; the
    instructions follow them when :meth:`finish` lays the program out. In
    trace mode every computing instruction is followed by a STORE of the words
    it wrote; an instruction whose ``beside`` field is set goes before the
    STORE of the GEMM it runs beside, so the two still run together.

    Parameters
    ----------
    config : AcceleratorConfig
    trace : bool
    """

    def __init__(self, config, trace):
        self.config = config
        self.trace = trace
        self.image = bytearray()
        self.instructions = []      # (opcode, fields) in order
        self.sections = []          # the phase each instruction serves
        self.traced = []            # TraceEntry per traced instruction
        self.section = None
        self.macs = 0           # multiply-accumulates the GEMMs do
        self.dense_macs = 0     # ... and would do with every weight dense
        self.weight_half = 0
        #: WGT words from here up are reserved (:meth:`reserve_weights`); the halves share
        #: the rest.
        self.weight_end = config.wgt_depth

    @property
    def next_word(self):
        """The external word the next data section starts at."""
        return len(self.image) // DRAM_WORD_BYTES

    def append(self, raw):
        """Append ``raw`` bytes, padded to whole words; returns their first word."""
        address = self.next_word
        self.image += raw
        self.image += bytes(-len(self.image) % DRAM_WORD_BYTES)
        return address

    def reserve(self, words):
        """Append ``words`` zero words; returns the first."""
        return self.append(bytes(words * DRAM_WORD_BYTES))

    def __call__(self, opcode, **fields):
        """Append one instruction (its fields are checked now, not at run time).

        Raises
        ------
        RuntimeError
            If its ``beside`` field is set and it may not run beside the instruction
            before it (:func:`~vitforge.hw.accel.isa.beside_refusal`): a compiler bug.
        """
        word = encode(opcode, **fields)
        index = len(self.instructions)
        if fields.get("beside"):
            index = next((at + 1 for at in reversed(range(index))
                          if self.sections[at] != "trace"), 0)
            self._check_beside(index - 1, decode(word))
        self.instructions.insert(index, (Opcode(opcode), fields))
        self.sections.insert(index, self.section)
        written = written_activations(opcode, fields, self.config.array)
        if self.trace and written is not None:
            self._trace(index, Opcode(opcode), written.first, written.end, written.stride)

    def _check_beside(self, host, side):
        """Raise ``RuntimeError`` unless ``side`` may run beside instruction ``host`` (the
        last one other than a trace STORE, -1 if none)."""
        before = None
        if host >= 0:
            opcode, fields = self.instructions[host]
            before = decode(encode(opcode, **fields))
        refusal = beside_refusal(before, side, self.config.array, self.config.act_bank_start)
        if refusal is not None:
            raise RuntimeError(f"compiler error: {side} is to run beside instruction {host} "
                               f"({before}), but {refusal}")

    def _trace(self, index, opcode, first, end, stride):
        address = self.reserve((end - first) * self.config.act_entry_words)
        self.traced.append(TraceEntry(index=index, opcode=opcode, act_addr=first,
                                      words=end - first, dram_addr=address, stride=stride))
        self.instructions.append((Opcode.STORE, dict(spad_addr=first, dram_addr=address,
                                                     count=end - first)))
        self.sections.append("trace")

    def load(self, space, entries, spad_addr, count):
        """LOAD ``entries`` (see :func:`~vitforge.sw.accel.memory.pack_entries`) into
        ``space`` from ``spad_addr``; returns their external address."""
        address = self.append(pack_entries(space, entries, self.config))
        self(Opcode.LOAD, space=space, dram_addr=address, spad_addr=spad_addr, count=count)
        return address

    def load_activations(self, matrix, spad_addr):
        """LOAD an int8 matrix into ACT from ``spad_addr``; returns where it lies outside."""
        address = self.append(activation_bytes(matrix, self.config))
        placed = ExternalMatrix(address, *matrix.shape)
        self(Opcode.LOAD, space=Space.ACT, dram_addr=address, spad_addr=spad_addr,
             count=placed.words(self.config.array))
        return placed

    def store_activations(self, spad_addr, rows, cols):
        """STORE a ``rows x cols`` matrix from ACT ``spad_addr`` to words reserved for it;
        returns where it lies outside."""
        placed = ExternalMatrix(self.next_word, rows, cols)
        words = placed.words(self.config.array)
        self.reserve(words * self.config.act_entry_words)
        self(Opcode.STORE, spad_addr=spad_addr, dram_addr=placed.dram_addr, count=words)
        return placed

    def load_weights(self, matrix, base=None):
        """LOAD a weight matrix into WGT from ``base`` (by default the next half); returns
        its WGT address."""
        words = pack_weights(matrix, self.config.array)
        base = self.take_weight_half() if base is None else base
        self.load(Space.WGT, words, base, len(words))
        return base

    def load_sparse_weights(self, weight):
        """LOAD_SPARSE an HPSparseWeight (on groups of ``array`` columns, at least one entry
        per group) into the next half of WGT and the same words of IDX; returns its WGT
        address (the first column tile's first entry)."""
        pattern = weight.pattern
        base = self.take_weight_half()
        address = self.append(pack_sparse(weight, self.config))
        self(Opcode.LOAD_SPARSE, dram_addr=address, spad_addr=base, tiles=pattern.groups,
             blocks=pattern.kept_blocks, kept_rows=pattern.kept_rows,
             block_shift=pattern.block_rows.bit_length() - 1)
        return base

    def take_weight_half(self):
        """The WGT half after the last one taken, so the next operand can be loaded
        while the current GEMM reads (the memory plan checks that operands fit)."""
        base = self.weight_half * (self.weight_end // 2)
        self.weight_half ^= 1
        return base

    def reserve_weights(self, words):
        """Reserve the top ``words`` of WGT (before any half is taken); returns the first."""
        if self.instructions:
            raise RuntimeError("WGT words are reserved before the first instruction")
        self.weight_end -= words
        return self.weight_end

    def finish(self):
        """Append DONE and the encoded program; returns the program's first word."""
        self(Opcode.DONE)
        return self.append(b"".join(encode(opcode, **fields).to_bytes(INSTRUCTION_BYTES, "little")
                                    for opcode, fields in self.instructions))
