"""The integer token selector: quantization, the golden scoring, decision and package token."""

from dataclasses import replace
from fractions import Fraction
import math

import numpy as np
import pytest

from vitforge.errors import ConfigError, ConfigTypeError
from vitforge.sw.golden import encoder
from vitforge.sw.golden.encoder import encoder_block, pruned_vit_logits, vit_logits
from vitforge.sw.golden.gemm.requantize import requantize
from vitforge.sw.golden.selector import (SelectorScores, choose, global_bias, package_token,
                                         round_div, select, selector_scores)
from vitforge.sw.model.quantize import quantize_tensor, quantize_vit
from vitforge.sw.model.quantized import QuantizedLinear
from vitforge.sw.model.quantized_selector import QuantizedSelectors, quantize_selectors
from vitforge.sw.model.selector import SelectorConfig, keep_count, random_selectors
from vitforge.sw.model.vit import PRESETS, VitShape, patchify, random_vit
from vitforge.hw.numerics import SIGMOID_ONE
from vitforge.sw.params.sigmoid import sigmoid_table

# 16 patches, 3 blocks, 2 heads of d = 8 channels.
SHAPE = VitShape(image_size=8, patch_size=2, in_channels=1, dim=16, depth=3, heads=2, mlp=32,
                 classes=3)
STAGES = SelectorConfig(blocks=(1, 2), ratios=(0.7, 0.49))


def setup(config=STAGES, difference=None, shape=SHAPE, seed=0):
    """A random float model and selectors, quantized; and int8 patches of 4 test images.

    ``difference``, if given, replaces every stage's score difference
    ``keep - drop`` by that int8 constant (zero weights, bias ``difference``).
    """
    rng = np.random.default_rng(seed)
    vit = random_vit(shape, rng, scale=0.3)
    images = rng.uniform(-1, 1, (12, 1, shape.image_size, shape.image_size))
    selectors = random_selectors(shape, config, np.random.default_rng(seed + 1), scale=0.5)
    model = quantize_vit(vit, images[:8])
    quantized = quantize_selectors(vit, selectors, config, images[:8], model)
    if difference is not None:
        quantized = constant(quantized, [difference] * len(config.blocks))
    patches = quantize_tensor(patchify(images[8:], shape), model.input_scale)
    return model, quantized, patches


def constant(quantized, differences):
    """``quantized`` with stage ``s``'s score difference the constant ``differences[s]``."""
    d = quantized.stages[0].head_dim
    return QuantizedSelectors(config=quantized.config, stages=[
        replace(stage, difference=QuantizedLinear(
            weight=np.zeros((d // 4, 1), np.int8), bias=np.array([value]),
            multiplier=np.array([1]), shift=np.array([0])))
        for stage, value in zip(quantized.stages, differences)])


def test_sigmoid_table_is_q15_with_one_half_exact_at_zero():
    table = sigmoid_table(0.05).astype(np.int64)
    assert table.dtype == np.int64 and table.shape == (256,)
    assert table[0] == SIGMOID_ONE // 2
    assert table[127] == round(SIGMOID_ONE / (1 + math.exp(-127 * 0.05)))
    assert table[128] == round(SIGMOID_ONE / (1 + math.exp(128 * 0.05)))
    order = np.r_[np.arange(128, 256), np.arange(0, 128)]       # -128 .. 127
    assert (np.diff(table[order]) >= 0).all()
    assert sigmoid_table(1.0)[127] == SIGMOID_ONE and sigmoid_table(1.0)[128] == 0
    with pytest.raises(ConfigError, match="scale_in must be positive and finite, not 0.0"):
        sigmoid_table(0.0)


def test_round_div_rounds_half_up():
    assert round_div([5, -5, 7, -7, 6, 0], 2).tolist() == [3, -2, 4, -3, 3, 0]
    assert round_div([1, 2, -1, -2], 3).tolist() == [0, 1, 0, -1]
    with pytest.raises(ConfigError, match="denominator must be positive, not 0"):
        round_div(1, 0)


def _requantize_explicit(local, global_half, layer, global_weight):
    """fc1 on ``[local | exact mean of the global half]``, broadcast, with rational sums."""
    count = len(local)
    mean = [Fraction(int(s), count) for s in global_half.astype(np.int64).sum(axis=0)]
    acc = np.zeros((count, layer.weight.shape[1]), np.int64)
    for t in range(count):
        for n in range(layer.weight.shape[1]):
            exact = sum(int(local[t, c]) * int(layer.weight[c, n]) for c in range(len(mean)))
            exact += sum(mean[c] * int(global_weight[c, n]) for c in range(len(mean)))
            acc[t, n] = math.floor(exact + Fraction(1, 2))              # half up, once
    return requantize(acc, layer.bias, layer.multiplier, layer.shift)


@pytest.mark.parametrize("count", [1, 7, 12])
def test_the_per_image_bias_equals_fc1_on_the_broadcast_exact_mean(count):
    model, quantized, _ = setup()
    selector = quantized.stages[0]
    rng = np.random.default_rng(count)
    local = rng.integers(-128, 128, (count, 4)).astype(np.int8)
    global_half = rng.integers(-128, 128, (count, 4)).astype(np.int8)
    folded = encoder.linear(local, type(selector.fc1_local)(
        weight=selector.fc1_local.weight, bias=selector.fc1_local.bias
        + global_bias(global_half, selector.fc1_global, count),
        multiplier=selector.fc1_local.multiplier, shift=selector.fc1_local.shift))
    explicit = _requantize_explicit(local, global_half, selector.fc1_local, selector.fc1_global)
    np.testing.assert_array_equal(folded, explicit)


def test_with_an_integer_mean_the_folding_is_fc1_on_the_broadcast_int8_half():
    _, quantized, _ = setup()
    selector = quantized.stages[0]
    rng = np.random.default_rng(3)
    local = rng.integers(-128, 128, (5, 4)).astype(np.int8)
    global_half = np.repeat(rng.integers(-128, 128, (1, 4)), 5, axis=0).astype(np.int8)
    folded = encoder.linear(local, type(selector.fc1_local)(
        weight=selector.fc1_local.weight, bias=selector.fc1_local.bias
        + global_bias(global_half, selector.fc1_global, 5),
        multiplier=selector.fc1_local.multiplier, shift=selector.fc1_local.shift))
    whole = type(selector.fc1_local)(
        weight=np.concatenate([selector.fc1_local.weight, selector.fc1_global]),
        bias=selector.fc1_local.bias, multiplier=selector.fc1_local.multiplier,
        shift=selector.fc1_local.shift)
    np.testing.assert_array_equal(folded, encoder.linear(np.hstack([local, global_half]), whole))


def test_threshold_decision_is_the_float_evaluation_of_the_integer_formula():
    model, quantized, patches = setup()
    tokens = encoder._tokens(model, patches[0])
    decided = 0
    for seed in range(4):
        rows = np.random.default_rng(seed).permutation(tokens[1:])
        for selector in quantized.stages:
            scores = selector_scores(selector, rows, SHAPE.heads)
            direct = (scores.weights[:, None].astype(np.float64)
                      * (2.0 * scores.head_keep - SIGMOID_ONE)).sum(axis=0) >= 0
            mask = choose(scores, "threshold")
            np.testing.assert_array_equal(mask, direct)
            decided += mask.sum() not in (0, len(mask))
    assert decided            # some stage keeps a proper subset


def test_a_weighted_sum_of_exactly_zero_is_kept():
    half = SIGMOID_ONE // 2
    head_keep = np.array([[half + 1, half + 1, half], [half - 3, half - 4, half]])
    weights = np.array([3, 1])
    scores = SelectorScores(head_keep, weights, weights @ head_keep)
    assert choose(scores, "threshold").tolist() == [True, False, True]
    zero = SelectorScores(head_keep, np.zeros(2, np.int64), np.zeros(3, np.int64))
    assert choose(zero, "threshold").tolist() == [True, True, True]


def test_topk_keeps_the_largest_scores_with_ties_to_the_lower_index():
    keep = np.array([5, 9, 5, 9, 1, 5])
    scores = SelectorScores(np.zeros((1, 6), np.int64), np.ones(1, np.int64), keep)
    assert np.flatnonzero(choose(scores, "topk", 3)).tolist() == [0, 1, 3]
    assert np.flatnonzero(choose(scores, "topk", 4)).tolist() == [0, 1, 2, 3]
    assert choose(scores, "topk", 9).all()
    with pytest.raises(ConfigError, match="mode must be one of threshold, topk, not 'top'"):
        choose(scores, "top")


def test_topk_keeps_the_ratio_of_the_original_patches():
    config = SelectorConfig(blocks=(1, 2), ratios=(0.7, 0.49), mode="topk")
    model, quantized, patches = setup(config)
    counts = {tuple(len(k) for k in pruned_vit_logits(model, image, quantized)[1])
              for image in patches}
    assert counts == {(keep_count(0.7, 16), keep_count(0.49, 16))}


def _package_loop(dropped, keep):
    total = sum(int(k) for k in keep)
    out = []
    for c in range(dropped.shape[1]):
        if total:
            value = Fraction(sum(int(k) * int(x) for k, x in zip(keep, dropped[:, c])), total)
        else:
            value = Fraction(sum(int(x) for x in dropped[:, c]), len(dropped))
        out.append(min(max(math.floor(value + Fraction(1, 2)), -128), 127))
    return out


def test_package_token_matches_a_straightforward_loop():
    rng = np.random.default_rng(7)
    for count in (1, 2, 5, 13):
        dropped = rng.integers(-128, 128, (count, 16)).astype(np.int8)
        keep = rng.integers(0, 2 * SIGMOID_ONE ** 2, count)
        assert package_token(dropped, keep).tolist() == _package_loop(dropped, keep)
        zeros = np.zeros(count, np.int64)
        assert package_token(dropped, zeros).tolist() == _package_loop(dropped, zeros)
    halves = np.array([[1, -1, 3], [2, -2, 4]], np.int8)
    assert package_token(halves, np.array([1, 1])).tolist() == [2, -1, 4]     # half up


@pytest.mark.parametrize("mode", ["threshold", "topk"])
def test_selectors_that_keep_everything_give_the_dense_integer_logits(mode):
    config = SelectorConfig(blocks=(1, 2), ratios=(1.0, 1.0), mode=mode)
    model, quantized, patches = setup(config, difference=100)
    for image in patches:
        logits, kept = pruned_vit_logits(model, image, quantized)
        assert [k.tolist() for k in kept] == [list(range(16))] * 2
        np.testing.assert_array_equal(logits, vit_logits(model, image))
        np.testing.assert_array_equal(vit_logits(model, image, selectors=quantized), logits)


def test_equal_drop_and_keep_scores_sit_on_the_threshold_and_are_kept():
    model, quantized, patches = setup(difference=0)
    for image in patches:
        logits, kept = pruned_vit_logits(model, image, quantized)
        assert [len(k) for k in kept] == [16, 16]
        np.testing.assert_array_equal(logits, vit_logits(model, image))


def test_keeping_only_the_class_token_folds_every_patch_into_the_package_token():
    config = SelectorConfig(blocks=(1,), ratios=(0.7,))
    model, quantized, patches = setup(config, difference=-100)
    for image in patches:
        logits, kept = pruned_vit_logits(model, image, quantized)
        assert [k.tolist() for k in kept] == [[]]
        x = encoder_block(encoder._tokens(model, image), model.blocks[0])
        scores = selector_scores(quantized.stages[0], x[1:], SHAPE.heads)
        package = np.array(_package_loop(x[1:], scores.keep), np.int8)
        x = np.stack([x[0], package])
        for block in model.blocks[1:]:
            x = encoder_block(x, block)
        np.testing.assert_array_equal(logits, encoder._head(model, x))


def test_a_stage_after_every_patch_was_dropped_adds_nothing():
    model, quantized, patches = setup()
    quantized = constant(quantized, [-100, 100])
    x = np.arange(2 * 16, dtype=np.int8).reshape(2, 16)                 # class + package
    out, mask = select(quantized.stages[1], x, 0, heads=2, mode="threshold", ratio=0.49,
                       patches=16)
    np.testing.assert_array_equal(out, x)
    assert mask.shape == (0,)
    _, kept = pruned_vit_logits(model, patches[0], quantized)
    assert [k.tolist() for k in kept] == [[], []]


def test_a_stage_no_calibration_image_reaches_is_rejected():
    vit = random_vit(SHAPE, np.random.default_rng(0), scale=0.3)
    images = np.random.default_rng(1).uniform(-1, 1, (4, 1, 8, 8))
    selectors = random_selectors(SHAPE, STAGES, np.random.default_rng(2), scale=0.5)
    selectors[0].out_bias[:] = (5.0, -5.0)                          # drops every patch
    with pytest.raises(ConfigError, match=r"calibration_images must leave a patch token alive "
                                          r"at stage 1 \(before block 2\); none did"):
        quantize_selectors(vit, selectors, STAGES, images, quantize_vit(vit, images))


def test_pruned_logits_differ_from_dense_only_through_the_selection():
    model, quantized, patches = setup()
    for image in patches:
        logits, kept = pruned_vit_logits(model, image, quantized)
        assert len(kept[0]) >= len(kept[1]) and set(kept[1]) <= set(kept[0])
        assert logits.dtype == np.int8 and logits.shape == (3,)


def test_inputs_are_checked_naming_parameter_rule_and_value():
    model, quantized, patches = setup()
    with pytest.raises(ConfigError, match="block_tokens must be None when selectors prune"):
        vit_logits(model, patches[0], block_tokens=(17, 10, 5), selectors=quantized)
    with pytest.raises(ConfigError, match=r"stages must have one selector per stage \(2\), "
                                          r"not 1"):
        QuantizedSelectors(config=STAGES, stages=quantized.stages[:1])
    with pytest.raises(ConfigTypeError, match="config must be a SelectorConfig"):
        QuantizedSelectors(config=(1, 2), stages=quantized.stages)
    with pytest.raises(ConfigError, match=r"patches must be int8 of shape \(p, 16\)"):
        selector_scores(quantized.stages[0], patches[0][:, :4].astype(np.int16), 2)
    other = VitShape(image_size=8, patch_size=2, in_channels=1, dim=16, depth=3, heads=4,
                     mlp=32, classes=3)
    vit = random_vit(other, np.random.default_rng(0))
    images = np.random.default_rng(1).uniform(0, 1, (2, 1, 8, 8))
    with pytest.raises(ConfigError, match="model must have the float model's shape"):
        quantize_selectors(vit, random_selectors(other, STAGES, np.random.default_rng(0)),
                           STAGES, images, model)
    tiny = random_vit(PRESETS["tiny"], np.random.default_rng(0))
    one_stage = QuantizedSelectors(config=SelectorConfig(blocks=(1,), ratios=(0.7,)),
                                   stages=quantized.stages[:1])
    with pytest.raises(ConfigError, match=r"selectors stage 0 must have heads=2 of 16 "
                                          r"channels, not heads=2 of 8"):
        pruned_vit_logits(quantize_vit(tiny, images), np.zeros((16, 4), np.int8), one_stage)
