"""GEMM (``GemmUnit``, the GEMM core behind the unit interface) alone in Amaranth's simulator."""

import numpy as np
import pytest

from vitforge.hw.accel.gemm_unit import GemmUnit
from vitforge.hw.accel.isa import Opcode, encode
from vitforge.hw.gemm.descriptor import GemmDescriptor
from vitforge.sim.accel.unit_bench import random_machine, run_and_compare, small_config
from vitforge.sw.gemm.plan import command_cycles

#: (a_addr, a_stride, b_addr, b_stride, c_addr, c_stride, p_addr, k, m_tiles, n, gelu): strided
#: operands, a ragged last column tile, k below and above the array size, one tile row; the
#: results through the GELU table or not.
COMMANDS = [
    dict(a_addr=0, a_stride=9, b_addr=0, b_stride=9, c_addr=120, c_stride=7, p_addr=3, k=9,
         m_tiles=3, n=7, gelu=1),
    dict(a_addr=40, a_stride=2, b_addr=100, b_stride=3, c_addr=200, c_stride=5, p_addr=0, k=2,
         m_tiles=2, n=5, gelu=0),
    dict(a_addr=10, a_stride=20, b_addr=30, b_stride=20, c_addr=230, c_stride=4, p_addr=20,
         k=20, m_tiles=1, n=4, gelu=1),
]


#: Dense commands aligned to groups of four words (a_addr, a_stride, b_addr, b_stride),
#: k below, at and past a group and not a multiple of it.
SLAB_COMMANDS = [
    dict(a_addr=0, a_stride=12, b_addr=0, b_stride=12, c_addr=120, c_stride=7, p_addr=3, k=9,
         m_tiles=3, n=7, gelu=0),
    dict(a_addr=40, a_stride=4, b_addr=100, b_stride=4, c_addr=200, c_stride=5, p_addr=0, k=2,
         m_tiles=2, n=5, gelu=1),
    dict(a_addr=8, a_stride=20, b_addr=32, b_stride=20, c_addr=230, c_stride=4, p_addr=20,
         k=20, m_tiles=1, n=4, gelu=0),
]


@pytest.mark.parametrize("array, macs_per_dsp, k_per_cycle, commands, seed", [
    (2, 1, 1, COMMANDS, 72), (4, 1, 1, COMMANDS, 74), (4, 2, 1, COMMANDS, 74),
    (4, 2, 2, SLAB_COMMANDS, 82), (4, 2, 4, SLAB_COMMANDS, 84),
])
def test_gemm_equals_the_interpreter_in_the_cycles_the_plan_predicts(array, macs_per_dsp,
                                                                     k_per_cycle, commands,
                                                                     seed):
    config = small_config(array=array, macs_per_dsp=macs_per_dsp, k_per_cycle=k_per_cycle)
    runs = run_and_compare(GemmUnit(config), random_machine(config, np.random.default_rng(seed)),
                           [encode(Opcode.GEMM, **fields) for fields in commands],
                           err_msg=f"GEMM, array {array}, macs_per_dsp {macs_per_dsp}, "
                                   f"k_per_cycle {k_per_cycle}, seed {seed}")
    for run, fields in zip(runs, commands):
        # The core is busy for command_cycles from the start cycle on, the C words' register
        # stage a cycle more; ``done`` follows.
        busy = command_cycles(config.gemm, GemmDescriptor.from_fields(fields)) + 1
        assert (run.cycles, sum(run.busy)) == (busy + 1, busy), fields


@pytest.mark.parametrize("array, macs_per_dsp, k_per_cycle, commands, seed", [
    (2, 1, 1, COMMANDS, 92), (4, 2, 2, SLAB_COMMANDS, 94),
])
def test_b_from_act_through_its_second_read_port(array, macs_per_dsp, k_per_cycle, commands,
                                                 seed):
    """``b_act``: B's words come from ACT (``y_read``, or its groups of words), in the same
    cycles as from WGT; the other commands between them read B from WGT again."""
    config = small_config(array=array, macs_per_dsp=macs_per_dsp, k_per_cycle=k_per_cycle)
    words = [encode(Opcode.GEMM, **fields, b_act=int(index != 1))
             for index, fields in enumerate(commands)]
    machine = random_machine(config, np.random.default_rng(seed))
    # Scales that keep most results off the rails, so that every B word shows in them.
    machine.bias[:], machine.multiplier[:], machine.shift[:] = 0, 1 << 15, 24
    runs = run_and_compare(GemmUnit(config), machine, words,
                           err_msg=f"GEMM with B from ACT, array {array}, k_per_cycle "
                                   f"{k_per_cycle}, seed {seed}")
    for run, fields in zip(runs, commands):
        busy = command_cycles(config.gemm, GemmDescriptor.from_fields(fields)) + 1
        assert (run.cycles, sum(run.busy)) == (busy + 1, busy), fields
