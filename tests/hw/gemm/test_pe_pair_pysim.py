"""The PE array with one and with two MACs per DSP: raw sums, exact, on extreme operands."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from vitforge.errors import ConfigError
from vitforge.hw.gemm.array import ARRAY_LATENCY, PEArray
from vitforge.hw.gemm.config import GemmConfig
from vitforge.hw.gemm.pe_pair import DSP_RUN_PRODUCTS, PACK_SHIFT, PACKED_WEIGHT_BITS
from vitforge.hw.numerics import MAX_PRODUCT, OPERAND_MAX, OPERAND_MIN


def run_tiles(rows, cols, macs_per_dsp, tiles, *, acc_width=32, gaps=None):
    """Each ``(a, b)`` of ``tiles`` (``k x rows`` and ``k x cols`` int8) through the array.

    ``gaps[t][s]`` idle cycles go before step ``s`` of tile ``t``. The tiles
    follow back to back: a tile's first product enters the cycle after the
    previous one's last, while that one drains. Returns each tile's
    ``rows x cols`` sums as read from the drain chain.
    """
    dut = PEArray(rows=rows, cols=cols, acc_width=acc_width, macs_per_dsp=macs_per_dsp)
    sums = []

    async def drive(ctx):
        for index, (a, b) in enumerate(tiles):
            for step in range(len(a)):
                for _ in range(gaps[index][step] if gaps else 0):
                    ctx.set(dut.valid, 0)
                    await ctx.tick()
                ctx.set(dut.valid, 1)
                ctx.set(dut.first, step == 0)
                ctx.set(dut.last, step == len(a) - 1)
                for i in range(rows):
                    ctx.set(dut.a[i], int(a[step, i]))
                for j in range(cols):
                    ctx.set(dut.b[j], int(b[step, j]))
                await ctx.tick()
            ctx.set(dut.valid, 0)
            # The next tile's last may enter only after this one has drained.
            for _ in range(cols + ARRAY_LATENCY):
                await ctx.tick()

    async def drain(ctx):
        for a, _ in tiles:
            await ctx.tick().until(dut.valid & dut.last)
            for _ in range(ARRAY_LATENCY - 1):
                await ctx.tick()
            tile = np.zeros((rows, cols), np.int64)
            for j in range(cols):
                await ctx.tick()
                tile[:, j] = [ctx.get(dut.column[i]) for i in range(rows)]
                ctx.set(dut.shift, 1)
            await ctx.tick()
            ctx.set(dut.shift, 0)
            sums.append(tile)

    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    simulator.add_testbench(drive)
    simulator.add_testbench(drain)
    simulator.run()
    return sums


def reference(tile):
    a, b = tile
    return a.astype(np.int64).T @ b.astype(np.int64)


def operands(rng, pattern, k, width):
    if pattern == "random":
        return rng.integers(OPERAND_MIN, OPERAND_MAX + 1, (k, width), dtype=np.int64)
    if pattern == "min":
        return np.full((k, width), OPERAND_MIN)
    if pattern == "min-max":           # -128 x 127 and 127 x -128 in every pair
        return np.where(np.arange(width) % 2, OPERAND_MAX, OPERAND_MIN)[None].repeat(k, 0)
    raise AssertionError(pattern)


def assert_sums_equal(got, tiles, seed, macs_per_dsp):
    for index, (sums, tile) in enumerate(zip(got, tiles)):
        np.testing.assert_array_equal(
            sums, reference(tile),
            err_msg=f"seed {seed}, tile {index} (k={len(tile[0])}), macs_per_dsp="
                    f"{macs_per_dsp}: array sums vs a.T @ b")


@pytest.mark.parametrize("macs_per_dsp", [1, 2])
@pytest.mark.parametrize("a_pattern, b_pattern", [("min", "min"), ("min", "min-max"),
                                                  ("random", "random")])
def test_extreme_products_across_dsp_runs(macs_per_dsp, a_pattern, b_pattern):
    # Depths around the DSP's run length, 1 and K not a multiple of it, back to back.
    seed = 3
    rng = np.random.default_rng(seed)
    depths = [1, DSP_RUN_PRODUCTS - 1, DSP_RUN_PRODUCTS, DSP_RUN_PRODUCTS + 1,
              2 * DSP_RUN_PRODUCTS, 3 * DSP_RUN_PRODUCTS + 2]
    tiles = [(operands(rng, a_pattern, k, 2), operands(rng, b_pattern, k, 4)) for k in depths]
    assert_sums_equal(run_tiles(2, 4, macs_per_dsp, tiles), tiles, seed, macs_per_dsp)


@pytest.mark.parametrize("macs_per_dsp", [1, 2])
def test_stalls_inside_a_sum(macs_per_dsp):
    # Idle cycles before steps, including right before a run's dump and a tile's last.
    seed = 8
    rng = np.random.default_rng(seed)
    depths = [DSP_RUN_PRODUCTS + 3, 2, DSP_RUN_PRODUCTS]
    tiles = [(operands(rng, "random", k, 3), operands(rng, "random", k, 2)) for k in depths]
    gaps = [rng.integers(0, 3, k) for k in depths]
    assert_sums_equal(run_tiles(3, 2, macs_per_dsp, tiles, gaps=gaps), tiles, seed,
                      macs_per_dsp)


def test_longest_reduction_reaches_the_accumulator_bound():
    # k_max = 2048 of -128 x -128 (and of -128 x 127): the sums the accumulator is sized for.
    config = GemmConfig(rows=1, cols=2, k_max=2048, a_depth=2048, b_depth=2048,
                        macs_per_dsp=2, acc_width=GemmConfig(k_max=2048).required_acc_width)
    k = config.k_max
    a = np.full((k, 1), OPERAND_MIN)
    b = np.array([[OPERAND_MIN, OPERAND_MAX]]).repeat(k, 0)
    (sums,) = run_tiles(1, 2, 2, [(a, b)], acc_width=config.acc_width)
    np.testing.assert_array_equal(sums, [[k * MAX_PRODUCT, k * OPERAND_MIN * OPERAND_MAX]])


def test_packed_weight_fields_do_not_overlap():
    # The low field holds DSP_RUN_PRODUCTS extreme products, not one more.
    assert DSP_RUN_PRODUCTS * MAX_PRODUCT < 1 << (PACK_SHIFT - 1)
    assert (DSP_RUN_PRODUCTS + 1) * MAX_PRODUCT > (1 << (PACK_SHIFT - 1)) - 1
    assert -OPERAND_MIN << PACK_SHIFT < 1 << (PACKED_WEIGHT_BITS - 1)


def test_config_rejects_bad_packing():
    with pytest.raises(ConfigError, match=r"^macs_per_dsp must be 1 or 2, not 3$"):
        GemmConfig(macs_per_dsp=3)
    with pytest.raises(ConfigError, match=r"^cols must be even when macs_per_dsp is 2 "
                                          r"\(two columns share a DSP\), not 3$"):
        GemmConfig(cols=3, macs_per_dsp=2)
    assert GemmConfig(rows=4, cols=6, macs_per_dsp=2).multipliers == 12
