"""External-memory images: how each scratchpad's entries sit in 16-byte words."""

import numpy as np

from vitforge.hw.accel.config import DRAM_WORD_BYTES
from vitforge.hw.accel.isa import Space
from vitforge.hw.numerics import SHIFT_BITS

__all__ = ["entry_words", "pack_entries", "unpack_entries"]


def entry_words(space, config):
    """External words per scratchpad entry (per 16 entries for TBL, per 8 for SIG)."""
    if space in (Space.ACT, Space.WGT):
        return config.act_entry_words
    return 1


def pack_entries(space, entries, config):
    """The bytes of ``entries`` in external-memory layout.

    ACT/WGT: int8 array ``(count, array)``, each row padded to whole words.
    PRM: ``(bias, multiplier, shift)`` arrays: int32 LE, uint16 LE, uint8 (its
    low 6 bits are the shift; the hardware ignores the other two).
    LNP: ``(gamma, beta)`` arrays: int16 LE, int32 LE.
    TBL: 256 int8 (16 per word).
    SIG: unsigned 16-bit LE entries (8 per word).
    """
    space = Space(space)
    if space in (Space.ACT, Space.WGT):
        words = np.asarray(entries, dtype=np.int8)
        padded = np.zeros((len(words), config.act_entry_words * DRAM_WORD_BYTES), np.int8)
        padded[:, :config.array] = words
        return padded.tobytes()
    if space == Space.TBL:
        return np.asarray(entries, dtype=np.int8).tobytes()
    if space == Space.SIG:
        return np.asarray(entries, dtype=np.int64).astype("<u2").tobytes()
    rows = np.zeros((len(entries[0]), DRAM_WORD_BYTES), np.uint8)
    if space == Space.PRM:
        bias, multiplier, shift = (np.asarray(a, np.int64) for a in entries)
        rows[:, 0:4] = bias.astype("<i4").view(np.uint8).reshape(-1, 4)
        rows[:, 4:6] = multiplier.astype("<u2").view(np.uint8).reshape(-1, 2)
        rows[:, 6] = shift.astype(np.uint8)
    else:
        gamma, beta = (np.asarray(a, np.int64) for a in entries)
        rows[:, 0:2] = gamma.astype("<i2").view(np.uint8).reshape(-1, 2)
        rows[:, 2:6] = beta.astype("<i4").view(np.uint8).reshape(-1, 4)
    return rows.tobytes()


def unpack_entries(space, raw, config):
    """Inverse of :func:`pack_entries` for ``raw`` bytes."""
    space = Space(space)
    data = np.frombuffer(raw, dtype=np.uint8)
    if space in (Space.ACT, Space.WGT):
        rows = data.reshape(-1, config.act_entry_words * DRAM_WORD_BYTES)
        return rows[:, :config.array].view(np.int8).copy()
    if space == Space.TBL:
        return data.view(np.int8).copy()
    if space == Space.SIG:
        return data.copy().view("<u2").astype(np.int64)
    rows = data.reshape(-1, DRAM_WORD_BYTES)
    if space == Space.PRM:
        return (rows[:, 0:4].copy().view("<i4").ravel().astype(np.int64),
                rows[:, 4:6].copy().view("<u2").ravel().astype(np.int64),
                rows[:, 6].astype(np.int64) & ((1 << SHIFT_BITS) - 1))
    return (rows[:, 0:2].copy().view("<i2").ravel().astype(np.int64),
            rows[:, 2:6].copy().view("<i4").ravel().astype(np.int64))
