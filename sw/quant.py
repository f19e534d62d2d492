"""Real-valued scales <-> the integer parameters of ``docs/numerics.md``."""

import math

import numpy as np

from vitforge.hw.numerics import MULTIPLIER_BITS, SHIFT_BITS

__all__ = ["fixed_point_multiplier"]


def fixed_point_multiplier(scale):
    """Nearest ``(multiplier, shift)`` with ``multiplier / 2**shift ~= scale``.

    ``multiplier`` has its top bit set (``2**15 <= multiplier < 2**16``) so the
    relative error is at most ``2**-16``; scales too small for the shift field
    give ``(0, 0)``, i.e. a zero output.

    Parameters
    ----------
    scale : array_like of float
        Positive real scales, one per output channel.

    Returns
    -------
    multiplier, shift : numpy.ndarray of int64
    """
    scale = np.asarray(scale, dtype=np.float64)
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        bad = float(scale[~(np.isfinite(scale) & (scale > 0))].flat[0])
        raise ValueError(f"scale must be positive and finite, not {bad!r}")
    multiplier = np.zeros(scale.shape, dtype=np.int64)
    shift = np.zeros(scale.shape, dtype=np.int64)
    for index, value in np.ndenumerate(scale):
        value = float(value)
        mantissa, exponent = math.frexp(value)         # value = mantissa * 2**exponent
        m = round(mantissa * (1 << MULTIPLIER_BITS))
        s = MULTIPLIER_BITS - exponent
        if m == 1 << MULTIPLIER_BITS:                   # mantissa rounded up to 1.0
            m, s = m >> 1, s - 1
        if s < 0:
            raise ValueError(f"scale must be below {1 << MULTIPLIER_BITS}, not {value!r}")
        if s > (1 << SHIFT_BITS) - 1:
            m, s = 0, 0
        multiplier[index], shift[index] = m, s
    return multiplier, shift
