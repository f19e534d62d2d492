"""ACT allocated by liveness (``sw/accel/plan.py``): regions live in a common phase never share
a word, pinned regions lie in their ACT banks, every instruction touches only regions live in
its phase, the depth is at most the sum of the regions, and the programs still equal the
golden model."""

from dataclasses import replace
from types import SimpleNamespace

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from vitforge.errors import ConfigError
from vitforge.hw.accel.isa import ISA, Instruction, Opcode, Space
from vitforge.sw.accel.compiler import compile_blocks, compile_model, config_for, \
    config_for_model
from vitforge.sw.accel.vit_plan import ACT_BANKS, HEAD_BUFFERS, plan_blocks, plan_model
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
    """No two ACT regions live in a common phase overlap, pinned regions lie in their banks,
    and the depth lies between the largest live set and the sum of the regions (what bump
    allocation needed), that from the start of bank 1 in a banked plan."""
    regions = act_regions(plan)
    for index, a in enumerate(regions):
        for b in regions[index + 1:]:
            if set(a.phases) & set(b.phases):
                assert a.end <= b.start or b.end <= a.start, (a, b)
    for region in regions:
        assert region.bank is None or plan.bank_start is not None, region
        assert region.bank != 0 or region.end <= plan.bank_start, region
        assert region.bank != 1 or region.start >= plan.bank_start, region
    largest = max(sum(region.words for region in regions if phase in region.phases)
                  for phase in range(len(plan.phases)))
    assert largest <= plan.depth(Space.ACT) <= (plan.bank_start or 0) + sum(
        region.words for region in regions)


def act_spans(opcode, fields, array):
    """The ACT spans an instruction reads and writes, by the rules table."""
    values = Instruction(Opcode(opcode), fields)
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
    # config_for's ACT holds the banked plan: heads overlap unless the counts are live
    # (threshold selectors; top-k ones keep counts the compiler knows).
    live = "selectors" in options and options["selectors"].config.mode == "threshold"
    assert program.overlap == (not live and blocks[0].heads > 1), program.sequential_reason
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


def shape_only_layer(k, n):
    """What a plan reads of a ``k x n`` linear layer: its weights' shape."""
    return SimpleNamespace(weight=np.zeros((k, n), np.int8))


def shape_only_block(dim, heads, hidden):
    """What :func:`plan_blocks` reads of an encoder block: shapes, no weights."""
    return SimpleNamespace(dim=dim, hidden=hidden, heads=heads, head_dim=dim // heads,
                           qkv=shape_only_layer(dim, 3 * dim), proj=shape_only_layer(dim, dim),
                           fc1=shape_only_layer(dim, hidden), fc2=shape_only_layer(hidden, dim))


def shape_only_model(shape):
    """What :func:`plan_model` reads of a model of ``shape``: shapes, no weights."""
    block = shape_only_block(shape.dim, shape.heads, shape.mlp)
    return SimpleNamespace(shape=shape, blocks=(block,) * shape.depth,
                           patch=shape_only_layer(shape.patch_features, shape.dim),
                           head=shape_only_layer(shape.dim, shape.classes))


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


@st.composite
def banked_cases(draw):
    """Shape-only blocks, their tokens, stage counts and array, and a bank start."""
    lanes = draw(st.sampled_from([2, 4, 8, 16, 40]))
    heads = draw(st.integers(1, 4))
    dim = heads * draw(st.integers(1, 24))
    blocks = [shape_only_block(dim, heads, dim * draw(st.integers(1, 4)))
              for _ in range(draw(st.integers(1, 3)))]
    tokens = draw(st.integers(1, 100))
    counts = [tokens]
    for _ in blocks:
        counts.append(draw(st.integers(1, counts[-1])))
    return blocks, tokens, lanes, tuple(counts[1:]), 1 << draw(st.integers(4, 15))


@settings(max_examples=300, deadline=None)
@given(banked_cases())
def test_banked_plans_never_alias_live_regions_and_keep_pinned_ones_in_their_banks(case):
    blocks, tokens, lanes, counts, bank_start = case
    unbanked = plan_blocks(blocks, tokens, lanes, counts)
    try:
        plan = plan_blocks(blocks, tokens, lanes, counts, bank_start=bank_start)
    except ConfigError:
        # Only when bank 0 cannot hold its pinned regions, which attention needs at once.
        pinned = sum(unbanked.region(Space.ACT, name).words * (1 + (name in HEAD_BUFFERS))
                     for name, bank in ACT_BANKS.items() if bank == 0)
        assert pinned > bank_start
        return
    check_allocation(plan)
    assert {region.name: region.bank for region in act_regions(plan)
            if region.bank is not None} == ACT_BANKS
    for name in HEAD_BUFFERS:
        assert plan.region(Space.ACT, name).words == 2 * unbanked.region(Space.ACT, name).words
    config = config_for(blocks, tokens, lanes, block_tokens=counts)
    if plan.depth(Space.ACT) <= 2 * bank_start:    # an ACT that splits at bank_start holds it
        plan.check(replace(config, act_depth=max(plan.depth(Space.ACT), bank_start + 1)))
    if blocks[0].heads > 1:
        # config_for's ACT holds the plan banked at its own bank start.
        plan_blocks(blocks, tokens, lanes, counts, bank_start=config.act_bank_start).check(config)
    else:       # nothing to overlap: the smallest power of two that holds the unbanked plan
        assert config.act_depth // 2 < max(unbanked.depth(Space.ACT), 16) <= config.act_depth
