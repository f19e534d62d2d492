"""GELU: table contents for the hardware unit, and I-BERT's polynomial as a baseline."""

import math

import numpy as np

from vitforge.hw.numerics import OPERAND_MAX, OPERAND_MIN

from . import reference
from .reference import check_scale

__all__ = ["INPUTS", "GELU_MINIMUM", "gelu_table", "gelu_output_range", "ibert_gelu"]

#: Every int8 input, in table order (the input's two's-complement bits as index).
INPUTS = np.concatenate([np.arange(0, OPERAND_MAX + 1),
                         np.arange(OPERAND_MIN, 0)]).astype(np.int8)
#: GELU's least value (at x = -0.7518): no output lies below it.
GELU_MINIMUM = float(reference.gelu(np.linspace(-0.76, -0.74, 20_001)).min())


def gelu_table(scale_in, scale_out, offset=0.0):
    """Table of :class:`~vitforge.hw.nonlinear.gelu.GeluUnit` for the given scales.

    Entry ``i`` is ``round((GELU(x * scale_in) - offset) / scale_out)`` clipped
    to int8, where ``x`` is the int8 value whose bits are ``i``; ties round half
    away from zero (NumPy's ``round`` is half-to-even, so it is done
    explicitly). An output ``q`` stands for ``q * scale_out + offset``.

    Returns
    -------
    numpy.ndarray of int8, shape (256,)
    """
    scale_in = check_scale("scale_in", scale_in)
    scale_out = check_scale("scale_out", scale_out)
    if not np.isfinite(offset):
        raise ValueError(f"offset must be finite, not {offset!r}")
    exact = (reference.gelu(INPUTS.astype(np.float64) * scale_in) - offset) / scale_out
    rounded = np.sign(exact) * np.floor(np.abs(exact) + 0.5)
    return np.clip(rounded, OPERAND_MIN, OPERAND_MAX).astype(np.int8)


def gelu_output_range(threshold):
    """``(scale_out, offset)`` whose int8 outputs ``-128..127`` cover GELU's values from
    :data:`GELU_MINIMUM` up to ``threshold``: twice the resolution of a symmetric scale,
    which would spend half its codes on negatives that GELU never reaches."""
    scale = (max(threshold, 1e-12) - GELU_MINIMUM) / (OPERAND_MAX - OPERAND_MIN)
    return scale, GELU_MINIMUM - OPERAND_MIN * scale


def ibert_gelu(q, scale_in, scale_out):
    """I-BERT's integer GELU (i-GELU) on int8 ``q``, requantized to int8, for comparison.

    ``erf(x) ~ sign(x) * (1 - a * (min(|x|, b) - b)**2)`` with a = 0.2888,
    b = 1.769 (Kim et al., 2021), evaluated in integers after scaling the
    input by ``2**f`` so the clip point has about 13 bits; the float
    requantization at the end is the best the polynomial allows.
    """
    scale_in = check_scale("scale_in", scale_in)
    scale_out = check_scale("scale_out", scale_out)
    a, b = 0.2888, 1.769
    erf_scale = scale_in / math.sqrt(2.0)
    f = max(0, math.ceil(math.log2(4096 * erf_scale / b)))
    erf_scale /= 2 ** f
    clip = round(b / erf_scale)
    c = round(1.0 / (a * erf_scale ** 2))
    q = np.asarray(q, dtype=np.int64)
    t = (clip - np.minimum(np.abs(q) << f, clip)) ** 2
    h = np.where(q >= 0, q * (2 * c - t), q * t)            # = GELU / (scale_in*a*s^2/2)
    real = h * (scale_in * a * erf_scale ** 2 / 2)
    return np.clip(np.round(real / scale_out), OPERAND_MIN, OPERAND_MAX).astype(np.int8)
