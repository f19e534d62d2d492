"""GELU unit in Amaranth's simulator: every int8 input, stalls on both sides."""

import numpy as np
import pytest

from vitforge.hw.nonlinear.gelu import GeluUnit
from vitforge.sim.nonlinear.gelu_session import run_gelu
from vitforge.sim.pins import run_in_amaranth
from vitforge.sw.golden.nonlinear.gelu import gelu
from vitforge.sw.params.gelu import gelu_table

ALL_INT8 = np.arange(-128, 128).astype(np.int8)


def simulate(lanes, table, values, **stalls):
    return run_in_amaranth(GeluUnit(lanes=lanes), lambda pins: run_gelu(
        pins, lanes=lanes, table=table, values=values, **stalls))


@pytest.mark.parametrize("lanes", [1, 3, 4])
@pytest.mark.parametrize("scale", [0.005, 0.05, 0.3])
def test_every_int8_input_matches_golden(lanes, scale):
    table = gelu_table(scale, scale)
    outputs, cycles = simulate(lanes, table, ALL_INT8)
    np.testing.assert_array_equal(outputs, gelu(ALL_INT8, table),
                                  err_msg=f"lanes {lanes}, scale {scale}")
    beats = -(-256 // lanes)
    assert cycles == beats + 1          # one beat per cycle, latency 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_stalls_lose_and_duplicate_nothing(seed):
    rng = np.random.default_rng(seed)
    table = gelu_table(0.04, 0.03)
    values = rng.integers(-128, 128, size=300).astype(np.int8)
    outputs, _ = simulate(2, table, values, rng=rng, valid_rate=0.6, ready_rate=0.5)
    np.testing.assert_array_equal(outputs, gelu(values, table), err_msg=f"seed {seed}")


def test_lanes_are_checked():
    with pytest.raises(ValueError, match=r"^lanes must be a positive integer, not 0$"):
        GeluUnit(lanes=0)
    with pytest.raises(TypeError, match=r"^lanes must be an integer, not 1.5$"):
        GeluUnit(lanes=1.5)
