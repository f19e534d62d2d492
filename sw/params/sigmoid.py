"""Sigmoid tables of the token selector (``docs/numerics.md``, Token selector)."""

import numpy as np

from vitforge.hw.numerics import SIGMOID_ONE

from . import reference
from .gelu import INPUTS
from .reference import check_scale

__all__ = ["sigmoid_table"]


def sigmoid_table(scale_in):
    """Sigmoid of every int8 input of scale ``scale_in``, in Q0.15, indexed by the input's bits.

    Entry ``i`` is ``round(sigmoid(x * scale_in) * 2**15)``, ``x`` the int8
    value whose two's-complement bits are ``i``, rounded half away from zero
    (as :func:`~vitforge.sw.params.gelu.gelu_table`). Entries lie in
    ``[0, 2**15]`` and need no saturation; the entry of ``x = 0`` is exactly
    ``2**14``.

    Returns
    -------
    numpy.ndarray of uint16, shape (256,)

    Raises
    ------
    vitforge.errors.ConfigError
        If ``scale_in`` is not positive and finite.
    """
    scale_in = check_scale("scale_in", scale_in)
    exact = reference.sigmoid(INPUTS.astype(np.float64) * scale_in) * SIGMOID_ONE
    return np.floor(exact + 0.5).astype(np.uint16)
