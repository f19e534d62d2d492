"""Softmax parameters: derived from the input scale, loaded into the unit at run time."""

from dataclasses import dataclass
import math

from vitforge.errors import ConfigError
from vitforge.hw.numerics import (ALPHA_FRACTION_BITS, COEFFICIENT_BITS, EXP_AT_ZERO_MIN_BITS,
                                  EXP_BITS, EXP_POLYNOMIAL_SHIFT, PHI_BITS, RATIO_BITS,
                                  RATIO_FRACTION_BITS)

from .reference import check_scale

__all__ = ["ExpParams", "exp_params", "IBERT_COEFFICIENTS", "MINIMAX_COEFFICIENTS"]

#: ``2**-phi ~ alpha * (phi - beta)**2 + gamma`` on ``[0, 1)``. I-BERT's
#: polynomial ``0.3585 (p + 1.353)**2 + 0.344`` on ``p = -phi * ln 2``
#: (Kim et al., 2021), rewritten in ``phi``: max error 2.13e-3 here.
IBERT_COEFFICIENTS = (0.3585 * math.log(2) ** 2, 1.353 / math.log(2), 0.344)
#: The same form fitted minimax on ``[0, 1)`` in this project: max error 1.25e-3.
MINIMAX_COEFFICIENTS = (0.17207997, 1.94555807, 0.34739567)


@dataclass(frozen=True)
class ExpParams:
    """Run-time parameters of the integer exp (``docs/numerics.md``, Softmax)."""

    ratio: int      # round(scale / ln 2 * 2**20)
    alpha: int      # round(alpha * 2**16)
    beta: int       # round(beta * 2**15)
    gamma: int      # round(gamma * 2**15)

    def as_dict(self):
        return {"ratio": self.ratio, "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}


def exp_params(scale, coefficients=MINIMAX_COEFFICIENTS):
    """Parameters for int8 inputs of real scale ``scale``.

    Raises
    ------
    vitforge.errors.ConfigError
        If ``scale`` is not positive, or so large (>= 11.5) that 255 steps
        overflow the 32-bit product ``n * ratio``, or so small that ``ratio``
        rounds to 0.
    """
    scale = check_scale("scale", scale)
    ratio = round(scale / math.log(2) * 2 ** RATIO_FRACTION_BITS)
    if not 1 <= ratio < 1 << RATIO_BITS:
        lowest = math.log(2) * 2 ** -(RATIO_FRACTION_BITS + 1)      # ratio rounds to 1
        limit = math.log(2) * 2 ** (RATIO_BITS - RATIO_FRACTION_BITS)
        raise ConfigError(f"scale must lie in [{lowest:.3g}, {limit:.3g}), not {scale!r}")
    alpha, beta, gamma = coefficients
    params = ExpParams(ratio=ratio, alpha=round(alpha * 2 ** ALPHA_FRACTION_BITS),
                       beta=round(beta * 2 ** PHI_BITS), gamma=round(gamma * 2 ** PHI_BITS))
    # The hardware's widths hold these, and exp(0) must be about 1.0 (2**15),
    # which bounds the reciprocal of the row sum.
    at_zero = ((params.alpha * params.beta ** 2) >> EXP_POLYNOMIAL_SHIFT) + params.gamma
    coefficient_limit = 1 << COEFFICIENT_BITS
    if not (params.alpha < coefficient_limit
            and 1 << PHI_BITS <= params.beta < coefficient_limit
            and params.gamma < coefficient_limit
            and 1 << EXP_AT_ZERO_MIN_BITS <= at_zero < 1 << EXP_BITS):
        raise ValueError(f"coefficients must give 0.5 <= exp(0) < 2 in the hardware's "
                         f"widths, not {coefficients!r}")
    return params
