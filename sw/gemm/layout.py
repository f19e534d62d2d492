"""Matrices <-> buffer words (the layouts of ``docs/architecture.md``).

Activation layout (A operands and C results), ``lanes`` = PE rows ``R``::

    word[tile * stride + col][lane] = X[tile * R + lane, col]

Weight layout (B operands), ``lanes`` = PE columns ``C``::

    word[tile * stride + row][lane] = W[row, tile * C + lane]

Rows of ``X`` (columns of ``W``) beyond the matrix are zero in the words.
"""

import numpy as np

__all__ = ["pack_activations", "unpack_activations", "pack_weights", "tiles", "aligned"]


def tiles(length, lanes):
    """Number of ``lanes``-wide tiles covering ``length``."""
    return -(-length // lanes)


def aligned(length, group):
    """``length`` rounded up to a multiple of ``group``."""
    return tiles(length, group) * group


def _check_int8_matrix(name, matrix):
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, not an array of shape {matrix.shape}")
    if matrix.dtype != np.int8:
        raise TypeError(f"{name} must have dtype int8, not {matrix.dtype}")
    if 0 in matrix.shape:
        raise ValueError(f"{name} must not be empty, not of shape {matrix.shape}")
    return matrix


def pack_activations(matrix, lanes):
    """Words of ``matrix`` (``M x K`` int8) in activation layout with stride ``K``.

    Returns an array of shape ``(tiles(M, lanes) * K, lanes)``.
    """
    matrix = _check_int8_matrix("activation matrix", matrix)
    rows, cols = matrix.shape
    padded = np.zeros((tiles(rows, lanes) * lanes, cols), dtype=np.int8)
    padded[:rows] = matrix
    # (tile, lane, col) -> (tile, col, lane)
    return padded.reshape(-1, lanes, cols).transpose(0, 2, 1).reshape(-1, lanes).copy()


def unpack_activations(words, rows, cols, lanes):
    """Inverse of :func:`pack_activations`: the ``rows x cols`` matrix in ``words``."""
    words = np.asarray(words)
    tile_count = tiles(rows, lanes)
    if words.shape != (tile_count * cols, lanes):
        raise ValueError(f"activation words must have shape {(tile_count * cols, lanes)} "
                         f"for a {rows}x{cols} matrix, not {words.shape}")
    return words.reshape(tile_count, cols, lanes).transpose(0, 2, 1).reshape(-1, cols)[:rows]


def pack_weights(matrix, lanes):
    """Words of ``matrix`` (``K x N`` int8) in weight layout with stride ``K``.

    Returns an array of shape ``(tiles(N, lanes) * K, lanes)``.
    """
    matrix = _check_int8_matrix("weight matrix", matrix)
    rows, cols = matrix.shape
    padded = np.zeros((rows, tiles(cols, lanes) * lanes), dtype=np.int8)
    padded[:, :cols] = matrix
    # (row, tile, lane) -> (tile, row, lane)
    return padded.reshape(rows, -1, lanes).transpose(1, 0, 2).reshape(-1, lanes).copy()
