"""Compiled programs with token selectors on the golden interpreter == the pruned golden model."""

from dataclasses import replace

import numpy as np
import pytest

from vitforge.errors import ConfigError, ProgramError
from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.hw.accel.isa import ISA, LiveState, Opcode, encode
from vitforge.sw.accel.compiler import compile_model, config_for_model
from vitforge.sw.accel.selection import select_stages
from vitforge.sw.golden.accel.interpreter import Machine, run_program
from vitforge.sw.golden.encoder import pruned_vit_logits
from vitforge.sw.model.quantized_selector import random_pruned_vit
from vitforge.sw.model.selector import SelectorConfig, keep_count
from vitforge.sw.model.vit import VitShape

# 25 patches (26 tokens: not a multiple of the array), 4 blocks, 2 heads of 8 channels.
SHAPE = VitShape(image_size=10, patch_size=2, in_channels=1, dim=16, depth=4, heads=2, mlp=32,
                 classes=3)
#: A stage before block 0 (the first QKV weights are then the stage's to load) and two
#: live stages.
STAGES = SelectorConfig(blocks=(0, 2, 3), ratios=(0.7, 0.49, 0.1))


def setup(mode, seed):
    return random_pruned_vit(SHAPE, replace(STAGES, mode=mode), seed)


def run(program, patches, config):
    """The program on one image: (logits, the live registers at the end)."""
    image = program.with_input(patches)
    machine = Machine(config, image.image)
    run_program(machine, image.program_addr)
    return image.read_output(machine.dram)[0], machine.live


@pytest.mark.parametrize("mode, array, seed", [("threshold", 4, 1), ("topk", 8, 2),
                                               ("threshold", 8, 3), ("topk", 6, 4)])
def test_a_pruned_program_equals_the_pruned_golden_model(mode, array, seed):
    model, quantized, patches = setup(mode, seed)
    config = config_for_model(model, array, selectors=quantized)
    program = compile_model(config, model, selectors=quantized)
    counts = set()
    for index, image in enumerate(patches):
        expected, kept = pruned_vit_logits(model, image, quantized)
        logits, live = run(program, image, config)
        np.testing.assert_array_equal(
            logits, expected, err_msg=f"{mode}, array {array}, seed {seed}, image {index}: "
                                      f"kept {[k.tolist() for k in kept]}")
        assert live.alive == len(kept[-1])
        counts.add(tuple(len(k) for k in kept))
    if mode == "topk":
        alive = [min(keep_count(r, SHAPE.patches), SHAPE.patches) for r in STAGES.ratios]
        assert counts == {tuple(alive)}
    else:
        assert len(counts) > 1, f"seed {seed}: every image kept {counts}"


def test_a_pruned_program_on_the_cascade_array_equals_the_pruned_golden_model():
    # Three heads: the head predictor's operands (3 head means, 1 hidden unit) are odd, and
    # two steps of K per cycle read aligned pairs of words, so the compiler pads them.
    shape = replace(SHAPE, dim=24, heads=3)
    model, quantized, patches = random_pruned_vit(shape, STAGES, 4)
    config = replace(config_for_model(model, 4, selectors=quantized), macs_per_dsp=2,
                     k_per_cycle=2)
    program = compile_model(config, model, selectors=quantized)
    for index, image in enumerate(patches):
        expected, kept = pruned_vit_logits(model, image, quantized)
        logits, _ = run(program, image, config)
        np.testing.assert_array_equal(logits, expected,
                                      err_msg=f"seed 4, image {index}: kept "
                                              f"{[k.tolist() for k in kept]}")
    # Four steps: the predictor's last layer (a quarter of the 8-channel head) is 2 wide.
    with pytest.raises(ConfigError, match=r"^the head dim must be a multiple of 16 for a "
                                          r"token selector on k_per_cycle=4 .*, not 8$"):
        compile_model(replace(config, k_per_cycle=4), model, selectors=quantized)


@pytest.mark.parametrize("act_read_ports", [2, 1])
def test_live_flags_start_after_the_first_select_and_cover_every_token_count(act_read_ports):
    """With one ACT read port Q K^T reads a copy of K^T in WGT, whose tiles are live too,
    and the residual ADDs are instructions of their own (with two, proj's and FC2's GEMMs
    add them, on their live token tiles)."""
    model, quantized, _ = setup("threshold", 1)
    config = replace(config_for_model(model, 4, selectors=quantized),
                     act_read_ports=act_read_ports)
    program = compile_model(config, model, selectors=quantized)
    selects = [index for index, (opcode, _) in enumerate(program.instructions)
               if opcode == Opcode.TOKEN_SELECT]
    assert len(selects) == len(STAGES.blocks)
    before = program.instructions[:selects[0] + 1]
    assert all(fields.get("live", 0) == 0 for _, fields in before)
    flagged = {opcode for opcode, fields in program.instructions[selects[0] + 1:]
               if fields.get("live", 0)}
    assert flagged == {Opcode.GEMM, Opcode.SOFTMAX, Opcode.LAYERNORM,
                       Opcode.TRANSPOSE_TO_WGT, Opcode.TOKEN_MEAN, Opcode.TOKEN_SELECT,
                       *[Opcode.COPY_TO_WGT, Opcode.ADD] * (act_read_ports == 1)}
    # Not every instruction after it is flagged: the head GEMM runs on one tile.
    assert any(opcode == Opcode.GEMM and not fields["live"]
               for opcode, fields in program.instructions[selects[0] + 1:])


def test_topk_stage_counts_are_exact_and_threshold_counts_are_the_most():
    _, quantized, _ = setup("topk", 2)
    stages, counts = select_stages(quantized, SHAPE)
    keeps = [keep_count(ratio, SHAPE.patches) for ratio in STAGES.ratios]
    assert [stage.keep for stage in stages] == keeps
    assert [stage.alive for stage in stages] == [25, keeps[0], keeps[1]]
    # Each stage that drops adds a package token: 1 + kept + packages.
    assert counts == (1 + keeps[0] + 1, 1 + keeps[0] + 1, 1 + keeps[1] + 2, 1 + keeps[2] + 3)
    _, threshold, _ = setup("threshold", 1)
    assert select_stages(threshold, SHAPE)[1] == (SHAPE.tokens,) * SHAPE.depth


def test_selectors_of_another_shape_are_refused():
    model, quantized, _ = setup("topk", 2)
    other = VitShape(image_size=10, patch_size=2, in_channels=1, dim=16, depth=4, heads=4,
                     mlp=32, classes=3)
    wrong = random_pruned_vit(other, STAGES, 3, images=1)[1]
    with pytest.raises(ConfigError, match=r"selectors stage 0 must have heads=2 of 8 channels, "
                                          r"not heads=4 of 4"):
        compile_model(config_for_model(model, 4), model, selectors=wrong)
    deep = replace(quantized, config=replace(STAGES, blocks=(0, 2, 4)))
    with pytest.raises(ConfigError, match=r"blocks must be below the model's depth=4, not "
                                          r"\(0, 2, 4\)"):
        compile_model(config_for_model(model, 4), model, selectors=deep)


def test_block_tokens_and_selectors_together_are_refused():
    model, quantized, _ = setup("topk", 2)
    with pytest.raises(ConfigError, match="block_tokens must be None when selectors prune"):
        compile_model(config_for_model(model, 4), model, block_tokens=[26, 26, 20, 20],
                      selectors=quantized)


def _machine(config, *instructions):
    words = [*instructions, encode(Opcode.DONE)]
    return Machine(config, b"".join(word.to_bytes(32, "little") for word in words))


SMALL = AcceleratorConfig(array=4, act_depth=256, wgt_depth=64, prm_depth=16, lnp_depth=16,
                          k_max=16)


def test_a_live_value_beyond_its_field_stops_the_program():
    config = SMALL
    bit = [name for name, _ in ISA[Opcode.GELU].live].index("count")
    gelu = encode(Opcode.GELU, src=0, dst=64, count=12, tile_words=4, live=1 << bit)
    machine = _machine(config, gelu)
    machine.live = LiveState.of(tokens=13, alive=3, array=4)        # 4 tiles x 4 words > 12
    with pytest.raises(ProgramError, match=r"instruction 0 \(GELU\): live values exceed the "
                                           r"fields \['count'\]"):
        run_program(machine, 0)
    machine = _machine(config, gelu)
    machine.live = LiveState.of(tokens=9, alive=3, array=4)         # 3 tiles x 4 words
    machine.table[:] = np.arange(-128, 128)[::-1]
    machine.act[:12] = np.arange(48).reshape(12, 4)
    run_program(machine, 0)
    np.testing.assert_array_equal(machine.act[64:76], machine.table[
        machine.act[:12].view(np.uint8)])
    np.testing.assert_array_equal(machine.act[76:80], 0)             # beyond the live count


def test_a_live_value_of_zero_is_an_empty_field():
    machine = _machine(SMALL, encode(Opcode.GELU, src=0, dst=64, count=12, tile_words=4,
                                      live=1))
    with pytest.raises(ProgramError, match="live values make a field of"):
        run_program(machine, 0)                       # T = 0 before any TOKEN_SELECT


@pytest.mark.parametrize("mode, array, seed", [("threshold", 4, 11), ("topk", 8, 12)])
def test_pruned_encoder_blocks_equal_the_golden_blocks(mode, array, seed):
    """Random integer blocks and selectors (``vitforge block --prune``): the kept rows of
    the program's output are the golden model's, row 0 (the class token) first."""
    from vitforge.sw.accel.compiler import compile_blocks, config_for
    from vitforge.sw.golden.encoder import pruned_encoder_blocks
    from vitforge.sw.model.random_block import random_blocks, random_integer_selectors

    rng = np.random.default_rng(seed)
    x, blocks, _ = random_blocks(rng, tokens=30, dim=16, heads=2, hidden=32, count=3)
    config = SelectorConfig(blocks=(1, 2), ratios=(0.7, 0.4), mode=mode)
    selectors = random_integer_selectors(rng, x, blocks, config)
    accelerator = config_for(blocks, 30, array, selectors=selectors)
    program = compile_blocks(accelerator, blocks, x, selectors=selectors)
    counts = set()
    for index in range(3):
        tokens = x if index == 0 else random_blocks(
            np.random.default_rng(seed + index), tokens=30, dim=16, heads=2, hidden=32,
            count=1)[0]
        expected, kept = pruned_encoder_blocks(tokens, blocks, selectors)
        image = program.with_input(tokens)
        machine = Machine(accelerator, image.image)
        run_program(machine, image.program_addr)
        output = image.read_output(machine.dram)
        np.testing.assert_array_equal(output[:len(expected)], expected,
                                      err_msg=f"{mode}, seed {seed}, input {index}")
        assert machine.live.tokens == len(expected)
        counts.add(tuple(len(stage) for stage in kept))
    if mode == "topk":
        assert counts == {(21, 12)}
    else:
        assert all(0 < a < 29 for a, _ in counts), counts
