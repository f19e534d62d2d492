"""Softmax unit in Amaranth's simulator against its golden twin, bit for bit."""

import numpy as np
import pytest

from vitforge.hw.nonlinear.softmax import SoftmaxUnit
from vitforge.sim.nonlinear.softmax_session import run_softmax
from vitforge.sim.pins import run_in_amaranth
from vitforge.sw.golden.nonlinear.softmax import softmax
from vitforge.sw.params.softmax import exp_params


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


def test_rows_longer_than_the_maximum_are_refused_before_simulating():
    with pytest.raises(ValueError, match=r"^softmax row length must lie in \[1, "
                                         r"max_length=16\], not 17$"):
        simulate([np.zeros(17, np.int8)], lanes=2, max_length=16, scale=0.05)


def test_hardware_flags_a_row_past_its_buffer():
    from amaranth.sim import Simulator
    from vitforge.sim.nonlinear.softmax_session import row_beats
    from vitforge.sim.words import pack_fields
    from amaranth import signed
    from amaranth.lib import data
    from vitforge.hw.nonlinear.softmax import softmax_beat_layout

    dut = SoftmaxUnit(lanes=2, max_length=4)
    layout = data.Layout.cast(softmax_beat_layout(2, signed(8)))
    beats = [pack_fields(layout, beat) for beat in row_beats(np.arange(6, dtype=np.int8), 2)]
    flags = []

    async def testbench(ctx):
        assert ctx.get(dut.overflow) == 0
        for beat in beats:                       # 3 beats into a 2-beat row buffer
            ctx.set(dut.i.payload.as_value(), beat)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        await ctx.tick()
        flags.append(ctx.get(dut.overflow))

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(testbench)
    simulator.run()
    assert flags == [1]
