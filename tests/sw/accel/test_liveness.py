"""ACT allocated by liveness (``sw/accel/plan.py``): regions live in a common phase never share
a word, every instruction touches only regions live in its phase, the depth is at most the sum
of the regions, and the programs still equal the golden model."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from vitforge.hw.accel.isa import ISA, Opcode, Space
from vitforge.sw.accel.compiler import compile_blocks, compile_model, config_for, \
    config_for_model
from vitforge.sw.accel.vit_plan import plan_model
from vitforge.sw.gemm.layout import tiles
from vitforge.sw.golden.accel.interpreter import Machine, run_program
from vitforge.sw.golden.encoder import encoder_block, pruned_encoder_blocks, pruned_vit_logits
from vitforge.sw.model.quantized_selector import random_pruned_vit
from vitforge.sw.model.random_block import random_blocks, random_integer_selectors, \
    sparsify_block
from vitforge.sw.model.selector import SelectorConfig
from vitforge.sw.model.vit import PRESETS, VitShape

#: Rows in blocks of 4, one block of 3 rows kept per group of 8 columns.
PATTERN = dict(cols=8, block_rows=4, kept_blocks=1, kept_rows=3)


def act_regions(plan):
    return [region for region in plan.regions if region.space == Space.ACT]


def check_allocation(plan):
    """No two ACT regions live in a common phase overlap, and the depth lies between the
    largest live set and the sum of the regions (what bump allocation needed)."""
    regions = act_regions(plan)
    for index, a in enumerate(regions):
        for b in regions[index + 1:]:
            if set(a.phases) & set(b.phases):
                assert a.end <= b.start or b.end <= a.start, (a, b)
    largest = max(sum(region.words for region in regions if phase in region.phases)
                  for phase in range(len(plan.phases)))
    assert largest <= plan.depth(Space.ACT) <= sum(region.words for region in regions)


def act_spans(opcode, fields, array):
    """The ACT spans an instruction reads and writes, by the rules table."""
    values = SimpleNamespace(**fields)
    for region in (*ISA[Opcode(opcode)].reads, *ISA[Opcode(opcode)].writes):
        span = region.span(values, array)
        if Space(span.space) == Space.ACT and span.end > span.first:
            yield span


def check_accesses(program):
    """Every ACT span of every instruction lies in one region live in the instruction's
    phase."""
    plan, regions = program.plan, act_regions(program.plan)
    for index, ((opcode, fields), section) in enumerate(zip(program.instructions,
                                                             program.sections)):
        if section == "trace":
            continue
        phase = plan.phase(section)
        for span in act_spans(opcode, fields, program.config.array):
            assert any(phase in region.phases and region.start <= span.first
                       and span.end <= region.end for region in regions), \
                (index, Opcode(opcode).name, section, span)


def run(program, values):
    image = program.with_input(values)
    machine = Machine(program.config, image.image)
    run_program(machine, image.program_addr)
    return image.read_output(machine.dram)


def random_case(seed):
    """Random blocks, array, stage token counts or selector stages, sparse layers or not:
    ``(x, blocks, array, options)`` for :func:`compile_blocks`."""
    rng = np.random.default_rng(seed)
    array, heads = int(rng.choice([4, 8])), int(rng.integers(1, 4))
    dim = heads * array * int(rng.integers(1, 3))
    tokens, count = int(rng.integers(2, 40)), int(rng.integers(1, 5))
    x, blocks, _ = random_blocks(rng, tokens=tokens, dim=dim, heads=heads,
                                 hidden=dim * int(rng.integers(1, 5)), count=count)
    if rng.random() < 0.3:
        blocks = [sparsify_block(rng, block, **PATTERN) for block in blocks]
    if count > 1 and tokens > 2 and rng.random() < 0.5:
        chosen = sorted(rng.choice(np.arange(1, count), int(rng.integers(1, count)),
                                   replace=False).tolist())
        config = SelectorConfig(blocks=tuple(chosen),
                                ratios=tuple(sorted(rng.uniform(0.1, 0.9, len(chosen)),
                                                    reverse=True)),
                                mode=str(rng.choice(["threshold", "topk"])))
        return x, blocks, array, dict(selectors=random_integer_selectors(rng, x, blocks,
                                                                          config))
    counts = np.minimum.accumulate(rng.integers(1, tokens + 1, count))
    return x, blocks, array, dict(block_tokens=tuple(int(n) for n in counts))


def reference(x, blocks, selectors=None, block_tokens=None):
    if selectors is not None:
        return pruned_encoder_blocks(x, blocks, selectors)[0]
    for block, tokens in zip(blocks, block_tokens):
        x = encoder_block(x[:tokens], block)
    return x


@pytest.mark.parametrize("seed", range(50))
def test_random_block_stacks_never_alias_live_regions_and_equal_the_golden_blocks(seed):
    x, blocks, array, options = random_case(seed)
    config = config_for(blocks, len(x), array, **options)
    program = compile_blocks(config, blocks, x, **options)
    check_allocation(program.plan)
    check_accesses(program)
    expected = reference(x, blocks, **options)
    np.testing.assert_array_equal(run(program, x)[:len(expected)], expected,
                                  err_msg=f"seed {seed}: {options}")


# 25 patches, 4 blocks, 2 heads of 8 channels (as test_pruned_program.py).
SHAPE = VitShape(image_size=10, patch_size=2, in_channels=1, dim=16, depth=4, heads=2, mlp=32,
                 classes=3)


@pytest.mark.parametrize("mode, array, seed, sparse", [("threshold", 4, 1, False),
                                                       ("topk", 8, 2, True)])
def test_whole_models_with_selectors_never_alias_live_regions(mode, array, seed, sparse):
    stages = SelectorConfig(blocks=(0, 2, 3), ratios=(0.7, 0.49, 0.1), mode=mode)
    model, selectors, patches = random_pruned_vit(SHAPE, stages, seed)
    if sparse:
        rng = np.random.default_rng(seed)
        model = replace(model, blocks=tuple(sparsify_block(rng, block, **PATTERN)
                                            for block in model.blocks))
    config = config_for_model(model, array, selectors=selectors)
    pruned = compile_model(config, model, selectors=selectors)
    for program in (pruned, compile_model(config, model)):
        check_allocation(program.plan)
        check_accesses(program)
    for index, image in enumerate(patches[:2]):
        expected, _ = pruned_vit_logits(model, image, selectors)
        np.testing.assert_array_equal(run(pruned, image)[0], expected,
                                      err_msg=f"{mode}, image {index}")


def shape_only_model(shape):
    """What :func:`plan_model` reads of a model of ``shape``: shapes, no weights."""
    def layer(k, n):
        return SimpleNamespace(weight=np.zeros((k, n), np.int8))

    dim, hidden = shape.dim, shape.mlp
    block = SimpleNamespace(dim=dim, hidden=hidden, heads=shape.heads,
                            head_dim=dim // shape.heads, qkv=layer(dim, 3 * dim),
                            proj=layer(dim, dim), fc1=layer(dim, hidden), fc2=layer(hidden, dim))
    return SimpleNamespace(shape=shape, blocks=(block,) * shape.depth,
                           patch=layer(shape.patch_features, dim),
                           head=layer(dim, shape.classes))


@pytest.mark.parametrize("name", ["deit-tiny", "deit-small"])
@pytest.mark.parametrize("array", [16, 32])
def test_deit_needs_the_attention_phase_and_both_token_buffers(name, array):
    shape = PRESETS[name]
    plan = plan_model(shape_only_model(shape), array)
    check_allocation(plan)
    # Attention holds x, x2 (each some block's source), normalized, sublayer, context, qkv
    # (3 dim), scores and probabilities (tokens each); the MLP phase (9 dim) is smaller.
    depth = tiles(shape.tokens, array) * (8 * shape.dim + 2 * shape.tokens)
    assert plan.depth(Space.ACT) == depth
    assert 2 * depth < sum(region.words for region in act_regions(plan))
