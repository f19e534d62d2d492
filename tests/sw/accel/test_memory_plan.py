"""The compiler's memory plan, token counts per stage, and inputs patched into a program."""

import dataclasses

import numpy as np
import pytest

from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.hw.accel.isa import Opcode, Space
from vitforge.sw.accel.compiler import compile_blocks, compile_model, config_for
from vitforge.sw.accel.vit_plan import plan_blocks
from vitforge.sw.golden.accel.interpreter import Machine, run_program
from vitforge.sw.golden.encoder import encoder_block
from vitforge.sw.model.quantize import quantize_vit
from vitforge.sw.model.random_block import random_blocks
from vitforge.sw.model.vit import PRESETS, random_vit

CONFIG = AcceleratorConfig(array=4, act_depth=4096, wgt_depth=4096, prm_depth=1024,
                           lnp_depth=256, k_max=256)

#: The fields of each instruction that hold an ACT address.
ACT_FIELDS = {Opcode.GEMM: ("a_addr", "c_addr"), Opcode.SOFTMAX: ("src", "dst"),
              Opcode.LAYERNORM: ("src", "dst"), Opcode.ADD: ("x", "y", "dst"),
              Opcode.GELU: ("src", "dst"), Opcode.COPY_TO_WGT: ("src",),
              Opcode.TRANSPOSE_TO_WGT: ("src",), Opcode.STORE: ("spad_addr",)}


def make_blocks(seed, tokens=17, count=2):
    x, blocks, _ = random_blocks(np.random.default_rng(seed), tokens=tokens, dim=32, heads=2,
                                 hidden=64, count=count)
    return x, blocks


def run(program):
    machine = Machine(program.config, program.image)
    run_program(machine, program.program_addr)
    return program.result(machine.dram)


def act_addresses(opcode, fields):
    if opcode == Opcode.LOAD:
        return [fields["spad_addr"]] if fields["space"] == Space.ACT else []
    return [fields[name] for name in ACT_FIELDS.get(opcode, ())]


def tiny_model(seed=1):
    rng = np.random.default_rng(seed)
    return quantize_vit(random_vit(PRESETS["tiny"], rng, scale=0.2),
                        rng.uniform(0, 1, (4, 1, 8, 8)))


@pytest.mark.parametrize("compile_", ["blocks", "model"])
def test_every_activation_access_is_in_a_region_live_in_its_phase(compile_):
    if compile_ == "blocks":
        x, blocks = make_blocks(0, count=3)
        program = compile_blocks(CONFIG, blocks, x, block_tokens=(17, 9, 5))
    else:
        program = compile_model(CONFIG, tiny_model(), block_tokens=(17, 6))
    plan = program.plan
    assert tuple(phase.name for phase in plan.phases) == tuple(dict.fromkeys(
        section for section in program.sections if section != "trace"))
    regions = [region for region in plan.regions if region.space == Space.ACT]
    for index, ((opcode, fields), section) in enumerate(zip(program.instructions,
                                                             program.sections)):
        if section == "trace":
            continue
        phase = plan.phase(section)
        for address in act_addresses(opcode, fields):
            live = [r for r in regions if r.start <= address < r.end and phase in r.phases]
            assert len(live) == 1, (index, opcode, live, section)
        if opcode == Opcode.LOAD and fields["space"] == Space.WGT:
            assert fields["count"] <= plan.weight_words
        if opcode == Opcode.GEMM:
            assert fields["k"] <= plan.reduction_depth


def test_lifetimes_of_a_whole_model():
    program = compile_model(CONFIG, tiny_model())
    plan = program.plan
    names = [phase.name for phase in plan.phases]
    assert names == ["input", "patch embedding", "block 0 attention", "block 0 mlp",
                     "block 1 attention", "block 1 mlp", "head", "output"]

    def lifetime(name, space=Space.ACT):
        region = plan.region(space, name)
        return names[region.first], names[region.last]

    assert lifetime("patches") == ("input", "patch embedding")
    assert lifetime("scores") == ("block 0 attention", "block 1 attention")
    assert lifetime("mlp") == ("block 0 mlp", "block 1 mlp")
    assert lifetime("x") == ("patch embedding", "head")       # two blocks: x holds the result
    assert lifetime("x2") == ("block 0 mlp", "block 1 mlp")
    assert lifetime("logits") == ("head", "output")
    # FC2's parameters load with attention's and live through the MLP; so do FC1's, since
    # proj's GEMMs add the residual (two read ports): no ADD hosts their load. proj writes
    # x1, which lives from attention on, and no layer's result waits in ``sublayer``.
    assert CONFIG.act_read_ports == 2
    assert lifetime("block 1 qkv", Space.PRM) == ("block 1 attention", "block 1 attention")
    assert lifetime("block 1 fc2", Space.PRM) == ("block 1 attention", "block 1 mlp")
    assert lifetime("block 1 fc1", Space.PRM) == ("block 1 attention", "block 1 mlp")
    assert lifetime("x1") == ("input", "block 1 mlp")
    assert "sublayer" not in {region.name for region in plan.regions}
    unfused = compile_model(dataclasses.replace(CONFIG, act_read_ports=1), tiny_model()).plan
    assert [unfused.phases[unfused.region(Space.PRM, "block 1 fc1").first].name,
            unfused.phases[unfused.region(Space.ACT, "x1").first].name] == ["block 1 mlp", "input"]
    assert unfused.region(Space.ACT, "sublayer").words > 0
    assert plan.region(Space.PRM, "block 1 score").words == 17


def test_config_for_takes_its_sizes_from_the_plan():
    x, blocks = make_blocks(0, count=2)
    plan = plan_blocks(blocks, 17, 4)
    # Attention holds both token buffers (each is some block's source), normalized, qkv,
    # scores, probabilities, context and sublayer; the MLP's x1 and mlp reuse qkv's words.
    assert plan.depth(Space.ACT) == 5 * (8 * 32 + 2 * 17)
    # PRM: fc2's, then attention's qkv, proj, score and context, or later fc1's.
    assert (plan.depth(Space.PRM), plan.depth(Space.LNP)) == (32 + 4 * 32 + 17 + 16, 64)
    assert (plan.weight_words, plan.reduction_depth) == (96 // 4 * 32, 64)
    # With two read ports (the residual ADDs in proj's and FC2's write-back) FC1's are
    # loaded with attention's too, and x1 takes sublayer's place in attention.
    fused = plan_blocks(blocks, 17, 4, fused_after=lambda layer, tokens: True)
    assert fused.depth(Space.PRM) == 32 + 4 * 32 + 17 + 16 + 64
    assert fused.depth(Space.ACT) == plan.depth(Space.ACT)
    assert config_for(blocks, 17, 4) == AcceleratorConfig(
        array=4, act_depth=2048, wgt_depth=2048, prm_depth=512, lnp_depth=64, k_max=64)


def test_a_program_is_complete_when_built():
    x, blocks = make_blocks(0)
    program = compile_blocks(CONFIG, blocks, x)
    with pytest.raises(dataclasses.FrozenInstanceError):
        program.image = b""


@pytest.mark.parametrize("block_tokens", [(17, 9), (17, 17), (5, 1), (12, 4)])
def test_later_stages_on_fewer_tokens_equal_the_sliced_reference(block_tokens):
    x, blocks = make_blocks(2)
    program = compile_blocks(CONFIG, blocks, x, block_tokens=block_tokens)
    expected = x
    for block, tokens in zip(blocks, block_tokens):
        expected = encoder_block(expected[:tokens], block)
    np.testing.assert_array_equal(run(program), expected, err_msg=f"stages {block_tokens}")
    second_block = [f for (op, f), section in zip(program.instructions, program.sections)
                    if op == Opcode.SOFTMAX and section == "block 1 attention"]
    assert {f["length"] for f in second_block} == {block_tokens[1]}


def test_one_stage_with_all_tokens_is_the_default():
    x, blocks = make_blocks(3)
    assert compile_blocks(CONFIG, blocks, x, block_tokens=(17, 17)) == \
        compile_blocks(CONFIG, blocks, x)


@pytest.mark.parametrize("block_tokens, message", [
    ((17,), r"^block_tokens must have one count per block \(2\), not 1: \(17,\)$"),
    ((9, 12), r"^block_tokens must be positive and non-increasing from the 17 input tokens, "
              r"not 12 for block 1 after 9$"),
    ((18, 3), r"^block_tokens must be positive and non-increasing from the 17 input tokens, "
              r"not 18 for block 0 after 17$"),
    ((17, 0), r"^block_tokens must be positive and non-increasing from the 17 input tokens, "
              r"not 0 for block 1 after 17$"),
])
def test_bad_stage_token_counts_are_rejected(block_tokens, message):
    x, blocks = make_blocks(0)
    with pytest.raises(ValueError, match=message):
        compile_blocks(CONFIG, blocks, x, block_tokens=block_tokens)


def test_patched_tokens_give_the_image_of_a_fresh_compile():
    x, blocks = make_blocks(4)
    y = np.flipud(x).copy()
    program = compile_blocks(CONFIG, blocks, x, trace=True)
    assert program.with_input(y).image == compile_blocks(CONFIG, blocks, y, trace=True).image
    assert program.with_input(y).with_input(x) == program
    with pytest.raises(ValueError, match=r"^input tokens must be int8 of shape \(17, 32\), not "
                                         r"int16 of shape \(17, 32\)$"):
        program.with_input(x.astype(np.int16))
