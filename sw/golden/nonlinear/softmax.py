"""Bit-exact twin of :mod:`vitforge.hw.nonlinear.softmax`."""

import numpy as np

from vitforge.hw.numerics import SOFTMAX_RECIPROCAL_BITS, softmax_one

from .exp import exp_q15

__all__ = ["softmax", "softmax_rows"]


def softmax_rows(q, params, out_bits=8, shift=0):
    """Softmax of each row of the 2-D int8 array ``q``, as probabilities of scale
    ``1 / (one * 2**shift)``.

    ``one = 2**(out_bits-1) - 1`` (127 for int8); per row::

        n_i  = max(q) - q_i
        e_i  = exp_q15(n_i)
        r    = floor(one * 2**32 / sum(e))
        p_i  = min(((e_i * r << shift) + 2**31) >> 32, one)

    A ``shift`` above 0 (the accelerator's ``probability_shift``) resolves
    small probabilities ``2**shift`` times finer and saturates those above
    ``2**-shift``.

    Returns
    -------
    numpy.ndarray of int64 in ``[0, one]``, the shape of ``q``
    """
    q = np.asarray(q)
    if q.dtype != np.int8 or q.ndim != 2 or q.size == 0:
        raise ValueError(f"softmax rows must be a non-empty 2-D int8 array, not {q.dtype} of "
                         f"shape {q.shape}")
    one = softmax_one(out_bits)
    wide = q.astype(np.int64)
    e = exp_q15(wide.max(axis=1, keepdims=True) - wide, params)
    reciprocal = (one << SOFTMAX_RECIPROCAL_BITS) // e.sum(axis=1, keepdims=True)
    rounding = 1 << (SOFTMAX_RECIPROCAL_BITS - 1)
    return np.minimum(((e * reciprocal << shift) + rounding) >> SOFTMAX_RECIPROCAL_BITS, one)


def softmax(q, params, out_bits=8, shift=0):
    """:func:`softmax_rows` of one 1-D row."""
    q = np.asarray(q)
    if q.ndim != 1:
        raise ValueError(f"softmax row must be 1-D, not of shape {q.shape}")
    return softmax_rows(q[None, :], params, out_bits, shift)[0]
