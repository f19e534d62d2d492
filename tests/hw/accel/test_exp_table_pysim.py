"""SOFTMAX's exp table (``ExpTable``) against the golden ``exp_q15``."""

import numpy as np
import pytest

from vitforge.hw.accel.exp_table import FILL_CYCLES, TABLE_LATENCY, ExpTable
from vitforge.sim.accel.unit_bench import run_back_to_back
from vitforge.sw.golden.nonlinear.exp import exp_q15
from vitforge.sw.params.softmax import exp_params

LANES = 3


def address(lane, step):
    """The n that ``lane`` reads in ``step``: every n once in 256 steps, a different one in
    each lane."""
    return (step * (2 * lane + 1) + 17 * lane) % 256


@pytest.mark.parametrize("reads", [1, 2])
def test_refilled_tables_give_exp_q15_of_every_n_in_every_lane(reads):
    """Fills for three scales back to back (each must replace the last); every lane reads
    its own n each cycle, all 256 of them, one cycle later; with ``reads=2`` the second
    read port of each lane (the pair's) reads them too, in another order, the same cycle."""
    scales = [0.02, 0.3, 11]
    dut = ExpTable(lanes=LANES, reads=reads)
    ports = [("n", "e", 0), ("pair_n", "pair_e", 101)][:reads]

    def apply(ctx, scale):
        for name, value in exp_params(scale).as_dict().items():
            ctx.set(getattr(dut.params, name), value)

    async def read(ctx, scale):
        got = np.zeros((reads, LANES, 256), np.int64)
        for step in range(256 + TABLE_LATENCY - 1):
            for n, _, shift in ports:
                for lane in range(LANES):
                    ctx.set(getattr(dut, n)[lane], address(lane, step + shift))
            await ctx.tick()                     # the read of step + 1 - TABLE_LATENCY is out
            for port, (_, e, shift) in enumerate(ports):
                for lane in range(LANES):
                    got[port, lane, address(lane, step + shift + 1 - TABLE_LATENCY)] = \
                        ctx.get(getattr(dut, e)[lane])
        return got

    seen = run_back_to_back(dut, scales, apply, read)
    for scale, (got, cycles) in zip(scales, seen):
        want = exp_q15(np.arange(256), exp_params(scale))
        for port, lane in np.ndindex(reads, LANES):
            np.testing.assert_array_equal(got[port, lane], want,
                                          err_msg=f"scale {scale}, read {port}, lane {lane}")
        assert cycles == FILL_CYCLES == 1 + 256 + 6 + 1


def test_a_third_read_is_refused():
    with pytest.raises(ValueError, match="reads must be 1 or 2 .* not 3"):
        ExpTable(lanes=LANES, reads=3)
