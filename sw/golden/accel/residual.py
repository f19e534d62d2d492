"""Residual add of two int8 operands with their own scales (``docs/isa.md``, ADD)."""

import numpy as np

__all__ = ["residual_add"]


def residual_add(x, y, x_multiplier, y_multiplier, shift):
    """``clip((x * mx + y * my + ((1 << shift) >> 1)) >> shift, -128, 127)``, exact.

    ``mx``, ``my`` are unsigned 16-bit, ``shift`` 0..63: with int8 operands the
    sum stays below ``2**24``.
    """
    total = (np.asarray(x, np.int64) * x_multiplier + np.asarray(y, np.int64) * y_multiplier
             + ((1 << shift) >> 1))
    return np.clip(total >> shift, -128, 127).astype(np.int8)
