"""Bit-exact twin of :mod:`vitforge.hw.gemm.requantize` (``docs/numerics.md``)."""

import numpy as np

from vitforge.hw.numerics import BIAS_BITS, MULTIPLIER_BITS, OPERAND_MAX, OPERAND_MIN, SHIFT_BITS

__all__ = ["requantize", "check_requant_params"]


def check_requant_params(bias, multiplier, shift):
    """Raise :exc:`ValueError` unless the parameters fit their hardware fields."""
    for name, values, low, high in (
        ("bias", bias, -(1 << (BIAS_BITS - 1)), (1 << (BIAS_BITS - 1)) - 1),
        ("multiplier", multiplier, 0, (1 << MULTIPLIER_BITS) - 1),
        ("shift", shift, 0, (1 << SHIFT_BITS) - 1),
    ):
        values = np.asarray(values)
        if values.dtype.kind not in "iu":
            raise TypeError(f"{name} must be an integer array, not {values.dtype}")
        if values.size and (values.min() < low or values.max() > high):
            bad = values.min() if values.min() < low else values.max()
            raise ValueError(f"{name} must lie in [{low}, {high}], not {int(bad)}")


def requantize(acc, bias, multiplier, shift):
    """Requantize int32 sums to int8, per output channel.

    ``y = clip(((acc + bias) * multiplier + ((1 << shift) >> 1)) >> shift, -128, 127)``
    with an arithmetic right shift (round half up) and exact int64 arithmetic:
    ``|acc + bias| < 2**33`` and ``multiplier < 2**16`` keep every value below
    ``2**50``.

    Parameters
    ----------
    acc : array_like of int
        Sums, any shape whose last axis (or a broadcast of it) is the channel.
    bias, multiplier, shift : array_like of int
        Per-channel parameters, broadcast against ``acc``.

    Returns
    -------
    numpy.ndarray of int8
    """
    total = np.asarray(acc, dtype=np.int64) + np.asarray(bias, dtype=np.int64)
    product = total * np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    # (p + 2**(s-1)) >> s == ((p >> (s-1)) + 1) >> 1 for s > 0, and stays in
    # int64 for every shift up to 63.
    halved = (np.right_shift(product, np.maximum(shift - 1, 0)) + 1) >> 1
    rounded = np.where(shift == 0, product, halved)
    return np.clip(rounded, OPERAND_MIN, OPERAND_MAX).astype(np.int8)
