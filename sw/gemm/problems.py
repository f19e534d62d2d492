"""Integer GEMM problems for tests, benchmarks and the CLI."""

import numpy as np

from vitforge.errors import ConfigError
from vitforge.sw.quant import fixed_point_multiplier

from .plan import GemmProblem

__all__ = ["PATTERNS", "random_problem"]

#: Operand patterns: random int8, and the extremes of the int8 range.
PATTERNS = ("random", "min", "max", "alternating", "zeros")


def _operand(rng, shape, pattern):
    if pattern == "random":
        return rng.integers(-128, 128, size=shape, dtype=np.int8)
    if pattern == "min":
        return np.full(shape, -128, dtype=np.int8)
    if pattern == "max":
        return np.full(shape, 127, dtype=np.int8)
    if pattern == "alternating":
        rows, cols = np.indices(shape)
        return np.where((rows + cols) % 2 == 0, 127, -128).astype(np.int8)
    return np.zeros(shape, dtype=np.int8)


def random_problem(rng, m, k, n, *, pattern="random"):
    """An ``m x k`` by ``k x n`` problem with requantization that uses the int8 range.

    Each output channel's scale maps its largest ``|acc + bias|`` to about 100,
    so results are spread over int8 with a few saturating when bias pushes
    them; the bias is random within a quarter of that range.

    Parameters
    ----------
    rng : numpy.random.Generator
    m, k, n : int
    pattern : str
        One of :data:`PATTERNS`, applied to both operands.

    Raises
    ------
    vitforge.errors.ConfigError
        For an unknown pattern or a size that is not a positive integer.
    """
    if pattern not in PATTERNS:
        raise ConfigError(f"pattern must be one of {', '.join(PATTERNS)}, not {pattern!r}")
    for name, value in (("m", m), ("k", k), ("n", n)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, not {value!r}")
    a = _operand(rng, (m, k), pattern)
    b = _operand(rng, (k, n), pattern)
    sums = a.astype(np.int64) @ b.astype(np.int64)
    span = np.maximum(np.abs(sums).max(axis=0), 1)
    bias = (rng.uniform(-0.25, 0.25, size=n) * span).astype(np.int64)
    multiplier, shift = fixed_point_multiplier(100.0 / (span + np.abs(bias)))
    return GemmProblem(a=a, b=b, bias=bias, multiplier=multiplier, shift=shift)
