"""SOFTMAX's shared dividers (``SoftmaxReciprocals``) against the golden numerics."""

import numpy as np
import pytest

from vitforge.hw.accel.softmax_reciprocals import (SUM_BITS, SoftmaxReciprocals,
                                                   reciprocals_cycles)
from vitforge.hw.numerics import EXP_AT_ZERO_MIN_BITS, SOFTMAX_RECIPROCAL_BITS, softmax_one
from vitforge.sim.accel.unit_bench import run_back_to_back


def batches(rng, lanes):
    """Row sums of every lane, batch after batch: random, the extremes, all equal."""
    low, high = 1 << EXP_AT_ZERO_MIN_BITS, (1 << SUM_BITS) - 1
    yield rng.integers(low, 1 << 20, lanes)
    yield np.where(np.arange(lanes) % 2, low, high)
    yield np.full(lanes, rng.integers(low, high))
    yield rng.integers(low, high, lanes)


def run(lanes, units, seed):
    """Simulate the batches back to back; returns per batch the golden and simulated
    reciprocals and the cycles ``busy`` took."""
    dut = SoftmaxReciprocals(lanes=lanes, units=units)
    dividend = softmax_one(8) << SOFTMAX_RECIPROCAL_BITS

    def apply(ctx, sums):
        for lane, total in enumerate(sums):
            ctx.set(dut.sums[lane], int(total))

    async def read(ctx, sums):
        return [ctx.get(dut.reciprocal[lane]) for lane in range(lanes)]

    sums = list(batches(np.random.default_rng(seed), lanes))
    return [([dividend // int(total) for total in batch], got, cycles)
            for batch, (got, cycles) in zip(sums, run_back_to_back(dut, sums, apply, read))]


@pytest.mark.parametrize("lanes, units", [(1, 1), (4, 1), (5, 2), (8, 3), (6, 6)])
def test_back_to_back_rows_match_the_golden_reciprocals(lanes, units):
    for batch, (want, got, cycles) in enumerate(run(lanes, units, seed=lanes * 10 + units)):
        np.testing.assert_array_equal(got, want, err_msg=f"batch {batch}, {lanes} lanes in "
                                      f"{units} units")
        assert cycles == reciprocals_cycles(lanes, units)


def test_cycles_of_the_default_units():
    """32 lanes in 16 units: 2 divisions of 26 cycles each."""
    assert reciprocals_cycles(32, 16) == 1 + 2 * 26 + 1
