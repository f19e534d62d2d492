"""Bit-exact twin of :mod:`vitforge.hw.nonlinear.layernorm`."""

import math

import numpy as np

from ..gemm.requantize import requantize

__all__ = ["layernorm", "SQRT_GUARD_BITS", "RECIPROCAL_BITS", "NORMALIZE_SHIFT"]

#: ``s = isqrt(D << 16)`` is ``sqrt(D)`` with 8 fraction bits.
SQRT_GUARD_BITS = 16
#: ``r = floor(2**40 / s)``.
RECIPROCAL_BITS = 40
#: ``z = (n * r) >> 22`` has 10 fraction bits: 40 - 8 - 10 = 22.
NORMALIZE_SHIFT = 22


def layernorm(x, params):
    """LayerNorm of one row of int8 ``x`` (length C) to int8::

        s1 = sum(x);  s2 = sum(x * x)
        D  = C * s2 - s1 * s1 + eps           (= C**2 * (variance + eps'))
        s  = isqrt(D << 16)                   (sqrt(D) in Q.8)
        r  = floor(2**40 / s), or 0 if s == 0
        z  = ((C * x - s1) * r) >> 22         ((x - mean) / std in Q.10)
        y  = requantize(z * gamma, beta, multiplier, shift)
    """
    x = np.asarray(x)
    if x.dtype != np.int8 or x.ndim != 1 or x.size != params.gamma.size:
        raise ValueError(f"LayerNorm row must be 1-D int8 of length {params.gamma.size}, not "
                         f"{x.dtype} of shape {x.shape}")
    channels = x.size
    x = x.astype(np.int64)
    s1 = int(x.sum())
    s2 = int((x * x).sum())
    d = channels * s2 - s1 * s1 + params.eps
    s = math.isqrt(d << SQRT_GUARD_BITS)
    r = (1 << RECIPROCAL_BITS) // s if s else 0
    z = ((channels * x - s1) * r) >> NORMALIZE_SHIFT
    return requantize(z * params.gamma, params.beta, params.multiplier, params.shift)
