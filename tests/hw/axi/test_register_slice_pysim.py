"""The stream register slice: order kept, full throughput, no path through it."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from vitforge.hw.axi.register_slice import RegisterSlice


def run(seed, valid_rate, ready_rate, count=200, cycles=2000):
    """Push ``count`` random words through with random stalls on both sides."""
    rng = np.random.default_rng(seed)
    words = [int(word) for word in rng.integers(0, 1 << 16, count)]
    dut = RegisterSlice(16)
    received, transfers = [], []

    async def testbench(ctx):
        sent = 0
        for cycle in range(cycles):
            offer = sent < count and rng.random() < valid_rate
            ctx.set(dut.input.valid, offer)
            ctx.set(dut.input.payload, words[sent] if offer else 0)
            ctx.set(dut.output.ready, rng.random() < ready_rate)
            # Registered outputs: neither depends on this cycle's inputs.
            ready, valid = ctx.get(dut.input.ready), ctx.get(dut.output.valid)
            ctx.set(dut.input.valid, 1 - offer)
            ctx.set(dut.output.ready, 1 - ctx.get(dut.output.ready))
            assert (ctx.get(dut.input.ready), ctx.get(dut.output.valid)) == (ready, valid)
            ctx.set(dut.input.valid, offer)
            ctx.set(dut.output.ready, 1 - ctx.get(dut.output.ready))
            if valid and ctx.get(dut.output.ready):
                received.append(ctx.get(dut.output.payload))
                transfers.append(cycle)
            sent += offer and ready
            await ctx.tick()

    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    simulator.add_testbench(testbench)
    simulator.run()
    return words, received, transfers


@pytest.mark.parametrize("seed, valid_rate, ready_rate", [
    (1, 1.0, 1.0), (2, 1.0, 0.5), (3, 0.5, 1.0), (4, 0.7, 0.3), (5, 0.3, 0.9)])
def test_every_word_comes_out_once_in_order(seed, valid_rate, ready_rate):
    words, received, _ = run(seed, valid_rate, ready_rate)
    np.testing.assert_array_equal(received, words, err_msg=f"seed {seed}")


def test_one_word_per_cycle_after_one_cycle_of_latency():
    words, received, transfers = run(6, 1.0, 1.0)
    np.testing.assert_array_equal(received, words)
    assert transfers == list(range(1, len(words) + 1))
