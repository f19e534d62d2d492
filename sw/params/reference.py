"""Float references of the nonlinear functions: what the integer units approximate."""

import math

import numpy as np

from vitforge.errors import ConfigError, ConfigTypeError

__all__ = ["gelu", "sigmoid", "softmax", "layernorm", "check_scale"]


#: The range of a quantization scale: outside it the parameter generators' float64 squares and
#: quotients (LayerNorm's ``eps * C**2 / scale**2``, the exp and GELU tables' thresholds)
#: overflow or underflow, and no real model's activations come near either end.
SCALE_RANGE = (1e-12, 1e12)


def check_scale(name, scale):
    """Raise unless ``scale`` is a real number within :data:`SCALE_RANGE`."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating)):
        raise ConfigTypeError(f"{name} must be a real number, not {scale!r}")
    if not math.isfinite(scale) or scale <= 0:
        raise ConfigError(f"{name} must be positive and finite, not {scale!r}")
    low, high = SCALE_RANGE
    if not low <= scale <= high:
        raise ConfigError(f"{name} must lie in [{low:g}, {high:g}], not {scale!r}")
    return float(scale)


def gelu(x):
    """Exact GELU, ``x * Phi(x)``, in float64."""
    x = np.asarray(x, dtype=np.float64)
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def sigmoid(x):
    """The logistic function ``1 / (1 + exp(-x))`` in float64, without overflow for any ``x``."""
    x = np.asarray(x, dtype=np.float64)
    positive = x >= 0
    out = np.empty_like(x)
    out[positive] = 1.0 / (1.0 + np.exp(-x[positive]))
    e = np.exp(x[~positive])
    out[~positive] = e / (1.0 + e)
    return out


def softmax(x):
    """Softmax over the last axis, in float64."""
    x = np.asarray(x, dtype=np.float64)
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def layernorm(x, gamma, beta, eps):
    """LayerNorm over the last axis with population variance, in float64."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    variance = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * gamma + beta
