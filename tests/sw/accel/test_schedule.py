"""Where the compiler puts loads: beside a GEMM or row instruction, in chunks that hide them."""

from dataclasses import replace

import numpy as np
import pytest

from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.hw.accel.isa import Instruction, Opcode, Space
from vitforge.sw.accel.compiler import compile_blocks, compile_model, config_for_model
from vitforge.sw.accel.cycles import (FAR_START_DELAY, SIDE_START_DELAY, _may_run_beside,
                                      predict, program_cycles, unit_cycles)
from vitforge.sw.accel.lowering import Lowering, _chunk_tiles
from vitforge.sw.golden.accel.interpreter import Machine, run_program
from vitforge.sw.golden.encoder import encoder_blocks, vit_logits
from vitforge.sw.model.quantize import quantize_vit
from vitforge.sw.model.random_block import random_blocks
from vitforge.sw.model.vit import PRESETS, random_vit


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


@pytest.mark.parametrize("act_read_ports", [1, 2])
def test_every_load_of_a_gemm_bound_block_runs_beside_a_host_and_hides(act_read_ports):
    """Five token tiles on an 8-lane array: a column tile's GEMM takes five times its load.
    Every weight, parameter and LayerNorm parameter load after the first computing
    instruction runs beside the instruction before it (a GEMM, a LayerNorm or the residual
    ADD; or the GEMM before a softmax piece beside it, the far slot) and ends before it; the
    program still equals the reference. With two read ports there is no ADD (proj and FC2
    add the residuals): each block's LN1 parameters load alone after its QKV's first
    weights (FC1's last GEMM hosts FC2's first: here the GEMMs bind, and FC2's tile does
    not load early), LN2's after head 0's Q K^T (which hosts no softmax), and FC1's
    parameters with attention's GEMMs."""
    x, blocks, _ = random_blocks(np.random.default_rng(11), tokens=40, dim=64, heads=2,
                                 hidden=256, count=2)
    config = AcceleratorConfig(array=8, act_depth=4096, wgt_depth=4096, prm_depth=1024,
                               lnp_depth=256, k_max=512, macs_per_dsp=2, k_per_cycle=2,
                               act_read_ports=act_read_ports)
    program = compile_blocks(config, blocks, x)
    machine = Machine(config, program.image)
    run_program(machine, program.program_addr)
    np.testing.assert_array_equal(program.read_output(machine.dram), encoder_blocks(x, blocks))
    instructions = [Instruction(opcode, fields) for opcode, fields in program.instructions]
    # The loads before the first computing instruction have nothing to run beside.
    start = next(index for index, item in enumerate(instructions) if item.opcode != Opcode.LOAD)
    loads = [index for index, item in enumerate(instructions[start:], start)
             if item.opcode == Opcode.LOAD and item.space in (Space.WGT, Space.PRM, Space.LNP)]
    hosts, alone = set(), []
    for index in loads:
        host, load = instructions[index - 1], instructions[index]
        if act_read_ports == 2 and load.space == Space.LNP:
            alone.append((host.opcode, host.space if host.opcode == Opcode.LOAD
                           else host.b_act))
            continue
        delay, retires = SIDE_START_DELAY, unit_cycles(config, host)
        if host.fields.get("beside"):       # the far slot: beside the GEMM before the row
            row, host, delay = host, instructions[index - 2], FAR_START_DELAY
            retires = max(unit_cycles(config, host),
                          SIDE_START_DELAY + unit_cycles(config, row))
        assert _may_run_beside(config, host, load), (index, host, load)
        assert delay + unit_cycles(config, load) <= retires, (index, host, load)
        hosts.add((host.opcode, load.space))
    always = {(Opcode.LAYERNORM, Space.PRM), (Opcode.LAYERNORM, Space.WGT),
              (Opcode.GEMM, Space.WGT)}
    if act_read_ports == 1:
        # LNP beside the residual ADD before LN1, FC1's PRM beside the one before LN2.
        assert always | {(Opcode.ADD, Space.LNP), (Opcode.ADD, Space.PRM)} <= hosts
    else:
        assert always <= hosts and Opcode.ADD not in {opcode for opcode, _ in hosts}
        ln1, ln2 = (Opcode.LOAD, Space.WGT), (Opcode.GEMM, 1)
        assert alone == [ln2] + [ln1, ln2] * (len(blocks) - 1)


def _head_loads(program, config):
    """Per WGT LOAD of ``program``: its section, its words, and whether it runs beside a
    GEMM (right before it, or before the row instruction beside that GEMM: the cycle
    model's walk, which the RTL tests check)."""
    computing = [Instruction(opcode, fields) for opcode, fields in program.instructions]
    retired = program_cycles(config, program.instructions).retired_at
    return [(section, range(load.spad_addr, load.spad_addr + load.count),
             retired[index] == 0 and Opcode.GEMM in {
                 computing[index - back].opcode for back in (1, 2)})
            for index, (load, section) in enumerate(zip(computing, program.sections))
            if load.opcode == Opcode.LOAD and load.space == Space.WGT]


def _tiny_vit(seed, array=4):
    """A random quantized ``tiny`` ViT, an image's patches and the smallest accelerator of
    ``array`` lanes for it."""
    rng = np.random.default_rng(seed)
    model = quantize_vit(random_vit(PRESETS["tiny"], rng, scale=0.2),
                         rng.uniform(0, 1, (4, 1, 8, 8)))
    image = rng.integers(-128, 128, (model.shape.patches, model.shape.patch_features),
                         dtype=np.int8)
    return model, image, config_for_model(model, array)


@pytest.mark.parametrize("seed", [5, 6])
def test_the_head_s_weights_load_early_into_words_above_the_halves(seed, monkeypatch):
    """A random ViT: the head's weights load, in pieces, into the words above two WGT
    halves, each beside a GEMM that it hides, so the head
    phase loads none; every other weight load fits a half (the largest layer no longer
    does: its chunks are capped). The logits are the golden model's, in fewer cycles than
    with the head loading its weights after the final LayerNorm."""
    model, image, config = _tiny_vit(seed)
    k, n = model.head.weight.shape
    reserved = range(config.wgt_depth - -(-n // 4) * k, config.wgt_depth)
    half = reserved.start // 2
    programs = {}
    for early in (True, False):
        if not early:
            monkeypatch.setattr(Lowering, "prefetch_head", lambda *args: None)
        program = programs[early] = compile_model(config, model, image)
        machine = Machine(config, program.image)
        run_program(machine, program.program_addr)
        np.testing.assert_array_equal(program.result(machine.dram), vit_logits(model, image),
                                      err_msg=f"seed {seed}, head loaded early: {early}")
    loads = _head_loads(programs[True], config)
    prefetched = [load for load in loads if load[1].start in reserved]
    assert prefetched and all(beside and section != "head"
                              for section, _, beside in prefetched), prefetched
    assert sum(len(words) for _, words, _ in prefetched) == len(reserved)
    assert not [load for load in loads if load[0] == "head"]
    assert all(words.stop <= half or half <= words.start and words.stop <= 2 * half
               for _, words, _ in loads if words.start not in reserved), (half, loads)
    fc2 = model.blocks[0].fc2.weight
    assert fc2.shape[0] * -(-fc2.shape[1] // 4) > half, (fc2.shape, half)
    assert [load for load in _head_loads(programs[False], config) if load[0] == "head"]
    assert predict(programs[True]).cycles < predict(programs[False]).cycles


def test_fc2_s_first_tile_loads_early_beside_attention_s_gemms(monkeypatch):
    """A random ViT whose heads overlap, on 16 lanes taking two steps of K a cycle, where
    the weight stream binds FC1 (17 tokens: a column tile's GEMM takes 32 cycles, its load
    32): each block's FC2 first column tile loads into WGT words reserved for it below the
    head's, beside attention's GEMMs, and FC2's first GEMM reads it there; early loads take
    the far slot (after a softmax piece beside a GEMM), and FC1's last GEMM hosts the next
    block's LN1 parameters; the logits are the golden model's, as without the reserved
    words, in fewer cycles. On 4 lanes and one step a cycle the GEMMs bind, and no words
    are reserved."""
    model, image, config = _tiny_vit(7, 16)
    config = replace(config, k_per_cycle=2, macs_per_dsp=2)
    k, n = model.head.weight.shape
    top = config.wgt_depth - -(-n // 16) * k
    hidden = model.blocks[0].fc2.weight.shape[0]
    reserved = range(top - hidden, top)
    programs = {}
    for early in (True, False):
        if not early:
            monkeypatch.setattr(Lowering, "reserve_fc2", lambda *args: None)
        program = programs[early] = compile_model(config, model, image)
        assert program.overlap
        machine = Machine(config, program.image)
        run_program(machine, program.program_addr)
        np.testing.assert_array_equal(program.result(machine.dram), vit_logits(model, image),
                                      err_msg=f"FC2's tile loaded early: {early}")
    program = programs[True]
    instructions = [Instruction(opcode, fields) for opcode, fields in program.instructions]
    loads = _head_loads(program, config)
    for block in range(len(model.blocks)):
        early = [(section, words, beside) for section, words, beside in loads
                 if words.start in reserved and section.startswith(f"block {block} ")]
        assert sum(len(words) for _, words, _ in early) == hidden, early
        assert all(beside for section, _, beside in early
                   if section.endswith("attention")), early
        first_fc2 = next(item for item, section in zip(instructions, program.sections)
                         if section == f"block {block} mlp" and item.opcode == Opcode.GEMM
                         and item.k == hidden)
        assert first_fc2.b_addr == reserved.start
    # The far slot: early loads (FC2's tile, FC1's parameters, the head's weights) after a
    # softmax piece beside a GEMM.
    far = [index for index, item in enumerate(instructions)
           if item.opcode == Opcode.LOAD and instructions[index - 1].fields.get("beside")]
    assert far and all(instructions[index - 2].opcode == Opcode.GEMM
                       and instructions[index - 1].opcode == Opcode.SOFTMAX
                       and instructions[index].space in (Space.WGT, Space.PRM)
                       for index in far), far
    assert predict(programs[True]).cycles < predict(programs[False]).cycles
    # FC1's last GEMM, which no longer hosts FC2's tile, hosts block 1's LN1 parameters.
    ln1 = [index for index, (item, section) in enumerate(zip(instructions, program.sections))
           if item.opcode == Opcode.LOAD and item.space == Space.LNP
           and section == "block 0 mlp"]
    assert len(ln1) == 1 and instructions[ln1[0] - 1].opcode == Opcode.GEMM, ln1
    assert not any(item.opcode == Opcode.LOAD and item.space == Space.WGT
                   and item.spad_addr in reserved for item in
                   (Instruction(*pair) for pair in programs[False].instructions))
    model, image, config = _tiny_vit(7)
    top = config.wgt_depth - -(-n // 4) * k
    fc2 = [Instruction(*pair) for pair in compile_model(config, model, image).instructions
           if pair[0] == Opcode.GEMM and pair[1]["k"] == hidden]
    assert fc2 and all(gemm.b_addr < top - hidden for gemm in fc2), (top, fc2)
