"""Tiles through an output-stationary PE array in Amaranth's simulator, and their reference."""

import numpy as np
from amaranth.sim import Simulator

from vitforge.hw.numerics import OPERAND_MAX, OPERAND_MIN


def _slabs(operand, depth):
    """``operand`` (``k x width``) as ``ceil(k / depth)`` slabs of ``depth`` steps, zero-padded."""
    k, width = operand.shape
    padded = np.zeros((-(-k // depth) * depth, width), np.int64)
    padded[:k] = operand
    return padded.reshape(-1, depth, width)


def run_array(dut, tiles, *, rows, cols, latency, depth=None, gaps=None):
    """Each ``(a, b)`` of ``tiles`` (``k x rows`` and ``k x cols`` int8) through ``dut``.

    ``dut`` is a :class:`PEArray` (``depth=None``: one step of K per cycle) or
    a :class:`CascadeArray` of that ``depth`` (K padded with zero steps).
    ``gaps[t][s]`` idle cycles go before cycle ``s`` of tile ``t``. The tiles
    follow back to back: a tile's first step enters the cycle after the
    previous one's last, while that one drains. Returns each tile's
    ``rows x cols`` sums as read from the drain chain.
    """
    sums = []

    def set_operands(ctx, port, slab):
        for t, step in enumerate(slab):
            lanes = port if depth is None else port[t]
            for lane, value in enumerate(step):
                ctx.set(lanes[lane], int(value))

    async def drive(ctx):
        for index, (a, b) in enumerate(tiles):
            a_slabs, b_slabs = _slabs(a, depth or 1), _slabs(b, depth or 1)
            for cycle, (a_slab, b_slab) in enumerate(zip(a_slabs, b_slabs)):
                for _ in range(gaps[index][cycle] if gaps else 0):
                    ctx.set(dut.valid, 0)
                    await ctx.tick()
                ctx.set(dut.valid, 1)
                ctx.set(dut.first, cycle == 0)
                ctx.set(dut.last, cycle == len(a_slabs) - 1)
                set_operands(ctx, dut.a, a_slab)
                set_operands(ctx, dut.b, b_slab)
                await ctx.tick()
            ctx.set(dut.valid, 0)
            # The next tile's last may enter only after this one has drained.
            for _ in range(cols + latency):
                await ctx.tick()

    async def drain(ctx):
        for _ in tiles:
            await ctx.tick().until(dut.valid & dut.last)
            for _ in range(latency - 1):
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


def operands(rng, pattern, k, width):
    """``k x width`` int8 operands: random, all -128, or -128 and 127 alternating by lane."""
    if pattern == "random":
        return rng.integers(OPERAND_MIN, OPERAND_MAX + 1, (k, width), dtype=np.int64)
    if pattern == "min":
        return np.full((k, width), OPERAND_MIN)
    if pattern == "min-max":           # -128 x 127 and 127 x -128 in every pair
        return np.where(np.arange(width) % 2, OPERAND_MAX, OPERAND_MIN)[None].repeat(k, 0)
    raise AssertionError(pattern)


def assert_sums_equal(got, tiles, seed, variant):
    """Every tile's sums equal ``a.T @ b`` exactly."""
    assert len(got) == len(tiles), f"{variant}: {len(got)} tiles drained, not {len(tiles)}"
    for index, (sums, (a, b)) in enumerate(zip(got, tiles)):
        np.testing.assert_array_equal(
            sums, a.astype(np.int64).T @ b.astype(np.int64),
            err_msg=f"seed {seed}, tile {index} (k={len(a)}), {variant}: array sums vs a.T @ b")
