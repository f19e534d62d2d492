"""Bit-exact twin of :mod:`vitforge.hw.nonlinear.layernorm`."""

import numpy as np

from vitforge.hw.numerics import LAYERNORM_RECIPROCAL_BITS, NORMALIZE_SHIFT, SQRT_GUARD_BITS

from ..gemm.requantize import requantize

__all__ = ["layernorm", "layernorm_rows", "isqrt"]


def isqrt(values):
    """``floor(sqrt(v))`` of each non-negative int64 ``v < 2**62``, exactly."""
    values = np.asarray(values, dtype=np.int64)
    roots = np.floor(np.sqrt(values.astype(np.float64))).astype(np.int64)
    # float64 can be off by one either way near large squares: correct it.
    roots -= (roots * roots > values)
    roots += ((roots + 1) * (roots + 1) <= values)
    return roots


def layernorm_rows(x, params):
    """LayerNorm of each row of the 2-D int8 array ``x`` (rows of C channels) to int8::

        s1 = sum(x);  s2 = sum(x * x)
        D  = C * s2 - s1 * s1 + eps           (= C**2 * (variance + eps'))
        s  = isqrt(D << 16)                   (sqrt(D) in Q.8)
        r  = floor(2**40 / s), or 0 if s == 0
        z  = ((C * x - s1) * r) >> 22         ((x - mean) / std in Q.10)
        y  = requantize(z * gamma, beta, multiplier, shift)
    """
    x = np.asarray(x)
    if x.dtype != np.int8 or x.ndim != 2 or x.shape[1] != params.gamma.size:
        raise ValueError(f"LayerNorm rows must be 2-D int8 with {params.gamma.size} channels, "
                         f"not {x.dtype} of shape {x.shape}")
    channels = x.shape[1]
    x = x.astype(np.int64)
    s1 = x.sum(axis=1, keepdims=True)
    s2 = (x * x).sum(axis=1, keepdims=True)
    d = channels * s2 - s1 * s1 + params.eps
    s = isqrt(d << SQRT_GUARD_BITS)
    r = np.where(s > 0, (1 << LAYERNORM_RECIPROCAL_BITS) // np.maximum(s, 1), 0)
    z = ((channels * x - s1) * r) >> NORMALIZE_SHIFT
    return requantize(z * params.gamma, params.beta, params.multiplier, params.shift)


def layernorm(x, params):
    """:func:`layernorm_rows` of one 1-D row."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"LayerNorm row must be 1-D, not of shape {x.shape}")
    return layernorm_rows(x[None, :], params)[0]
