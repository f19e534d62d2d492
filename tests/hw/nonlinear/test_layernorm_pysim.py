"""LayerNorm unit in Amaranth's simulator against its golden twin, bit for bit."""

import numpy as np
import pytest

from vitforge.hw.nonlinear.layernorm import LayerNormUnit
from vitforge.sim.nonlinear.layernorm_session import run_layernorm
from vitforge.sim.pins import run_in_amaranth
from vitforge.sw.golden.nonlinear.layernorm import layernorm
from vitforge.sw.params.layernorm import layernorm_params


def simulate(rows, params, *, lanes, **stalls):
    channels = params.gamma.size
    result = run_in_amaranth(
        LayerNormUnit(lanes=lanes, channels=channels),
        lambda pins: run_layernorm(
            pins, lanes=lanes, channels=channels, values=np.concatenate(rows),
            gamma=params.gamma, beta=params.beta,
            scalars=[params.eps, params.multiplier, params.shift], **stalls))
    golden = np.concatenate([layernorm(row, params) for row in rows])
    return result, golden


def make_params(rng, channels, scale_in=0.05, eps=1e-6):
    gamma = rng.uniform(-1.5, 1.5, channels)
    beta = rng.uniform(-0.5, 0.5, channels)
    return layernorm_params(scale_in, gamma, beta, eps, scale_out=4 / 127)


def adversarial_rows(rng, channels):
    return [
        np.full(channels, 9, np.int8),                               # constant: variance 0
        np.array([-128] * (channels - 1) + [127], np.int8),          # one very large
        np.full(channels, -128, np.int8), np.full(channels, 127, np.int8),
        np.where(np.arange(channels) % 2, 127, -128).astype(np.int8),
        rng.integers(-2, 3, channels).astype(np.int8),               # tiny variance
    ]


@pytest.mark.parametrize("lanes, channels", [(1, 12), (2, 16), (4, 8)])
@pytest.mark.parametrize("eps", [1e-6, 0.0])
def test_random_and_adversarial_rows_match_golden(lanes, channels, eps):
    seed = lanes * 100 + channels
    rng = np.random.default_rng(seed)
    params = make_params(rng, channels, eps=eps)
    rows = adversarial_rows(rng, channels) + [
        rng.integers(-128, 128, channels).astype(np.int8) for _ in range(5)]
    (outputs, _), golden = simulate(rows, params, lanes=lanes)
    np.testing.assert_array_equal(outputs, golden, err_msg=f"seed {seed}, eps {eps}")


@pytest.mark.parametrize("seed", [0, 1])
def test_random_stalls_on_both_sides(seed):
    rng = np.random.default_rng(seed)
    params = make_params(rng, 16)
    rows = [rng.integers(-128, 128, 16).astype(np.int8) for _ in range(6)]
    (outputs, _), golden = simulate(rows, params, lanes=2, rng=rng, valid_rate=0.6,
                                    ready_rate=0.5)
    np.testing.assert_array_equal(outputs, golden, err_msg=f"seed {seed}")


def test_constant_row_without_eps_gives_beta():
    rng = np.random.default_rng(3)
    params = make_params(rng, 8, eps=0.0)
    (outputs, _), golden = simulate([np.full(8, -5, np.int8)], params, lanes=2)
    np.testing.assert_array_equal(outputs, golden)
    from vitforge.sw.golden.gemm.requantize import requantize
    np.testing.assert_array_equal(outputs, requantize(0, params.beta, params.multiplier,
                                                      params.shift))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(lanes=3, channels=8), ValueError, r"^channels must be a multiple of lanes=3, not 8$"),
    (dict(lanes=1, channels=2048), ValueError, r"^channels must be at most 1024, not 2048$"),
    (dict(lanes=0, channels=8), ValueError, r"^lanes must be a positive integer, not 0$"),
])
def test_bad_parameters_are_rejected(kwargs, error, message):
    with pytest.raises(error, match=message):
        LayerNormUnit(**kwargs)
