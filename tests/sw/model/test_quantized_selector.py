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
from vitforge.sw.golden.nonlinear.gelu import gelu
from vitforge.sw.golden.nonlinear.layernorm import layernorm_rows
from vitforge.sw.golden.selector import (SelectorScores, choose, compact, keep_scores,
                                         package_token, package_weights, round_div, select,
                                         selector_scores, token_means)
from vitforge.sw.model.quantize import quantize_tensor, quantize_vit
from vitforge.sw.model.quantized import QuantizedLinear
from vitforge.sw.model.quantized_selector import QuantizedSelectors, quantize_selectors
from vitforge.sw.model.selector import SelectorConfig, keep_count, random_selectors
from vitforge.sw.model.vit import PRESETS, VitShape, patchify, random_vit
from vitforge.hw.numerics import (KEEP_SCORE_BITS, MAX_SELECTOR_HEADS, PACKAGE_WEIGHT_BITS,
                                  SIGMOID_ONE)
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


def _half_up(value):
    return math.floor(value + Fraction(1, 2))


def _scores_loop(selector, patches, heads, mean=_half_up, broadcast=True):
    """:func:`selector_scores` head by head and token by token, fc1 and the means in Python ints.

    ``mean`` rounds the exact (rational) means; ``broadcast=False`` leaves the
    global half of ``z`` as it is (to show that the data exercise both).
    """
    d, count = selector.head_dim, len(patches)
    half, fc1 = d // 2, selector.fc1
    head_keep = []
    for h in range(heads):
        z = gelu(encoder.linear(layernorm_rows(patches[:, h * d:(h + 1) * d], selector.ln),
                                selector.input), selector.input_gelu)
        u = [[int(v) for v in row] for row in z]
        if broadcast:
            means = [mean(Fraction(sum(u[t][c] for t in range(count)), count))
                     for c in range(half, d)]
            u = [row[:half] + means for row in u]
        acc = np.array([[sum(row[c] * int(fc1.weight[c, n]) for c in range(d))
                         for n in range(half)] for row in u], np.int64)
        f = requantize(acc, fc1.bias, fc1.multiplier, fc1.shift)
        hidden = gelu(encoder.linear(gelu(f, selector.fc1_gelu), selector.fc2), selector.fc2_gelu)
        t = encoder.linear(hidden, selector.difference)[:, 0]
        head_keep.append([int(selector.keep_table[int(v) & 0xFF]) for v in t])
    means = np.array([mean(Fraction(sum(int(v) for v in patches[:, h * d:(h + 1) * d].flat),
                                    count * d)) for h in range(heads)], np.int8)
    logits = encoder.linear(gelu(encoder.linear(means[None, :], selector.head_fc1),
                                 selector.head_gelu), selector.head_fc2)[0]
    weights = [int(selector.weight_table[int(v) & 0xFF]) for v in logits]
    keep = [sum(weights[h] * head_keep[h][i] for h in range(heads)) for i in range(count)]
    return SelectorScores(np.array(head_keep, np.int64).reshape(heads, count),
                          np.array(weights, np.int64), np.array(keep, np.int64))


def test_fc1_reads_the_local_half_and_the_broadcast_int8_mean_of_the_global_half():
    model, quantized, patches = setup()
    differs = {"floor": 0, "no broadcast": 0}
    for image in patches[:2]:
        x = encoder_block(encoder._tokens(model, image), model.blocks[0])
        rng = np.random.default_rng(len(x))
        for rows in (x[1:], rng.permutation(x[1:])[:7], x[5:6]):
            for selector in quantized.stages:
                scores = selector_scores(selector, rows, SHAPE.heads)
                expected = _scores_loop(selector, rows, SHAPE.heads)
                for got, want in zip(scores, expected):
                    np.testing.assert_array_equal(got, want)
                floor = _scores_loop(selector, rows, SHAPE.heads, mean=math.floor)
                plain = _scores_loop(selector, rows, SHAPE.heads, broadcast=False)
                differs["floor"] += not np.array_equal(floor.keep, scores.keep)
                differs["no broadcast"] += not np.array_equal(plain.keep, scores.keep)
    assert all(differs.values()), differs        # the data tell the definitions apart


def _means_loop(rows, alive, group):
    words = rows.shape[1]
    if alive == 0:
        return [0] * (words // group)
    return [_half_up(Fraction(sum(int(rows[t, c]) for t in range(1, 1 + alive)
                                  for c in range(j * group, (j + 1) * group)), alive * group))
            for j in range(words // group)]


def test_token_means_match_a_loop_over_the_alive_rows_only():
    rng = np.random.default_rng(11)
    for alive, group in [(0, 1), (0, 4), (1, 1), (5, 1), (5, 2), (9, 4), (9, 8), (3, 8)]:
        rows = rng.integers(-128, 128, (12, 8)).astype(np.int8)
        rows[0], rows[1 + alive:] = 127, -128               # class token and rows past alive
        means = token_means(rows, alive, group)
        assert means.dtype == np.int8 and means.shape == (8 // group,)
        np.testing.assert_array_equal(means, _means_loop(rows, alive, group))


def test_token_means_round_ties_half_up_and_stay_int8():
    ties = np.array([[0, 0], [1, -1], [2, -2], [0, 0]], np.int8)
    np.testing.assert_array_equal(token_means(ties, 2, 1), [2, -1])            # 3/2, -3/2
    np.testing.assert_array_equal(token_means(ties, 2, 2), [0])                # 0/4
    np.testing.assert_array_equal(token_means(ties[:, :1], 3, 1), [1])         # 3/3
    quarters = np.array([[0, 0], [1, 0], [0, 0]], np.int8)
    np.testing.assert_array_equal(token_means(quarters, 2, 2), [0])            # 1/4
    np.testing.assert_array_equal(token_means(-quarters - 1, 1, 2), [-1])      # -3/2
    for value in (-128, 127):
        full = np.full((6, 4), value, np.int8)
        np.testing.assert_array_equal(token_means(full, 5, 4), [value])
    with pytest.raises(ConfigError, match="group must be a positive divisor of the 2 words, "
                                          "not 3"):
        token_means(ties, 2, 3)
    with pytest.raises(ConfigError, match="not 0"):
        token_means(ties, 2, 0)


def test_keep_scores_look_up_both_tables_and_weigh_exactly():
    rng = np.random.default_rng(5)
    keep_table = rng.integers(0, SIGMOID_ONE + 1, 256).astype(np.uint16)
    weight_table = rng.integers(0, SIGMOID_ONE + 1, 256).astype(np.uint16)
    differences = rng.integers(-128, 128, (3, 6)).astype(np.int8)
    logits = rng.integers(-128, 128, 3).astype(np.int8)
    scores = keep_scores(differences, logits, keep_table, weight_table)
    head_keep = [[int(keep_table[int(t) % 256]) for t in row] for row in differences]
    weights = [int(weight_table[int(v) % 256]) for v in logits]
    np.testing.assert_array_equal(scores.head_keep, head_keep)
    np.testing.assert_array_equal(scores.weights, weights)
    np.testing.assert_array_equal(scores.keep, [sum(w * k[i] for w, k in zip(weights, head_keep))
                                                for i in range(6)])


def test_the_largest_keep_score_and_package_weight_fit_their_widths():
    full = np.full(256, SIGMOID_ONE, np.uint16)
    scores = keep_scores(np.zeros((MAX_SELECTOR_HEADS, 2), np.int8),
                         np.zeros(MAX_SELECTOR_HEADS, np.int8), full, full)
    np.testing.assert_array_equal(scores.keep, [MAX_SELECTOR_HEADS << 30] * 2)
    assert int(scores.keep.max()) < 1 << KEEP_SCORE_BITS
    largest = int(package_weights(scores.keep).max())
    assert largest == (MAX_SELECTOR_HEADS << 15) + 1
    assert largest.bit_length() == PACKAGE_WEIGHT_BITS


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
    weights = [int(k) // SIGMOID_ONE + 1 for k in keep]
    out = []
    for c in range(dropped.shape[1]):
        value = Fraction(sum(w * int(x) for w, x in zip(weights, dropped[:, c])), sum(weights))
        out.append(_half_up(value))
    assert all(-128 <= v <= 127 for v in out)
    return out


def test_package_weights_are_the_keep_score_in_q15_plus_one():
    keep = np.array([0, 1, SIGMOID_ONE - 1, SIGMOID_ONE, 3 * SIGMOID_ONE + 7, 1 << 34])
    weights = package_weights(keep)
    assert weights.dtype == np.int64 and weights.shape == (6,)
    np.testing.assert_array_equal(weights, [1, 1, 1, 2, 4, (1 << 19) + 1])
    assert package_weights(np.zeros((2, 3), np.int64)).shape == (2, 3)


def test_package_token_matches_a_straightforward_loop():
    rng = np.random.default_rng(7)
    for count in (1, 2, 5, 13):
        dropped = rng.integers(-128, 128, (count, 16)).astype(np.int8)
        for keep in (rng.integers(0, 3 * SIGMOID_ONE ** 2, count),
                     rng.integers(0, 4 * SIGMOID_ONE, count),      # weights of 1 to 4
                     np.zeros(count, np.int64)):                   # plain mean, no 0 / 0
            package = package_token(dropped, keep)
            assert package.dtype == np.int8 and package.shape == (16,)
            np.testing.assert_array_equal(package, _package_loop(dropped, keep))


def test_package_token_rounds_ties_half_up_and_stays_in_range():
    halves = np.array([[1, -1, 3], [2, -2, 4]], np.int8)
    np.testing.assert_array_equal(package_token(halves, np.array([0, SIGMOID_ONE - 1])),
                                  [2, -1, 4])                             # weights 1, 1
    np.testing.assert_array_equal(package_token(halves, np.array([SIGMOID_ONE, 0])),
                                  [1, -1, 3])                             # (2 + 2) / 3 etc.
    rng = np.random.default_rng(9)
    keep = rng.integers(0, MAX_SELECTOR_HEADS << 30, 40)
    for value in (-128, 127):
        np.testing.assert_array_equal(package_token(np.full((40, 4), value, np.int8), keep),
                                      [value] * 4)


def test_compact_keeps_the_class_token_kept_patches_and_earlier_packages_in_order():
    x = np.arange(8 * 4, dtype=np.int8).reshape(8, 4)     # class, 5 alive, 2 earlier packages
    mask = np.array([True, False, True, False, False])
    keep = np.array([0, 5 * SIGMOID_ONE, 0, SIGMOID_ONE, 7])
    out = compact(x, 5, mask, keep)
    np.testing.assert_array_equal(out[:5], x[[0, 1, 3, 6, 7]])
    np.testing.assert_array_equal(out[5], _package_loop(x[[2, 4, 5]], keep[[1, 3, 4]]))
    assert out.shape == (6, 4) and out.dtype == np.int8
    np.testing.assert_array_equal(compact(x, 5, np.ones(5, bool), keep), x)


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
