"""Hierarchical-pruning (HP) sparse weights: the balanced block-row format (``docs/sparsity.md``).

A weight matrix ``W`` (``K x N`` int8) is cut into column *groups* of
``cols`` output channels (one N-tile of the GEMM array) and each group's
rows into *blocks* of ``block_rows`` rows (the last block may be shorter).
Pruning is balanced at both levels: every group keeps the same number of
blocks ``b``, and every kept block keeps the same number of rows ``r``, so
every group keeps ``L = b * r`` rows. The GEMM of a group then takes ``L``
cycles per row tile instead of ``K``, and all of the array's columns
stream their kept rows in step (the A operand stays broadcast).

A kept block shorter than ``r`` rows (the last, when ``K`` is not a
multiple of ``block_rows``) keeps all its ``s`` rows and ``r - s``
*fillers*: entries that repeat its last row with zero weights.

Stored form, per group (:meth:`HPSparseWeight.index_bytes`):

- values: ``L`` words of ``cols`` int8, the kept rows in ascending order;
- an index record: for each kept block its number (one byte), then its
  ``r`` row offsets inside the block (one byte each), zero-padded to whole
  16-byte words.

The DMA expands the record into absolute row numbers as it loads
(``LOAD_SPARSE``, ``docs/isa.md``).
"""

from dataclasses import dataclass

import numpy as np

from vitforge.hw.accel.config import DRAM_WORD_BYTES

from .layout import tiles

__all__ = ["HPPattern", "HPSparseWeight", "DEFAULT_BLOCK_ROWS", "MAX_BLOCKS",
           "PATTERN_SIZES", "check_block_rows", "record_bytes"]

#: Rows per block unless asked otherwise: an offset fits a byte with room to
#: spare, a block number is paid for once per ``r`` rows, and K = 192 or 768
#: (DeiT) has 6 or 24 blocks to choose from.
DEFAULT_BLOCK_ROWS = 32
#: Block numbers are one byte.
MAX_BLOCKS = 256
#: The sizes of an :class:`HPPattern` (its other fields are the ``blocks`` and ``offsets``
#: arrays): what a file stores beside those arrays.
PATTERN_SIZES = ("rows", "columns", "cols", "block_rows", "kept_rows")
#: Offsets are one byte, and the DMA turns a block number into a row by a shift.
_BLOCK_ROW_CHOICES = tuple(1 << shift for shift in range(1, 9))


def check_block_rows(block_rows):
    """Raise :exc:`ValueError` unless ``block_rows`` is a power of two from 2 to 256."""
    if not isinstance(block_rows, int) or isinstance(block_rows, bool) \
            or block_rows not in _BLOCK_ROW_CHOICES:
        raise ValueError(f"block_rows must be a power of two from 2 to 256, not {block_rows!r}")


def record_bytes(blocks, kept_rows):
    """Bytes of one group's index record: ``blocks * (1 + kept_rows)``, padded to whole words."""
    return tiles(blocks * (1 + kept_rows), DRAM_WORD_BYTES) * DRAM_WORD_BYTES


def _int(name, value, low, high=None):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, not {value}")
    return int(value)


@dataclass(frozen=True, eq=False)
class HPPattern:
    """Which rows each column group of a pruned ``rows x columns`` weight matrix keeps.

    Parameters
    ----------
    rows, columns : int
        ``K`` and ``N`` of the weight matrix.
    cols : int
        Output channels per group (the GEMM array's columns it was pruned for).
    block_rows : int
        Rows per block (a power of two, 2..256).
    kept_rows : int
        ``r``: rows (fillers included) every kept block keeps.
    blocks : ndarray, int, ``(groups, b)``
        Each group's kept block numbers, ascending.
    offsets : ndarray, int, ``(groups, b, r)``
        Row offsets inside each kept block: ascending; a block shorter than
        ``r`` lists all its rows, then repeats its last (fillers).

    Raises
    ------
    ValueError
        Naming the group, the block and the broken rule.
    """

    rows: int
    columns: int
    cols: int
    block_rows: int
    kept_rows: int
    blocks: np.ndarray
    offsets: np.ndarray

    def __post_init__(self):
        _int("rows", self.rows, 1)
        _int("columns", self.columns, 1)
        _int("cols", self.cols, 1)
        check_block_rows(self.block_rows)
        if self.block_count > MAX_BLOCKS:
            raise ValueError(f"rows must be at most {MAX_BLOCKS} blocks of block_rows="
                             f"{self.block_rows} ({MAX_BLOCKS * self.block_rows}), not "
                             f"{self.rows}")
        _int("kept_rows", self.kept_rows, 1, self.block_rows)
        blocks = np.asarray(self.blocks)
        offsets = np.asarray(self.offsets)
        groups = self.groups
        if blocks.ndim != 2 or blocks.shape[0] != groups or not np.issubdtype(blocks.dtype,
                                                                              np.integer):
            raise ValueError(f"blocks must be an integer array of shape ({groups}, b), not "
                             f"{blocks.dtype} of shape {blocks.shape}")
        if offsets.shape != (*blocks.shape, self.kept_rows) or not np.issubdtype(
                offsets.dtype, np.integer):
            raise ValueError(f"offsets must be an integer array of shape "
                             f"{(*blocks.shape, self.kept_rows)} (a balanced pattern keeps "
                             f"kept_rows={self.kept_rows} in every block), not {offsets.dtype} "
                             f"of shape {offsets.shape}")
        if blocks.shape[1] > self.block_count:
            raise ValueError(f"a group keeps at most {self.block_count} blocks, not "
                             f"{blocks.shape[1]}")
        for group in range(groups):
            self._check_group(group, blocks[group], offsets[group])
        object.__setattr__(self, "blocks", blocks.astype(np.int64))
        object.__setattr__(self, "offsets", offsets.astype(np.int64))

    def _check_group(self, group, blocks, offsets):
        if np.any(blocks < 0) or np.any(blocks >= self.block_count):
            raise ValueError(f"group {group}: block numbers must lie in [0, "
                             f"{self.block_count - 1}], not {blocks.tolist()}")
        if np.any(np.diff(blocks) <= 0):
            raise ValueError(f"group {group}: block numbers must be strictly ascending, not "
                             f"{blocks.tolist()}")
        for block, row_offsets in zip(blocks.tolist(), offsets):
            size = self.block_size(block)
            kept = min(size, self.kept_rows)
            real, fillers = row_offsets[:kept], row_offsets[kept:]
            if np.any(row_offsets < 0) or np.any(row_offsets >= size):
                raise ValueError(f"group {group}, block {block}: row offsets must lie in "
                                 f"[0, {size - 1}], not {row_offsets.tolist()}")
            if np.any(np.diff(real) <= 0) or np.any(fillers != size - 1):
                raise ValueError(f"group {group}, block {block}: row offsets must be strictly "
                                 f"ascending (a block of fewer than kept_rows={self.kept_rows} "
                                 f"rows lists them all, then repeats its last), not "
                                 f"{row_offsets.tolist()}")

    @property
    def groups(self):
        return tiles(self.columns, self.cols)

    @property
    def block_count(self):
        """Blocks of ``block_rows`` rows in ``rows`` (the last may be shorter)."""
        return tiles(self.rows, self.block_rows)

    def block_size(self, block):
        return min(self.block_rows, self.rows - block * self.block_rows)

    @property
    def kept_blocks(self):
        """``b``: blocks every group keeps."""
        return self.blocks.shape[1]

    @property
    def length(self):
        """``L = b * r``: entries (GEMM cycles per row tile) of every group."""
        return self.kept_blocks * self.kept_rows

    def row_index(self):
        """Absolute row of every entry, ``(groups, L)``: the A word each step reads."""
        starts = self.blocks * self.block_rows
        return (starts[:, :, None] + self.offsets).reshape(self.groups, -1)

    def fillers(self):
        """Which entries are fillers, ``(groups, L)`` bool."""
        index = self.row_index()
        repeat = np.zeros(index.shape, bool)
        repeat[:, 1:] = index[:, 1:] == index[:, :-1]
        return repeat

    def mask(self):
        """The kept weights, ``(rows, columns)`` bool."""
        kept = np.zeros((self.rows, self.groups * self.cols), bool)
        for group, rows in enumerate(self.row_index()):
            kept[rows, group * self.cols:(group + 1) * self.cols] = True
        return kept[:, :self.columns]

    @property
    def sparsity(self):
        """Fraction of the weights pruned."""
        return 1 - self.mask().mean()

    def for_cols(self, cols):
        """The same pattern on groups of ``cols`` columns (``cols`` must divide :attr:`cols`):
        each narrower group keeps its wider group's rows."""
        _int("cols", cols, 1)
        if self.cols % cols:
            raise ValueError(f"cols must divide the pattern's cols={self.cols}, not {cols}")
        split = self.cols // cols
        groups = tiles(self.columns, cols)
        owner = np.arange(groups) // split
        return HPPattern(rows=self.rows, columns=self.columns, cols=cols,
                         block_rows=self.block_rows, kept_rows=self.kept_rows,
                         blocks=self.blocks[owner], offsets=self.offsets[owner])

    def storage_bytes(self):
        """Bytes of the stored form: each group's values (``L`` words of ``cols`` int8) and
        index record (:func:`record_bytes`)."""
        return self.groups * (self.length * self.cols
                              + record_bytes(self.kept_blocks, self.kept_rows))

    def dense_bytes(self):
        """Bytes of the matrix dense, in the same ``cols``-wide weight words."""
        return self.rows * self.groups * self.cols

    def to_arrays(self):
        """The pattern as plain values (:data:`PATTERN_SIZES`) and arrays (``blocks``,
        ``offsets``)."""
        return {**{name: getattr(self, name) for name in PATTERN_SIZES},
                "blocks": self.blocks, "offsets": self.offsets}


@dataclass(frozen=True, eq=False)
class HPSparseWeight:
    """An HP-pruned int8 weight matrix in its stored form.

    Parameters
    ----------
    pattern : HPPattern
    values : ndarray, int8, ``(groups, L, cols)``
        Group ``g``'s kept rows over its columns (zero beyond ``columns``
        and at fillers).
    """

    pattern: HPPattern
    values: np.ndarray

    def __post_init__(self):
        p = self.pattern
        shape = (p.groups, p.length, p.cols)
        if not isinstance(self.values, np.ndarray) or self.values.dtype != np.int8 \
                or self.values.shape != shape:
            raise ValueError(f"values must be an int8 array of shape {shape}, not "
                             f"{getattr(self.values, 'dtype', type(self.values).__name__)} of "
                             f"shape {np.shape(self.values)}")
        if np.any(self.values[p.fillers()]):
            raise ValueError("values must be zero at filler entries")
        padding = p.groups * p.cols - p.columns
        if padding and np.any(self.values[-1, :, p.cols - padding:]):
            raise ValueError(f"values must be zero in the {padding} columns beyond "
                             f"columns={p.columns}")

    @classmethod
    def encode(cls, weight, pattern):
        """Compress ``weight`` (int8 ``rows x columns``, zero outside ``pattern``)."""
        weight = np.asarray(weight)
        p = pattern
        if weight.dtype != np.int8 or weight.shape != (p.rows, p.columns):
            raise ValueError(f"weight must be an int8 matrix of shape {(p.rows, p.columns)}, "
                             f"not {weight.dtype} of shape {weight.shape}")
        outside = weight[~p.mask()]
        if np.any(outside):
            raise ValueError(f"weight has {np.count_nonzero(outside)} nonzero values outside "
                             f"the pattern's kept rows")
        padded = np.zeros((p.rows, p.groups * p.cols), np.int8)
        padded[:, :p.columns] = weight
        groups = padded.reshape(p.rows, p.groups, p.cols).transpose(1, 0, 2)
        values = np.take_along_axis(groups, p.row_index()[:, :, None], axis=1)
        values[p.fillers()] = 0
        return cls(pattern=p, values=values)

    def dense(self):
        """The ``rows x columns`` int8 matrix, zeros where pruned."""
        p = self.pattern
        weight = np.zeros((p.rows, p.groups * p.cols), np.int8)
        for group, rows in enumerate(p.row_index()):
            real = ~p.fillers()[group]
            weight[rows[real], group * p.cols:(group + 1) * p.cols] = self.values[group][real]
        return weight[:, :p.columns]

    def for_cols(self, cols):
        """The same weights on groups of ``cols`` columns (see :meth:`HPPattern.for_cols`)."""
        return HPSparseWeight.encode(self.dense(), self.pattern.for_cols(cols))

    def columns(self, start, end):
        """Columns ``start..end`` of the matrix, whole groups (``start`` a multiple of
        ``cols``, ``end`` too unless it is the last column)."""
        p = self.pattern
        first, last = start // p.cols, tiles(end, p.cols)
        pattern = HPPattern(rows=p.rows, columns=end - start, cols=p.cols,
                            block_rows=p.block_rows, kept_rows=p.kept_rows,
                            blocks=p.blocks[first:last], offsets=p.offsets[first:last])
        return HPSparseWeight(pattern, self.values[first:last])

    def nonempty(self):
        """These weights, or for a fully pruned matrix (``L = 0``) one zero entry per group
        (row 0 of block 0): what a GEMM of at least one step runs (its result is then the
        bias path)."""
        p = self.pattern
        if p.length:
            return self
        filler = HPPattern(rows=p.rows, columns=p.columns, cols=p.cols, block_rows=p.block_rows,
                           kept_rows=1, blocks=np.zeros((p.groups, 1), np.int64),
                           offsets=np.zeros((p.groups, 1, 1), np.int64))
        return HPSparseWeight(filler, np.zeros((p.groups, 1, p.cols), np.int8))

    def index_bytes(self):
        """Each group's index record, ``(groups, record_bytes)`` uint8."""
        p = self.pattern
        body = np.concatenate([p.blocks[:, :, None], p.offsets], axis=2).reshape(p.groups, -1)
        record = np.zeros((p.groups, record_bytes(p.kept_blocks, p.kept_rows)), np.uint8)
        record[:, :body.shape[1]] = body
        return record

    @classmethod
    def from_stored(cls, values, index, *, rows, columns, block_rows, kept_rows):
        """Inverse of (``values``, :meth:`index_bytes`): parse and check the records.

        Raises
        ------
        ValueError
            On records that do not parse into a balanced pattern (naming the
            group and block, or the rule), and on values of the wrong shape.
        """
        values, index = np.asarray(values), np.asarray(index)
        if values.ndim != 3 or index.ndim != 2 or index.shape[0] != values.shape[0]:
            raise ValueError(f"values (groups, L, cols) and index (groups, bytes) must agree "
                             f"on groups, not shapes {values.shape} and {index.shape}")
        groups, length, cols = values.shape
        kept_rows = _int("kept_rows", kept_rows, 1)
        if length % kept_rows:
            raise ValueError(f"entries per group must be a multiple of kept_rows={kept_rows} "
                             f"(balanced blocks), not {length}")
        blocks = length // kept_rows
        size = record_bytes(blocks, kept_rows)
        if index.shape[1] != size:
            raise ValueError(f"index records must be {size} bytes for {blocks} blocks of "
                             f"{kept_rows} rows, not {index.shape[1]}")
        used = blocks * (1 + kept_rows)
        if np.any(index[:, used:]):
            raise ValueError(f"index records must be zero after their first {used} bytes")
        body = index[:, :used].astype(np.int64).reshape(groups, blocks, 1 + kept_rows)
        pattern = HPPattern(rows=rows, columns=columns, cols=cols, block_rows=block_rows,
                            kept_rows=kept_rows, blocks=body[:, :, 0], offsets=body[:, :, 1:])
        return cls(pattern=pattern, values=values)

    def storage_bytes(self):
        """Bytes of the stored form (values and index records)."""
        return self.pattern.storage_bytes()

    def dense_bytes(self):
        """Bytes of the same matrix dense, in the same ``cols``-wide weight words."""
        return self.pattern.dense_bytes()
