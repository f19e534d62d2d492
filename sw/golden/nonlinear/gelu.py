"""Bit-exact twin of :mod:`vitforge.hw.nonlinear.gelu`."""

import numpy as np

__all__ = ["gelu"]


def gelu(q, table):
    """``table[bits(q)]`` for int8 ``q`` (any shape); the unit's output."""
    q = np.asarray(q)
    if q.dtype != np.int8:
        raise TypeError(f"GELU input must have dtype int8, not {q.dtype}")
    table = np.asarray(table)
    if table.shape != (256,) or table.dtype != np.int8:
        raise ValueError(f"GELU table must be 256 int8 entries, not {table.dtype} of shape "
                         f"{table.shape}")
    return table[q.view(np.uint8)]
