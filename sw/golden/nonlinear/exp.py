"""Bit-exact twin of :mod:`vitforge.hw.nonlinear.exp`: ``exp(-n * scale)`` in Q0.15."""

import numpy as np

from vitforge.hw.numerics import (EXP_POLYNOMIAL_SHIFT, EXP_SHIFT_LIMIT, PHI_BITS,
                                  RATIO_FRACTION_BITS)

__all__ = ["exp_q15"]


def exp_q15(n, params):
    """``~ exp(-n * scale) * 2**15`` for integer ``0 <= n <= 255``.

    ``w = n * ratio`` is ``n * scale / ln 2`` in Q.20; its integer part ``z``
    is the range reduction and its fraction ``phi`` (Q0.15) the polynomial's
    argument::

        d = beta - phi
        e = ((alpha * d * d) >> 31) + gamma        ~ 2**-phi in Q0.15
        result = e >> z   (0 when z >= 16)
    """
    n = np.asarray(n, dtype=np.int64)
    w = n * params.ratio
    z = w >> RATIO_FRACTION_BITS
    phi = (w >> (RATIO_FRACTION_BITS - PHI_BITS)) & ((1 << PHI_BITS) - 1)
    d = params.beta - phi
    e = ((params.alpha * d * d) >> EXP_POLYNOMIAL_SHIFT) + params.gamma
    return np.where(z >= EXP_SHIFT_LIMIT, 0, e >> np.minimum(z, EXP_SHIFT_LIMIT - 1))
