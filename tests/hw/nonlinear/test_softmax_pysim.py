"""Softmax unit in Amaranth's simulator against its golden twin, bit for bit."""

import numpy as np
import pytest

from vitforge.hw.nonlinear.softmax import SoftmaxUnit
from vitforge.sim.nonlinear.softmax_session import run_softmax
from vitforge.sim.pins import run_in_amaranth
from vitforge.sw.golden.nonlinear.softmax import softmax
from vitforge.sw.nonlinear.softmax import exp_params


def simulate(rows, *, lanes, max_length, scale, out_bits=8, **stalls):
    params = exp_params(scale)
    result = run_in_amaranth(
        SoftmaxUnit(lanes=lanes, max_length=max_length, out_bits=out_bits),
        lambda pins: run_softmax(
            pins, lanes=lanes, max_length=max_length, out_bits=out_bits,
            values=np.concatenate(rows), lengths=[len(row) for row in rows],
            exp_params=[params.ratio, params.alpha, params.beta, params.gamma], **stalls))
    golden = np.concatenate([softmax(row, params, out_bits) for row in rows])
    return result, golden


def adversarial_rows(rng, max_length):
    return [
        np.full(7, 5, np.int8),                                   # all equal
        np.array([-128] * 6 + [127], np.int8),                    # one very large
        np.full(9, -128, np.int8), np.full(4, 127, np.int8),      # extremes
        np.array([3], np.int8),                                   # length 1
        rng.integers(-128, 128, max_length).astype(np.int8),      # maximum length
        rng.integers(-128, 128, 2).astype(np.int8),
    ]


@pytest.mark.parametrize("lanes", [1, 2, 3])
@pytest.mark.parametrize("scale", [0.02, 0.1])
def test_random_and_adversarial_rows_match_golden(lanes, scale):
    seed = 10 * lanes
    rng = np.random.default_rng(seed)
    rows = adversarial_rows(rng, 24) + [
        rng.integers(-128, 128, length).astype(np.int8) for length in rng.integers(1, 25, 8)]
    (outputs, _), golden = simulate(rows, lanes=lanes, max_length=24, scale=scale)
    np.testing.assert_array_equal(outputs, golden, err_msg=f"seed {seed}, lanes {lanes}")


@pytest.mark.parametrize("seed", [0, 1])
def test_random_stalls_on_both_sides(seed):
    rng = np.random.default_rng(seed)
    rows = [rng.integers(-128, 128, length).astype(np.int8) for length in rng.integers(1, 17, 10)]
    (outputs, _), golden = simulate(rows, lanes=2, max_length=16, scale=0.05, rng=rng,
                                    valid_rate=0.7, ready_rate=0.4)
    np.testing.assert_array_equal(outputs, golden, err_msg=f"seed {seed}")
