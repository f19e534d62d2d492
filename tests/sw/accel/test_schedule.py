"""Where the compiler puts loads: beside a GEMM or row instruction, in chunks that hide them."""

import numpy as np
import pytest

from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.hw.accel.isa import Instruction, Opcode, Space
from vitforge.sw.accel.compiler import compile_blocks
from vitforge.sw.accel.cycles import SIDE_START_DELAY, _may_run_beside, unit_cycles
from vitforge.sw.accel.lowering import _chunk_tiles
from vitforge.sw.golden.accel.interpreter import Machine, run_program
from vitforge.sw.golden.encoder import encoder_blocks
from vitforge.sw.model.random_block import random_blocks


@pytest.mark.parametrize("seed", range(4))
def test_chunks_cover_the_layer_and_hide_their_loads(seed):
    """Random layers: the chunks cover every tile once. GEMM-bound (a tile's GEMM at least its
    load): no chunk's load outlasts the GEMM of the chunk before it, the first none outlasts
    its host where ``last`` tiles fit, and the last is at least half the one before.
    Weight-bound:
    each chunk's GEMM hosts a load at least as long as itself."""
    rng = np.random.default_rng(seed)
    for _ in range(300):
        count, load = int(rng.integers(1, 80)), int(rng.integers(10, 2000))
        gemm = int(load * rng.uniform(0.2, 3))
        host = None if rng.random() < 0.2 else int(rng.integers(0, 5000))
        last = int(rng.integers(1, 6))
        sizes = _chunk_tiles(count, host, load, gemm, last)
        case = f"seed {seed}: {count} tiles, host {host}, load {load}, GEMM {gemm}, " \
               f"last {last}: {sizes}"
        assert sum(sizes) == count and min(sizes) >= 1, case
        pairs = list(zip(sizes, sizes[1:]))
        if gemm >= load:
            assert all(later * load <= earlier * gemm for earlier, later in pairs), case
            if host is not None and host >= last * load + SIDE_START_DELAY + 2:
                assert sizes[0] * load + SIDE_START_DELAY + 2 <= host, case
            if host is None:
                assert sizes[0] <= min(last, count), case
            assert len(sizes) == 1 or sizes[-1] >= sizes[-2] // 2, case
        elif host is None:
            assert sizes == [count], case
        else:
            # (The last chunk takes what is left.)
            assert all(later * load >= earlier * gemm for earlier, later in pairs[:-1]), case


def test_every_load_of_a_gemm_bound_block_runs_beside_a_host_and_hides():
    """Five token tiles on an 8-lane array: a column tile's GEMM takes five times its load.
    Every weight, parameter and LayerNorm parameter load after the first computing
    instruction runs beside the instruction before it (a GEMM, a LayerNorm or the residual
    ADD) and ends before it; the program still equals the reference."""
    x, blocks, _ = random_blocks(np.random.default_rng(11), tokens=40, dim=64, heads=2,
                                 hidden=256, count=2)
    config = AcceleratorConfig(array=8, act_depth=4096, wgt_depth=4096, prm_depth=1024,
                               lnp_depth=256, k_max=512, macs_per_dsp=2, k_per_cycle=2)
    program = compile_blocks(config, blocks, x)
    machine = Machine(config, program.image)
    run_program(machine, program.program_addr)
    np.testing.assert_array_equal(program.read_output(machine.dram), encoder_blocks(x, blocks))
    instructions = [Instruction(opcode, fields) for opcode, fields in program.instructions]
    # The loads before the first computing instruction have nothing to run beside.
    start = next(index for index, item in enumerate(instructions) if item.opcode != Opcode.LOAD)
    loads = [index for index, item in enumerate(instructions[start:], start)
             if item.opcode == Opcode.LOAD and item.space in (Space.WGT, Space.PRM, Space.LNP)]
    hosts = set()
    for index in loads:
        host, load = instructions[index - 1], instructions[index]
        assert _may_run_beside(config, host, load), (index, host, load)
        assert SIDE_START_DELAY + unit_cycles(config, load) <= unit_cycles(config, host), \
            (index, host, load)
        hosts.add((host.opcode, load.space))
    # LNP beside the residual ADD before LN1, FC1's PRM beside the one before LN2.
    assert {(Opcode.ADD, Space.LNP), (Opcode.ADD, Space.PRM), (Opcode.LAYERNORM, Space.PRM),
            (Opcode.LAYERNORM, Space.WGT), (Opcode.GEMM, Space.WGT)} <= hosts
