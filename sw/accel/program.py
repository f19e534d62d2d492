"""A compiled program: its memory image, where its input and output lie, how to read them."""

from dataclasses import dataclass, replace

import numpy as np

from vitforge.errors import ConfigError
from vitforge.hw.accel.config import DRAM_WORD_BYTES
from vitforge.hw.accel.isa import Opcode, Space
from vitforge.sw.gemm.layout import pack_activations, tiles, unpack_activations

from .memory import pack_entries

__all__ = ["CompiledProgram", "ExternalMatrix", "InputSlot", "TraceEntry", "activation_bytes"]


def activation_bytes(matrix, config):
    """The external-memory bytes of an int8 matrix in activation layout."""
    return pack_entries(Space.ACT, pack_activations(matrix, config.array), config)


@dataclass(frozen=True)
class ExternalMatrix:
    """An int8 ``rows x cols`` matrix in activation layout from external word ``dram_addr``."""

    dram_addr: int
    rows: int
    cols: int

    def words(self, lanes):
        """Activation words the matrix takes (whole tiles of ``lanes`` rows)."""
        return tiles(self.rows, lanes) * self.cols

    def byte_range(self, config):
        """``(first, end)`` byte offsets of the matrix in the image."""
        first = self.dram_addr * DRAM_WORD_BYTES
        size = self.words(config.array) * config.act_entry_words * DRAM_WORD_BYTES
        return first, first + size

    def read(self, dram, config):
        """The matrix from an external-memory image."""
        first, end = self.byte_range(config)
        raw = np.frombuffer(bytes(dram[first:end]), np.int8)
        words = raw.reshape(-1, config.act_entry_words * DRAM_WORD_BYTES)[:, :config.array]
        return unpack_activations(words, self.rows, self.cols, config.array)


@dataclass(frozen=True)
class InputSlot:
    """Where the per-run input of a program lies: rows ``first_row..`` of ``matrix``.

    Rows before ``first_row`` are zero (a whole model's class token, which has
    no patch features). ``name`` is what error messages call the input.
    """

    name: str
    matrix: ExternalMatrix
    first_row: int

    @property
    def shape(self):
        """The shape of the input the caller gives."""
        return self.matrix.rows - self.first_row, self.matrix.cols

    def rows(self, values):
        """All rows of the matrix for the input ``values``.

        Raises
        ------
        ValueError
            If ``values`` is not an int8 array of :attr:`shape`.
        """
        values = np.asarray(values)
        if values.dtype != np.int8 or values.shape != self.shape:
            raise ConfigError(f"{self.name} must be int8 of shape {self.shape}, not "
                              f"{values.dtype} of shape {values.shape}")
        return np.concatenate([np.zeros((self.first_row, self.matrix.cols), np.int8), values])


@dataclass(frozen=True)
class TraceEntry:
    """An instruction's result copied to external memory right after it (trace mode)."""

    index: int            # of the traced instruction in the program
    opcode: Opcode
    act_addr: int         # first activation word of the copied range
    words: int
    dram_addr: int
    stride: int           # activation words per tile of the destination (0: elementwise)


@dataclass(frozen=True)
class CompiledProgram:
    """A program with everything it reads, ready to load into external memory.

    Attributes
    ----------
    config : AcceleratorConfig
    plan : MemoryPlan
        Where every scratchpad region lies and when it is live.
    image : bytes
        The data sections, then the program at ``program_addr``.
    program_addr : int
    instructions : tuple
        ``(opcode, fields)`` in program order.
    sections : tuple
        The phase (layer) each instruction serves; ``"trace"`` for trace STOREs.
    trace : tuple of TraceEntry
        One per traced instruction (trace mode), else empty.
    macs : int
        Multiply-accumulates the GEMMs do on real data (a sparse layer's: on its
        kept rows; a fully pruned one's: on its one filler entry per group).
    dense_macs : int
        The same with every weight matrix dense: ``macs / dense_macs`` is the
        work that weight sparsity leaves.
    dense_fallback : tuple of str
        The layers with sparse weights that run dense (correct, no speedup):
        the array size does not divide the columns of their pattern's groups, or
        they keep so many entries that the dense GEMM is as fast (on a
        ``k_per_cycle`` array, a density of ``1 / k_per_cycle`` or more).
    input : InputSlot
        The per-run input; :meth:`with_input` replaces it.
    output : ExternalMatrix
        What the final STORE writes: the last block's tokens, or for a whole
        model one tile of logits whose row 0 is the class token's.
    logits : bool
        Whether the program is a whole model (its result is the class token's
        logits) rather than a stack of blocks (its result the final tokens).
    overlap : bool
        Whether each head's softmax runs beside the GEMMs of its neighbours (the plan
        has two ACT banks; :meth:`~.lowering.Lowering.attention`).
    sequential_reason : str or None
        Why the heads run one after another instead, ``None`` when they overlap.
    layernorms_beside : tuple of int
        The blocks whose FC2 runs the LayerNorm after it (the next block's LN1, the last
        block's the final norm) beside its last token tiles
        (:meth:`~.lowering.Lowering.fc2_beside_norm`).
    """

    config: object
    plan: object
    image: bytes
    program_addr: int
    instructions: tuple
    sections: tuple
    trace: tuple
    macs: int
    dense_macs: int
    dense_fallback: tuple
    input: InputSlot
    output: ExternalMatrix
    logits: bool
    overlap: bool
    sequential_reason: str
    layernorms_beside: tuple = ()

    def with_input(self, values):
        """The same program on another input: the image with ``values`` patched in.

        Byte for byte what compiling for ``values`` gives; the weights are not
        packed again.
        """
        first, end = self.input.matrix.byte_range(self.config)
        raw = activation_bytes(self.input.rows(values), self.config)
        return replace(self, image=self.image[:first] + raw + self.image[end:])

    def result(self, dram):
        """What the program computes: the final tokens, or a model's logits."""
        output = self.read_output(dram)
        return output[0].copy() if self.logits else output

    def read_output(self, dram):
        """The matrix the final STORE wrote, from an external-memory image."""
        return self.output.read(dram, self.config)

    def section_cycles(self, retired_at, total):
        """Cycles per section (layer) from the retirement cycle of each instruction.

        An instruction that retired together with the one before it (a weight
        load run beside a GEMM) costs nothing of its own; fetching the final
        DONE counts to the last section, so the sections add up to ``total``.
        """
        totals, previous = {}, 0
        for section, retired in zip(self.sections, retired_at):
            cost = retired - previous if retired else 0
            previous = retired or previous
            totals[section] = totals.get(section, 0) + cost
        if self.sections:
            totals[self.sections[-1]] += total - previous
        return totals
