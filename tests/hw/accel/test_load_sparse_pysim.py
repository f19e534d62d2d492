"""LOAD_SPARSE on the DMA alone in Amaranth's simulator, and the side-load rules around it.

The expected scratchpads come straight from the stored form
(:meth:`HPSparseWeight.index_bytes`, ``values``, ``pattern.row_index()``):
IDX and WGT get the group's rows and values at ``spad_addr + t*L + j``;
nothing else changes. The golden interpreter must agree.
"""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.sim import Simulator

from vitforge.hw.accel.accelerator import UNITS
from vitforge.hw.accel.config import DRAM_WORD_BYTES
from vitforge.hw.accel.decoder import SIDE_CHECK_LATENCY, InstructionDecoder
from vitforge.hw.accel.dma import Dma, dma_cycles
from vitforge.hw.accel.isa import ISA, Opcode, Space, decode, encode, load_may_run_beside
from vitforge.sim.accel.unit_bench import (STATE, Backpressure, assert_same_state, copy_machine,
                                           golden_after, random_machine, run_unit, small_config)
from vitforge.sw.accel.memory import pack_entries
from vitforge.sw.gemm.sparse import HPSparseWeight
from vitforge.sw.gemm.sparse_problems import random_pattern

DRAM_ADDR, SPAD_ADDR = 3, 17
#: name: (K, block_rows, kept_blocks, kept_rows); groups = 3 of the array's columns.
CASES = {
    "one-word-record-fillers": (21, 8, 2, 6),     # 14 record bytes, last block short
    "two-word-record": (64, 4, 5, 3),             # 20 bytes: the second word mostly padding
    "exact-words": (40, 4, 8, 3),                 # 32 bytes: two whole words
    "single-row": (16, 8, 1, 1),                  # 2 bytes
}
STALLS = [None, Backpressure(seed=23)]


def sparse_weight(config, rng, rows, block_rows, kept_blocks, kept_rows):
    pattern = random_pattern(rng, rows, 3 * config.array - 1, cols=config.array,
                             block_rows=block_rows, kept_blocks=kept_blocks,
                             kept_rows=kept_rows)
    dense = rng.integers(-128, 128, (pattern.rows, pattern.columns)).astype(np.int8)
    return HPSparseWeight.encode(np.where(pattern.mask(), dense, 0).astype(np.int8), pattern)


def stored_image(config, weight):
    """The external bytes LOAD_SPARSE reads: per group its record, then its value entries."""
    parts = []
    for record, values in zip(weight.index_bytes(), weight.values):
        parts += [record.tobytes(), pack_entries(Space.WGT, values, config)]
    return b"".join(parts)


def load_sparse(config, rng, weight, backpressure):
    image = stored_image(config, weight)
    machine = random_machine(config, rng, DRAM_ADDR + len(image) // DRAM_WORD_BYTES + 2)
    start = DRAM_ADDR * DRAM_WORD_BYTES
    machine.dram[start:start + len(image)] = np.frombuffer(image, np.uint8)
    p = weight.pattern
    word = encode(Opcode.LOAD_SPARSE, dram_addr=DRAM_ADDR, spad_addr=SPAD_ADDR, tiles=p.groups,
                  blocks=p.kept_blocks, kept_rows=p.kept_rows,
                  block_shift=p.block_rows.bit_length() - 1)
    (run,) = run_unit(Dma(config), machine, [word], backpressure=backpressure)
    return machine, word, run


@pytest.mark.parametrize("stalls", STALLS, ids=["no-stalls", "stalls"])
@pytest.mark.parametrize("array", [4, 20])
@pytest.mark.parametrize("case", list(CASES))
def test_load_sparse_writes_rows_to_idx_and_values_to_wgt(case, array, stalls):
    config = small_config(array=array, k_max=80)
    seed = 60 + list(CASES).index(case) + array
    rng = np.random.default_rng(seed)
    weight = sparse_weight(config, rng, *CASES[case])
    machine, word, run = load_sparse(config, rng, weight, stalls)
    what = f"{case}, array {array}, seed {seed}, stalls {stalls}"
    p = weight.pattern
    region = slice(SPAD_ADDR, SPAD_ADDR + p.groups * p.length)
    expected = copy_machine(machine)
    expected.idx[region] = p.row_index().reshape(-1)
    expected.wgt[region] = weight.values.reshape(-1, array)
    for name in STATE:
        np.testing.assert_array_equal(getattr(run.state, name), getattr(expected, name),
                                      err_msg=f"{what}: {name}, unit vs expected")
    assert_same_state(run.state, golden_after(machine, [word])[0], what)
    run.check_handshake()
    if stalls is None:
        used = p.kept_blocks * (1 + p.kept_rows)
        # The docstring's count: two cycles for the totals, then one per byte and word.
        assert run.cycles == p.groups * (used + config.weight_words(p.length)) + 4, what
        assert run.cycles == dma_cycles(config, decode(word)), what


GEMM_SPARSE = dict(a_addr=0, a_stride=32, b_addr=100, b_stride=12, c_addr=200, c_stride=8,
                   p_addr=0, k=12, m_tiles=1, n=8, depth=32)      # reads WGT/IDX 100..123
GEMM = {name: value for name, value in GEMM_SPARSE.items() if name != "depth"}


@pytest.mark.parametrize("host", [Opcode.GEMM, Opcode.GEMM_SPARSE])
@pytest.mark.parametrize("load, fields, allowed", [
    (Opcode.LOAD_SPARSE, dict(spad_addr=124, tiles=2, blocks=2, kept_rows=3), True),
    (Opcode.LOAD_SPARSE, dict(spad_addr=90, tiles=2, blocks=2, kept_rows=3), False),
    (Opcode.LOAD_SPARSE, dict(spad_addr=88, tiles=2, blocks=2, kept_rows=3), True),
    (Opcode.LOAD_SPARSE, dict(spad_addr=123, tiles=1, blocks=1, kept_rows=1), False),
    (Opcode.LOAD, dict(space=Space.WGT, spad_addr=124, count=8), True),
    (Opcode.LOAD, dict(space=Space.WGT, spad_addr=96, count=5), False),
    (Opcode.LOAD, dict(space=Space.ACT, spad_addr=124, count=8), False),
])
def test_side_loads_beside_gemm_and_gemm_sparse(host, load, fields, allowed):
    """The decoder's rule equals the ISA's on ints, for every host and load opcode."""
    config = small_config()
    host_fields = GEMM_SPARSE if host == Opcode.GEMM_SPARSE else GEMM
    load_fields = {"dram_addr": 5, **fields}
    if load == Opcode.LOAD_SPARSE:
        load_fields["block_shift"] = 3
    assert bool(load_may_run_beside(host, SimpleNamespace(**host_fields), load,
                                           SimpleNamespace(**load_fields),
                                           config.array)) == allowed
    decoder = InstructionDecoder(config, tuple(UNITS))
    values = _decode(decoder, encode(host, **host_fields), encode(load, **load_fields))
    assert values == (1, int(allowed)), (host.name, load.name, fields)


_SOFTMAX = dict(src=200, src_stride=12, dst=100, dst_stride=12, m_tiles=3, length=12,
                ratio=1000, alpha=100, beta=40000, gamma=20000, probability_shift=1)


@pytest.mark.parametrize("banks, side, fields, allowed", [
    (2, Opcode.SOFTMAX, dict(_SOFTMAX, beside=1), True),
    (2, Opcode.SOFTMAX, dict(_SOFTMAX, beside=0), False),
    (2, Opcode.SOFTMAX, dict(_SOFTMAX, beside=1, live=1), False),
    (2, Opcode.SOFTMAX, dict(_SOFTMAX, beside=1, length=0), False),
    (1, Opcode.SOFTMAX, dict(_SOFTMAX, beside=1), False),
    (2, Opcode.GELU, dict(src=200, dst=10, count=4, beside=1), True),
    (2, Opcode.ADD, dict(x=200, y=220, dst=10, count=4, x_multiplier=1, y_multiplier=1,
                         shift=0, beside=1), True),
    (2, Opcode.LAYERNORM, dict(src=200, src_stride=4, dst=10, dst_stride=4, m_tiles=1,
                               channels=4, lnp_addr=0, eps=0, multiplier=1, shift=0,
                               beside=1), True),
])
def test_row_instructions_start_beside_a_gemm_when_they_ask(banks, side, fields, allowed):
    """The decoder starts a SIDE_ROWS instruction beside a GEMM when its ``beside`` bit
    asks, it has no live flags and no empty field, and ACT has two banks: the program
    answers for its regions (the interpreter checks them), and the unit it names is
    ``next_unit``."""
    config = replace(small_config(), act_banks=banks)
    decoder = InstructionDecoder(config, tuple(UNITS))
    side_word = encode(side, **fields)
    assert _decode(decoder, encode(Opcode.GEMM, **GEMM), side_word) == (1, int(allowed))
    assert _next_unit(decoder, side_word) == 1 << tuple(UNITS).index(ISA[side].unit)


def _next_unit(decoder, next_instruction):
    result = []

    async def testbench(ctx):
        ctx.set(decoder.next_instruction, next_instruction)
        result.append(ctx.get(decoder.next_unit))

    sim = Simulator(decoder)
    sim.add_testbench(testbench)
    sim.run()
    return result[0]


def _decode(decoder, instruction, next_instruction):
    """``(side_capable, side)`` of the decoder for two instructions, ``side``
    :data:`SIDE_CHECK_LATENCY` cycles after they are applied."""
    result = []

    async def testbench(ctx):
        ctx.set(decoder.instruction, instruction)
        ctx.set(decoder.next_instruction, next_instruction)
        await ctx.tick().repeat(SIDE_CHECK_LATENCY)
        result.append((ctx.get(decoder.decoded.side_capable), ctx.get(decoder.decoded.side)))

    sim = Simulator(decoder)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return result[0]
