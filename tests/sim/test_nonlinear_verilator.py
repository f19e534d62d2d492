"""Nonlinear units in Verilator (through cocotb) against their golden twins, bit for bit."""

import numpy as np
import pytest

from vitforge.sim.nonlinear.cosim import simulate_unit
from vitforge.sw.golden.nonlinear.gelu import gelu
from vitforge.sw.golden.nonlinear.softmax import softmax
from vitforge.sw.params.gelu import gelu_table
from vitforge.sw.params.softmax import exp_params

pytestmark = pytest.mark.verilator

ALL_INT8 = np.arange(-128, 128).astype(np.int8)


@pytest.mark.parametrize("scale_in, scale_out", [(0.005, 0.005), (0.06, 0.05), (0.4, 0.3)])
def test_gelu_exhaustive_with_stalls(scale_in, scale_out):
    seed = 5
    table = gelu_table(scale_in, scale_out)
    values = np.concatenate([ALL_INT8, ALL_INT8[::-1]])
    run = simulate_unit("gelu", {"lanes": 4}, {"table": table, "values": values},
                        seed=seed, valid_rate=0.8, ready_rate=0.7)
    np.testing.assert_array_equal(run.outputs, gelu(values, table),
                                  err_msg=f"seed {seed}, scales {scale_in}/{scale_out}")


def test_gelu_sustains_one_beat_per_cycle():
    table = gelu_table(0.05, 0.05)
    values = np.tile(ALL_INT8, 8)
    run = simulate_unit("gelu", {"lanes": 4}, {"table": table, "values": values})
    np.testing.assert_array_equal(run.outputs, gelu(values, table))
    assert run.cycles == len(values) // 4 + 1        # beats + latency


@pytest.mark.parametrize("scale", [0.02, 0.15])
def test_softmax_rows_with_changing_lengths_and_stalls(scale):
    seed = 21
    rng = np.random.default_rng(seed)
    rows = [np.full(5, 7, np.int8), np.array([-128] * 10 + [127], np.int8),
            np.full(3, -128, np.int8), np.full(6, 127, np.int8), np.array([1], np.int8),
            rng.integers(-128, 128, 40).astype(np.int8)]
    rows += [rng.integers(-128, 128, n).astype(np.int8) for n in rng.integers(1, 41, 12)]
    params = exp_params(scale)
    run = simulate_unit(
        "softmax", {"lanes": 3, "max_length": 40, "out_bits": 8},
        {"values": np.concatenate(rows), "lengths": np.array([len(r) for r in rows]),
         "exp_params": np.array([params.ratio, params.alpha, params.beta, params.gamma])},
        seed=seed, valid_rate=0.8, ready_rate=0.6)
    golden = np.concatenate([softmax(row, params) for row in rows])
    np.testing.assert_array_equal(run.outputs, golden, err_msg=f"seed {seed}, scale {scale}")


def test_layernorm_rows_with_stalls():
    from vitforge.sw.golden.nonlinear.layernorm import layernorm
    from vitforge.sw.params.layernorm import layernorm_params

    seed = 8
    rng = np.random.default_rng(seed)
    channels = 32
    params = layernorm_params(0.05, rng.uniform(-1.5, 1.5, channels),
                              rng.uniform(-0.5, 0.5, channels), 1e-6, 4 / 127)
    rows = [np.full(channels, 9, np.int8), np.full(channels, -128, np.int8),
            np.array([-128] * (channels - 1) + [127], np.int8)]
    rows += [rng.integers(-128, 128, channels).astype(np.int8) for _ in range(6)]
    run = simulate_unit(
        "layernorm", {"lanes": 4, "channels": channels},
        {"values": np.concatenate(rows), "gamma": params.gamma, "beta": params.beta,
         "scalars": np.array([params.eps, params.multiplier, params.shift])},
        seed=seed, valid_rate=0.7, ready_rate=0.6)
    golden = np.concatenate([layernorm(row, params) for row in rows])
    np.testing.assert_array_equal(run.outputs, golden, err_msg=f"seed {seed}")
