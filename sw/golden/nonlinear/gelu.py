"""Bit-exact twin of :mod:`vitforge.hw.nonlinear.gelu`."""

import numpy as np

from vitforge.hw.numerics import GELU_TABLE_DEPTH

__all__ = ["gelu"]


def gelu(q, table):
    """``table[bits(q)]`` for int8 ``q`` (any shape); the unit's output."""
    q = np.asarray(q)
    if q.dtype != np.int8:
        raise TypeError(f"GELU input must have dtype int8, not {q.dtype}")
    table = np.asarray(table)
    if table.shape != (GELU_TABLE_DEPTH,) or table.dtype != np.int8:
        raise ValueError(f"GELU table must be {GELU_TABLE_DEPTH} int8 entries, not "
                         f"{table.dtype} of shape {table.shape}")
    return table[q.view(np.uint8)]
