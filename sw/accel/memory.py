"""External-memory images: how each scratchpad's entries sit in 16-byte words."""

import numpy as np

from vitforge.hw.accel.config import DRAM_WORD_BYTES
from vitforge.hw.accel.isa import Space
from vitforge.hw.numerics import SHIFT_BITS
from vitforge.sw.gemm.sparse import record_bytes

__all__ = ["load_words", "pack_entries", "unpack_entries", "sparse_tile_words",
           "pack_sparse", "unpack_sparse_tile"]


def load_words(space, count, config):
    """External words a LOAD of ``count`` entries into ``space`` reads (``count`` words of 16
    entries for TBL, of 8 for SIG)."""
    if space == Space.WGT:
        return config.weight_words(count)
    if space == Space.ACT:
        return count * config.act_entry_words
    return count


def pack_entries(space, entries, config):
    """The bytes of ``entries`` in external-memory layout.

    ACT: int8 array ``(count, array)``, each row padded to whole words.
    WGT: the same array; rows wider than a word lie back to back, the last word
    zero-padded (:meth:`~vitforge.hw.accel.config.AcceleratorConfig.weight_words`),
    narrower ones a word each.
    PRM: ``(bias, multiplier, shift)`` arrays: int32 LE, uint16 LE, uint8 (its
    low 6 bits are the shift; the hardware ignores the other two).
    LNP: ``(gamma, beta)`` arrays: int16 LE, int32 LE.
    TBL: 256 int8 (16 per word).
    SIG: unsigned 16-bit LE entries (8 per word).
    """
    space = Space(space)
    if space == Space.WGT and config.array > DRAM_WORD_BYTES:
        words = np.asarray(entries, dtype=np.int8)
        packed = np.zeros(config.weight_words(len(words)) * DRAM_WORD_BYTES, np.int8)
        packed[:words.size] = words.ravel()
        return packed.tobytes()
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
    if space == Space.WGT and config.array > DRAM_WORD_BYTES:
        count = len(data) // config.array       # the padding is less than an entry
        return data[:count * config.array].view(np.int8).reshape(count, config.array).copy()
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


def sparse_tile_words(blocks, kept_rows, config):
    """External words of one column tile of a ``LOAD_SPARSE``: its index record, then its
    ``blocks * kept_rows`` value entries (WGT layout)."""
    record = record_bytes(blocks, kept_rows) // DRAM_WORD_BYTES
    return record + config.weight_words(blocks * kept_rows)


def pack_sparse(weight, config):
    """The bytes a ``LOAD_SPARSE`` reads for ``weight`` (an HPSparseWeight on groups of
    ``config.array`` columns): per column tile its index record, then its values."""
    if weight.pattern.cols != config.array:
        raise ValueError(f"weight must be pruned on groups of array={config.array} columns, "
                         f"not {weight.pattern.cols}")
    records = weight.index_bytes()
    return b"".join(record.tobytes() + pack_entries(Space.WGT, values, config)
                    for record, values in zip(records, weight.values))


def unpack_sparse_tile(raw, blocks, kept_rows, block_shift, config):
    """One column tile of :func:`pack_sparse` (``raw``: its :func:`sparse_tile_words`).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The A-row number of each entry, ``(block << block_shift) + offset``
        (int64, ``blocks * kept_rows``), and the entries (int8 WGT words). Bytes
        of the record after its ``blocks * (1 + kept_rows)`` used ones are not read.
    """
    data = np.frombuffer(raw, np.uint8)
    record = record_bytes(blocks, kept_rows)
    body = data[:blocks * (1 + kept_rows)].astype(np.int64).reshape(blocks, 1 + kept_rows)
    rows = (body[:, :1] << block_shift) + body[:, 1:]
    return rows.ravel(), unpack_entries(Space.WGT, data[record:].tobytes(), config)
