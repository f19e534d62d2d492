"""Sequential divider and square root against Python integers."""

import math

import numpy as np
import pytest
from amaranth.sim import Simulator

from vitforge.hw.nonlinear.divider import SequentialDivider
from vitforge.hw.nonlinear.isqrt import SequentialSqrt


def run(dut, cases, inputs, output, latency):
    results = []

    async def testbench(ctx):
        for case in cases:
            for port, value in zip(inputs, case):
                ctx.set(getattr(dut, port), value)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 0
            while not ctx.get(dut.done):
                await ctx.tick()
                cycles += 1
            assert cycles == latency
            results.append(ctx.get(getattr(dut, output)))

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(testbench)
    simulator.run()
    return results


def test_divider_matches_floor_division():
    seed = 4
    rng = np.random.default_rng(seed)
    cases = [(127 << 32, 32768), (127 << 32, 1), (0, 5), ((1 << 39) - 1, (1 << 20) - 1)]
    cases += [(int(a), int(b)) for a, b in zip(rng.integers(0, 1 << 39, 40, dtype=np.int64),
                                                  rng.integers(1, 1 << 20, 40))]
    quotients = run(SequentialDivider(dividend_width=39, divisor_width=20), cases,
                    ("dividend", "divisor"), "quotient", latency=39)
    assert quotients == [a // b for a, b in cases], f"seed {seed}"


def test_divider_with_a_narrow_quotient():
    seed = 5
    rng = np.random.default_rng(seed)
    divisors = [1 << 14, (1 << 14) + 1, (1 << 27) - 1] + \
        [int(d) for d in rng.integers(1 << 14, 1 << 27, 30)]
    cases = [(127 << 32, d) for d in divisors]
    quotients = run(SequentialDivider(dividend_width=39, divisor_width=27, quotient_width=25),
                    cases, ("dividend", "divisor"), "quotient", latency=25)
    assert quotients == [a // b for a, b in cases], f"seed {seed}"


def test_square_root_matches_math_isqrt():
    seed = 6
    rng = np.random.default_rng(seed)
    values = [0, 1, 2, 3, 4, 15, 16, (1 << 51) - 1, 1 << 50]
    values += [int(v) for v in rng.integers(0, 1 << 51, 40, dtype=np.int64)]
    roots = run(SequentialSqrt(width=51), [(v,) for v in values], ("value",), "root",
                latency=26)
    assert roots == [math.isqrt(v) for v in values], f"seed {seed}"


def test_widths_are_checked():
    with pytest.raises(ValueError, match=r"^width must be a positive integer, not 0$"):
        SequentialSqrt(width=0)
    with pytest.raises(ValueError, match=r"^divisor_width must be a positive integer, not -1$"):
        SequentialDivider(dividend_width=8, divisor_width=-1)
    with pytest.raises(ValueError, match=r"^quotient_width must be at most dividend_width=8, "
                                         r"not 9$"):
        SequentialDivider(dividend_width=8, divisor_width=4, quotient_width=9)
