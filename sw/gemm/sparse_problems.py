"""Random HP-sparse GEMM problems for tests and benchmarks (``docs/sparsity.md``)."""

from dataclasses import replace

import numpy as np

from .layout import tiles
from .problems import random_problem
from .sparse import DEFAULT_BLOCK_ROWS, HPPattern, HPSparseWeight

__all__ = ["random_pattern", "random_sparse_problem"]


def _kept_offsets(rng, size, kept_rows):
    """``kept_rows`` ascending random offsets in a block of ``size`` rows (all of them, then
    repeats of the last, when it is shorter)."""
    kept = np.sort(rng.choice(size, min(size, kept_rows), replace=False))
    return np.concatenate([kept, np.full(kept_rows - len(kept), size - 1)])


def random_pattern(rng, rows, columns, *, cols, kept_blocks, kept_rows,
                   block_rows=DEFAULT_BLOCK_ROWS):
    """A random balanced :class:`HPPattern` of a ``rows x columns`` matrix: each group of
    ``cols`` columns keeps ``kept_blocks`` random blocks of ``block_rows`` rows (0: the
    whole group pruned) and ``kept_rows`` random rows of each (all of a shorter last block,
    then fillers).

    Raises
    ------
    ValueError
        From :class:`HPPattern`, or if ``kept_blocks`` is not in ``[0, blocks of rows]``.
    """
    count = tiles(rows, block_rows)
    if not 0 <= kept_blocks <= count:
        raise ValueError(f"kept_blocks must lie in [0, {count}] ({rows} rows in blocks of "
                         f"{block_rows}), not {kept_blocks}")
    groups = tiles(columns, cols)
    blocks = np.sort([rng.choice(count, kept_blocks, replace=False) for _ in range(groups)],
                     axis=1).astype(np.int64).reshape(groups, kept_blocks)
    sizes = np.minimum(block_rows, rows - blocks * block_rows)
    offsets = np.array([[_kept_offsets(rng, size, kept_rows) for size in row] for row in sizes],
                       np.int64).reshape(groups, kept_blocks, kept_rows)
    return HPPattern(rows=rows, columns=columns, cols=cols, block_rows=block_rows,
                     kept_rows=kept_rows, blocks=blocks, offsets=offsets)


def random_sparse_problem(rng, m, pattern):
    """``(problem, weight)``: a :func:`random_problem` whose B keeps only ``pattern``'s
    weights, and that B as an :class:`HPSparseWeight`."""
    problem = random_problem(rng, m, pattern.rows, pattern.columns)
    b = np.where(pattern.mask(), problem.b, 0).astype(np.int8)
    return replace(problem, b=b), HPSparseWeight.encode(b, pattern)
