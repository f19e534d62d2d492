"""SOFTMAX's exp table (``ExpTable``) against the golden ``exp_q15``."""

import numpy as np

from vitforge.hw.accel.exp_table import FILL_CYCLES, TABLE_LATENCY, ExpTable
from vitforge.sim.accel.unit_bench import run_back_to_back
from vitforge.sw.golden.nonlinear.exp import exp_q15
from vitforge.sw.params.softmax import exp_params

LANES = 3


def address(lane, step):
    """The n that ``lane`` reads in ``step``: every n once in 256 steps, a different one in
    each lane."""
    return (step * (2 * lane + 1) + 17 * lane) % 256


def test_refilled_tables_give_exp_q15_of_every_n_in_every_lane():
    """Fills for three scales back to back (each must replace the last); every lane reads
    its own n each cycle, all 256 of them, one cycle later."""
    scales = [0.02, 0.3, 11]
    dut = ExpTable(lanes=LANES)

    def apply(ctx, scale):
        for name, value in exp_params(scale).as_dict().items():
            ctx.set(getattr(dut.params, name), value)

    async def read(ctx, scale):
        got = np.zeros((LANES, 256), np.int64)
        for step in range(256 + TABLE_LATENCY - 1):
            for lane in range(LANES):
                ctx.set(dut.n[lane], address(lane, step))
            await ctx.tick()                     # the read of step + 1 - TABLE_LATENCY is out
            for lane in range(LANES):
                got[lane, address(lane, step + 1 - TABLE_LATENCY)] = ctx.get(dut.e[lane])
        return got

    seen = run_back_to_back(dut, scales, apply, read)
    for scale, (got, cycles) in zip(scales, seen):
        want = exp_q15(np.arange(256), exp_params(scale))
        for lane in range(LANES):
            np.testing.assert_array_equal(got[lane], want, err_msg=f"scale {scale}, lane {lane}")
        assert cycles == FILL_CYCLES == 1 + 256 + 6 + 1
