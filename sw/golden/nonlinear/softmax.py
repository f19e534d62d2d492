"""Bit-exact twin of :mod:`vitforge.hw.nonlinear.softmax`."""

import numpy as np

from .exp import exp_q15

__all__ = ["softmax", "RECIPROCAL_BITS"]

#: The row's reciprocal is ``floor(one * 2**32 / sum)``.
RECIPROCAL_BITS = 32


def softmax(q, params, out_bits=8):
    """Softmax of one row of int8 ``q``, as unsigned probabilities of scale ``1 / one``.

    ``one = 2**(out_bits-1) - 1`` (127 for int8)::

        n_i  = max(q) - q_i
        e_i  = exp_q15(n_i)
        r    = floor(one * 2**32 / sum(e))
        p_i  = min((e_i * r + 2**31) >> 32, one)

    Returns
    -------
    numpy.ndarray of int64 in ``[0, one]``
    """
    q = np.asarray(q)
    if q.dtype != np.int8 or q.ndim != 1 or q.size == 0:
        raise ValueError(f"softmax row must be a non-empty 1-D int8 array, not {q.dtype} of "
                         f"shape {q.shape}")
    one = (1 << (out_bits - 1)) - 1
    e = exp_q15(int(q.max()) - q.astype(np.int64), params)
    reciprocal = (one << RECIPROCAL_BITS) // int(e.sum())
    return np.minimum((e * reciprocal + (1 << (RECIPROCAL_BITS - 1))) >> RECIPROCAL_BITS, one)
