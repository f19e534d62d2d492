"""LayerNorm parameters: derived from scales, gamma, beta and eps, loaded at run time."""

from dataclasses import dataclass

import numpy as np

from vitforge.errors import ConfigError
from vitforge.hw.numerics import (BETA_BITS, EPS_BITS, GAMMA_BITS, MAX_CHANNELS,
                                  NORMALIZED_FRACTION_BITS)
from vitforge.sw.quant import fixed_point_multiplier

from .reference import check_scale

__all__ = ["LayerNormParams", "layernorm_params"]

_GAMMA_MAX = (1 << (GAMMA_BITS - 1)) - 1


@dataclass(frozen=True)
class LayerNormParams:
    """Run-time parameters of the LayerNorm unit (``docs/numerics.md``, LayerNorm)."""

    eps: int                    # eps * C**2 / scale_in**2, rounded
    gamma: np.ndarray           # int16 per channel
    beta: np.ndarray            # int32 per channel, in units of the product z * gamma
    multiplier: int
    shift: int


def layernorm_params(scale_in, gamma, beta, eps, scale_out):
    """Integer parameters for int8 inputs of scale ``scale_in`` and int8 outputs of ``scale_out``.

    ``gamma`` is quantized symmetrically to int16 with scale
    ``s_g = max|gamma| / 32767``; ``beta`` to int32 in units of
    ``s_g * 2**-10`` (the scale of ``z * gamma_q``), and the requantization
    multiplier and shift map that unit to ``scale_out``.

    Raises
    ------
    vitforge.errors.ConfigError
        On non-positive scales, a negative eps, shapes that differ, more than
        :data:`~vitforge.hw.numerics.MAX_CHANNELS` channels, all-zero gamma, or a
        beta too large for int32 in that unit.
    """
    scale_in = check_scale("scale_in", scale_in)
    scale_out = check_scale("scale_out", scale_out)
    gamma = np.asarray(gamma, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    if gamma.ndim != 1 or gamma.shape != beta.shape:
        raise ConfigError(f"gamma and beta must be 1-D of one shape, not {gamma.shape} and "
                          f"{beta.shape}")
    channels = gamma.size
    if not 1 <= channels <= MAX_CHANNELS:
        raise ConfigError(f"channels must lie in [1, {MAX_CHANNELS}], not {channels}")
    if not np.isfinite(eps) or eps < 0:
        raise ConfigError(f"eps must be non-negative and finite, not {eps!r}")
    gamma_scale = np.abs(gamma).max() / _GAMMA_MAX
    if not gamma_scale > 0:
        raise ConfigError("gamma must not be all zero")
    product_unit = gamma_scale * 2.0 ** -NORMALIZED_FRACTION_BITS
    beta_q = np.round(beta / product_unit)
    if np.abs(beta_q).max() >= 1 << (BETA_BITS - 1):
        raise ConfigError(f"beta must stay within 2**31 units of {product_unit:.3g}, not "
                          f"{np.abs(beta).max():.3g}")
    multiplier, shift = fixed_point_multiplier(product_unit / scale_out)
    eps_q = int(round(eps * channels ** 2 / scale_in ** 2))
    if eps_q >= 1 << EPS_BITS:
        raise ConfigError(f"eps * channels**2 / scale_in**2 must be below 2**32, not {eps_q}")
    return LayerNormParams(
        eps=eps_q,
        gamma=np.round(gamma / gamma_scale).astype(np.int64),
        beta=beta_q.astype(np.int64),
        multiplier=int(multiplier), shift=int(shift))
