"""Where the compiler puts loads: beside a GEMM or row instruction, in chunks that hide them."""

from dataclasses import replace

import numpy as np
import pytest

from vitforge.boards.presets import PRESETS as BOARD_PRESETS
from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.hw.accel.isa import Instruction, Opcode, Space
from vitforge.sw.accel import compiler
from vitforge.sw.accel.compiler import compile_blocks, compile_model, config_for_model
from vitforge.sw.accel.cycles import (FAR_START_DELAY, SIDE_START_DELAY, _may_run_beside,
                                      predict, program_cycles, unit_cycles)
from vitforge.sw.accel.lowering import Lowering, _chunk_tiles
from vitforge.sw.accel.vit_plan import LAYERNORM_BANKS
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
    add the residuals): each later block's LN1 parameters load beside, and hide behind, the
    first token tile's GEMM of the last FC2 chunk of the block before (FC1's last GEMM hosts
    FC2's first weights: here the GEMMs bind, and FC2's tile does not load early; that LN1
    runs beside FC2's later tiles), LN2's after head 0's Q K^T (which hosts no softmax),
    and FC1's parameters with attention's GEMMs."""
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
            if host.opcode != Opcode.GEMM or host.b_act:
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
        ln1, ln2 = (Opcode.GEMM, 0), (Opcode.GEMM, 1)
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


def _tiny_vit(seed, array=4, classes=10):
    """A random quantized ``tiny`` ViT of ``classes`` classes, an image's patches and the
    smallest accelerator of ``array`` lanes for it."""
    rng = np.random.default_rng(seed)
    model = quantize_vit(random_vit(replace(PRESETS["tiny"], classes=classes), rng, scale=0.2),
                         rng.uniform(0, 1, (4, 1, 8, 8)))
    image = rng.integers(-128, 128, (model.shape.patches, model.shape.patch_features),
                         dtype=np.int8)
    return model, image, config_for_model(model, array)


def _with_and_without(monkeypatch, method, model, image, config):
    """``model`` compiled for ``config`` on ``image`` with :class:`Lowering`'s ``method``
    (``True``) and with it doing nothing (``False``); each program's logits checked
    against the golden model on the interpreter."""
    programs = {}
    for used in (True, False):
        if not used:
            monkeypatch.setattr(Lowering, method, lambda *args: None)
        program = programs[used] = compile_model(config, model, image)
        machine = Machine(config, program.image)
        run_program(machine, program.program_addr)
        np.testing.assert_array_equal(program.result(machine.dram), vit_logits(model, image),
                                      err_msg=f"{method}: {used}")
    return programs


@pytest.mark.parametrize("seed", [5, 6])
def test_the_head_s_weights_load_early_into_words_above_the_halves(seed, monkeypatch):
    """A random ViT of 200 classes: the head's weights load, in pieces, into the words
    above two WGT halves, each beside a GEMM that it hides, so the head phase loads none;
    every other weight load fits a half. The logits are the golden model's, in fewer cycles
    than with the head loading its weights with the head's GEMM (of 10 classes they would
    hide beside the last FC2's GEMMs, and the reserved words only narrow the halves)."""
    model, image, config = _tiny_vit(seed, classes=200)
    k, n = model.head.weight.shape
    reserved = range(config.wgt_depth - -(-n // 4) * k, config.wgt_depth)
    half = reserved.start // 2
    programs = _with_and_without(monkeypatch, "prefetch_head", model, image, config)
    loads = _head_loads(programs[True], config)
    prefetched = [load for load in loads if load[1].start in reserved]
    assert prefetched and all(beside and section != "head"
                              for section, _, beside in prefetched), prefetched
    assert sum(len(words) for _, words, _ in prefetched) == len(reserved)
    assert not [load for load in loads if load[0] == "head"]
    assert all(words.stop <= half or half <= words.start and words.stop <= 2 * half
               for _, words, _ in loads if words.start not in reserved), (half, loads)
    assert [load for load in _head_loads(programs[False], config) if load[0] == "head"]
    assert predict(programs[True]).cycles < predict(programs[False]).cycles


def test_a_layer_wider_than_a_wgt_half_loads_in_equal_chunks():
    """The tiny ViT on 4 lanes with the head's weights reserved above the halves: FC2's
    eight column tiles of 128 words no longer fit a half of 976 words; they run in two
    chunks of four tiles (not seven and one), the second one token tile at a time, and
    the logits are the golden model's."""
    model, image, config = _tiny_vit(5)
    program = compile_model(config, model, image)
    machine = Machine(config, program.image)
    run_program(machine, program.program_addr)
    np.testing.assert_array_equal(program.result(machine.dram), vit_logits(model, image))
    hidden = model.blocks[0].fc2.weight.shape[0]
    chunks = [(fields["n"], fields["m_tiles"])
              for (opcode, fields), section in zip(program.instructions, program.sections)
              if opcode == Opcode.GEMM and section == "block 0 mlp" and fields["k"] == hidden]
    assert chunks == [(16, 5)] + [(16, 1)] * 5, chunks


def test_fc2_s_first_tile_loads_early_beside_attention_s_gemms(monkeypatch):
    """A random ViT whose heads overlap, on 16 lanes taking two steps of K a cycle, where
    the weight stream binds FC1 (17 tokens: a column tile's GEMM takes 32 cycles, its load
    32): each block's FC2 first column tile loads into WGT words reserved for it below the
    head's, beside attention's GEMMs, and FC2's first GEMM reads it there; early loads take
    the far slot (after a softmax piece beside a GEMM), and FC1's last GEMM hosts the next
    block's LN1 parameters; the logits are the golden model's, as without the reserved
    words. On two blocks of DeiT-S's shape on the ``zcu102`` preset, where FC1's last chunk
    does not hide FC2's tile, the reserved words take fewer cycles. On 4 lanes and one step
    a cycle the GEMMs bind, and no words are reserved."""
    model, image, config = _tiny_vit(7, 16)
    config = replace(config, k_per_cycle=2, macs_per_dsp=2)
    k, n = model.head.weight.shape
    top = config.wgt_depth - -(-n // 16) * k
    hidden = model.blocks[0].fc2.weight.shape[0]
    reserved = range(top - hidden, top)
    programs = _with_and_without(monkeypatch, "reserve_fc2", model, image, config)
    assert programs[True].overlap and programs[False].overlap
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
    # softmax piece beside a GEMM; the next block's attention parameters and QKV weights
    # after a piece of its LN1 beside a token tile of FC2 (never LNP there).
    far = [index for index, item in enumerate(instructions)
           if item.opcode == Opcode.LOAD and instructions[index - 1].fields.get("beside")]
    rows = {(instructions[index - 1].opcode, program.sections[index]) for index in far}
    assert rows == {(opcode, f"block {block} {phase}") for block in (0, 1)
                    for opcode, phase in ((Opcode.SOFTMAX, "attention"),
                                          (Opcode.LAYERNORM, "mlp"))}, rows
    assert all(instructions[index - 2].opcode == Opcode.GEMM
               and instructions[index].space in (Space.WGT, Space.PRM) for index in far), far
    x, blocks, _ = random_blocks(np.random.default_rng(3), tokens=197, dim=384, heads=6,
                                 hidden=1536, count=2)
    zcu102 = BOARD_PRESETS["zcu102"].accelerator
    monkeypatch.undo()
    reserved_cycles = predict(compile_blocks(zcu102, blocks, x)).cycles
    monkeypatch.setattr(Lowering, "reserve_fc2", lambda *args: None)
    assert reserved_cycles < predict(compile_blocks(zcu102, blocks, x)).cycles
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


def test_the_next_block_s_ln1_runs_beside_fc2_s_last_token_tiles(monkeypatch):
    """A random ViT of five token tiles on 4 lanes, its plan pinned to LAYERNORM_BANKS:
    block 1's LN1 runs in block 0's MLP, one LAYERNORM per token tile, each but the last
    beside the GEMM of FC2's last chunk for the next tile (and reading the tile FC2 wrote
    before), the last alone after them; block 1's attention runs no LayerNorm and loads none
    of its own parameters. The logits are the golden model's, in fewer cycles than with
    LN1 at the start of its block."""
    model, image, config = _tiny_vit(5)
    programs = _with_and_without(monkeypatch, "pipelines_layernorm", model, image, config)
    program = programs[True]
    plan = program.plan
    assert {name: plan.region(Space.ACT, name).bank for name in LAYERNORM_BANKS} == \
        LAYERNORM_BANKS
    instructions = [Instruction(opcode, fields) for opcode, fields in program.instructions]
    sections = program.sections
    token_tiles = -(-model.shape.tokens // config.array)
    dim = model.shape.dim
    pieces = [index for index, (item, section) in enumerate(zip(instructions, sections))
              if item.opcode == Opcode.LAYERNORM and section == "block 0 mlp"
              and item.m_tiles == 1]
    assert len(pieces) == token_tiles, pieces
    result = plan.region(Space.ACT, "x2").start
    for tile, index in enumerate(pieces):
        piece = instructions[index]
        assert (piece.src, piece.dst) == (result + tile * dim,
                                          plan.region(Space.ACT, "normalized").start
                                          + tile * dim)
        if tile + 1 < token_tiles:
            host = instructions[index - 1]
            assert piece.beside and (host.opcode, host.m_tiles, host.residual) == (
                Opcode.GEMM, 1, 1)
            assert host.c_addr >= result + (tile + 1) * dim, (host, piece)
        else:
            assert not piece.beside
    block1 = [item for item, section in zip(instructions, sections)
              if section == "block 1 attention"]
    assert Opcode.LAYERNORM not in {item.opcode for item in block1}
    attention_prm = [plan.region(Space.PRM, f"block 1 {name}")
                     for name in ("qkv", "proj", "score", "context")]
    assert not [item for item in block1 if item.opcode == Opcode.LOAD
                and item.space == Space.PRM and any(
                    region.start < item.spad_addr + item.count and item.spad_addr < region.end
                    for region in attention_prm)]
    assert predict(programs[True]).cycles < predict(programs[False]).cycles


def test_each_block_runs_the_next_layernorm_beside_fc2_only_where_that_is_faster(
        monkeypatch):
    """Four blocks of DeiT-S's shape on the ``zcu102`` preset, the first two on 197 tokens
    (five token tiles), the last two on 80 (two): block 0's FC2 runs block 1's LN1 beside
    its last token tiles; blocks 1 and 2 keep the next LN1 alone (on two tiles the far
    slots of FC2's tail leave the next block's parameters and QKV weights less DMA time
    than the LayerNorm saves). That program takes fewer cycles than every LayerNorm beside
    FC2 and than none."""
    x, blocks, _ = random_blocks(np.random.default_rng(3), tokens=197, dim=384, heads=6,
                                 hidden=1536, count=4)
    zcu102, counts = BOARD_PRESETS["zcu102"].accelerator, (197, 197, 80, 80)
    program = compile_blocks(zcu102, blocks, x, block_tokens=counts)
    extremes = []
    for beside in (None, frozenset()):
        monkeypatch.setattr(compiler, "_fastest", lambda lower: lower(beside))
        extremes.append(compile_blocks(zcu102, blocks, x, block_tokens=counts))
    assert [extreme.layernorms_beside for extreme in extremes] == [(0, 1, 2), ()]
    assert program.layernorms_beside == (0,)
    assert predict(program).cycles < min(predict(extreme).cycles for extreme in extremes)
