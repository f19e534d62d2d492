"""GEMM_SPARSE on ``GemmUnit`` alone in Amaranth's simulator, against the golden interpreter.

A rows come through IDX (random rows inside the A tile); the unit must take
exactly the cycles of a dense GEMM of the same ``k``.
"""

import numpy as np
import pytest

from vitforge.hw.accel.gemm_unit import GemmUnit
from vitforge.hw.accel.isa import Opcode, encode
from vitforge.hw.gemm.descriptor import GemmDescriptor
from vitforge.sim.accel.unit_bench import random_machine, run_and_compare, small_config
from vitforge.sw.gemm.plan import command_cycles

#: A tiles of ``depth`` rows; B/IDX column tiles of ``k`` entries (k below and above the
#: array size, a ragged last column tile; the second through the GELU table), then a dense
#: GEMM reading the same WGT words.
COMMANDS = [
    (Opcode.GEMM_SPARSE, dict(a_addr=10, a_stride=20, b_addr=100, b_stride=7, c_addr=200,
                              c_stride=6, p_addr=3, k=6, m_tiles=2, n=6, depth=20)),
    (Opcode.GEMM_SPARSE, dict(a_addr=0, a_stride=30, b_addr=60, b_stride=2, c_addr=120,
                              c_stride=9, p_addr=0, k=2, m_tiles=3, n=9, depth=30, gelu=1)),
    (Opcode.GEMM, dict(a_addr=10, a_stride=20, b_addr=100, b_stride=7, c_addr=200, c_stride=6,
                       p_addr=3, k=6, m_tiles=2, n=6)),
]


@pytest.mark.parametrize("array", [2, 4])
def test_gemm_sparse_equals_the_interpreter_in_dense_cycles(array):
    config = small_config(array=array)
    seed = 80 + array
    rng = np.random.default_rng(seed)
    machine = random_machine(config, rng)
    machine.idx[:] = rng.integers(0, 20, machine.idx.shape)       # inside every A tile
    runs = run_and_compare(GemmUnit(config), machine,
                           [encode(opcode, **fields) for opcode, fields in COMMANDS],
                           err_msg=f"GEMM_SPARSE, array {array}, seed {seed}")
    for run, (opcode, fields) in zip(runs, COMMANDS):
        descriptor = GemmDescriptor.from_fields(fields, sparse=int(opcode == Opcode.GEMM_SPARSE))
        # The engine's cycles, the C words' register stage, then ``done``.
        assert run.cycles == command_cycles(config.gemm, descriptor) + 2, (seed, fields)
