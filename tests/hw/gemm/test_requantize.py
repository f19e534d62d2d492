"""Requantizer RTL (Amaranth simulator) against its golden twin."""

import numpy as np
from amaranth.lib import data
from amaranth.sim import Simulator

from vitforge.hw.gemm.requantize import REQUANT_LATENCY, RequantParams, Requantizer
from vitforge.sw.golden.gemm.requantize import requantize

LANES = 4
ACC_WIDTH = 32


def run_requantizer(acc, bias, multiplier, shift):
    """Feed one vector per cycle; return the outputs in order."""
    dut = Requantizer(lanes=LANES, acc_width=ACC_WIDTH)
    outputs = []

    async def testbench(ctx):
        for index in range(len(acc) + REQUANT_LATENCY):
            if index < len(acc):
                ctx.set(dut.i_valid, 1)
                ctx.set(dut.i_acc, [int(x) for x in acc[index]])
                ctx.set(dut.i_params, {"bias": int(bias[index]),
                                       "multiplier": int(multiplier[index]),
                                       "shift": int(shift[index])})
            else:
                ctx.set(dut.i_valid, 0)
            await ctx.tick()
            if ctx.get(dut.o_valid):
                outputs.append([ctx.get(dut.o_data[lane]) for lane in range(LANES)])

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(testbench)
    simulator.run()
    return np.array(outputs, dtype=np.int8)


def check(acc, bias, multiplier, shift, seed):
    expected = requantize(acc, np.asarray(bias)[:, None], np.asarray(multiplier)[:, None],
                          np.asarray(shift)[:, None])
    actual = run_requantizer(acc, bias, multiplier, shift)
    np.testing.assert_array_equal(actual, expected, err_msg=f"seed {seed}: RTL vs golden")


def test_random_vectors_match_golden():
    seed = 7
    rng = np.random.default_rng(seed)
    count = 300
    acc = rng.integers(-(1 << 31), 1 << 31, size=(count, LANES))
    acc[::3] //= 1 << 16       # many small sums too, so not everything saturates
    bias = rng.integers(-(1 << 31), 1 << 31, size=count)
    bias[::2] //= 1 << 20
    multiplier = rng.integers(0, 1 << 16, size=count)
    shift = rng.integers(0, 64, size=count)
    check(acc, bias, multiplier, shift, seed)


def test_extremes_match_golden():
    lo, hi = -(1 << 31), (1 << 31) - 1
    acc = np.array([[lo, hi, 0, -1]] * 8)
    bias = np.array([lo, hi, lo, hi, 0, -1, 1, 0])
    multiplier = np.array([65535, 65535, 1, 1, 0, 65535, 32768, 1])
    shift = np.array([63, 0, 63, 1, 5, 49, 48, 0])
    check(acc, bias, multiplier, shift, seed="fixed extremes")


def test_rounding_is_half_up_at_every_tie():
    # (acc * 1 + 2**(s-1)) >> s for acc = +-(2j+1) * 2**(s-1): exact ties.
    shift = np.array([1, 2, 3, 7, 1, 2, 3, 7])
    odd = np.array([1, 3, 5, 7, -1, -3, -5, -7])
    acc = np.repeat((odd << (shift - 1))[:, None], LANES, axis=1)
    expected = np.repeat(((odd + 1) // 2)[:, None], LANES, axis=1)   # e.g. -0.5 -> 0
    actual = run_requantizer(acc, np.zeros(8, int), np.ones(8, int), shift)
    np.testing.assert_array_equal(actual, expected)


def test_params_layout_matches_field_widths():
    layout = data.Layout.cast(RequantParams)
    assert [(name, field.width) for name, field in layout] == [
        ("bias", 32), ("multiplier", 16), ("shift", 6)]


def fitting_shift(acc, bias, multiplier):
    """Per vector, the shift that brings the largest product just inside int8 (few saturate)."""
    largest = np.abs((acc + bias[:, None]) * multiplier[:, None]).max(axis=1)
    return np.array([max(int(value).bit_length() - 7, 0) for value in largest])


def test_sums_of_every_width_match_golden():
    """Sums of 1 to 33 bits, shifted so that the product's top bits reach the output."""
    seed = 11
    rng = np.random.default_rng(seed)
    count = 400
    lo, hi = -(1 << 31), (1 << 31) - 1
    acc = rng.integers(lo, hi + 1, size=(count, LANES)) >> rng.integers(0, 32, size=(count, 1))
    bias = rng.integers(lo, hi + 1, size=count) >> rng.integers(0, 32, size=count)
    acc[:4], bias[:4] = [[lo, lo, hi, hi]], [lo, hi, lo, hi]
    multiplier = rng.integers(0, 1 << 16, size=count)
    multiplier[::5], multiplier[1::5], multiplier[2::7] = 65535, 1, 0
    shift = fitting_shift(acc, bias, multiplier)
    shift[::9], shift[1::9] = 0, 63
    check(acc, bias, multiplier, shift, seed)


def test_every_low_part_matches_golden():
    """All 64 values of the sum's 6 low bits (multiplied in LUTs, the rest on the DSP) with
    the high part near 0 and at both ends of the 33-bit sum (acc and bias on one rail)."""
    lo, hi = -(1 << 31), (1 << 31) - 1
    offsets = np.arange(256).reshape(-1, LANES)             # 64 vectors
    acc = np.concatenate([offsets - 128, hi - offsets, lo + offsets] * 4)
    bias = np.repeat(np.tile([0, hi, lo], 4), len(offsets))
    multiplier = np.repeat([65535, 43691, 21845, 1], 3 * len(offsets))
    check(acc, bias, multiplier, fitting_shift(acc, bias, multiplier), seed="all low parts")
