"""Token selection (HeatViT/SPViT style): the float reference and the selector file format."""

import json
import math

import numpy as np
import pytest

from vitforge.errors import ConfigError, ConfigTypeError, OutputError
from vitforge.sw.model import selector as sel
from vitforge.sw.model.selector import (
    SELECTOR_FORMAT, FloatSelector, SelectorConfig, choose, default_stages, forward_pruned,
    keep_count, keep_probabilities, load_selectors, package_token, random_selectors,
    save_selectors, selector_shapes)
from vitforge.sw.model.vit import PRESETS, VitShape, forward, random_vit

# 16 patches, 4 blocks, 2 heads of d = 8 channels.
SHAPE = VitShape(image_size=8, patch_size=2, in_channels=1, dim=16, depth=4, heads=2, mlp=32,
                 classes=3)
# 9 patches: odd token counts everywhere.
ODD = VitShape(image_size=6, patch_size=2, in_channels=1, dim=16, depth=3, heads=2, mlp=32,
               classes=3)
STAGES = SelectorConfig(blocks=(1, 2, 3), ratios=(0.7, 0.49, 0.343))


def model(shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    return random_vit(shape, rng, scale=0.3), rng.uniform(-1, 1, (3, 1, shape.image_size,
                                                                  shape.image_size))


def constant(shape, config, drop, keep):
    """Selectors whose scores are the constants ``drop`` and ``keep`` for every token."""
    selectors = random_selectors(shape, config, np.random.default_rng(5), scale=0.5)
    for selector in selectors:
        selector.out_weight[:] = 0
        selector.out_bias[:] = (drop, keep)
    return selectors


# ---------------------------------------------------------------- configuration

def test_default_stages_follow_deit_and_scale_with_depth():
    assert default_stages(12) == SelectorConfig(blocks=(3, 6, 9), ratios=(0.7, 0.49, 0.343))
    assert default_stages(2) == SelectorConfig(blocks=(1,), ratios=(0.7,))
    # round(6 * 3 / 12) = round(1.5) = 2, round(3) = 3, round(4.5) = 4 (half to even).
    assert default_stages(6) == SelectorConfig(blocks=(2, 3, 4), ratios=(0.7, 0.49, 0.343))
    assert default_stages(3, mode="topk") == SelectorConfig(blocks=(1, 2), ratios=(0.7, 0.49),
                                                            mode="topk")
    assert default_stages(24).blocks == (6, 12, 18)
    with pytest.raises(ConfigError, match=r"^depth must be at least 2 for token selection, "
                                          r"not 1$"):
        default_stages(1)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(blocks=(), ratios=()), ConfigError, r"^blocks must name at least one block, not \(\)$"),
    (dict(blocks=(3, 3), ratios=(0.7, 0.5)), ConfigError,
     r"^blocks must be strictly increasing, not \(3, 3\)$"),
    (dict(blocks=(-1,), ratios=(0.7,)), ConfigError, r"^blocks must be block indices >= 0"),
    (dict(blocks=(1.0,), ratios=(0.7,)), ConfigTypeError, r"^blocks must hold integers"),
    (dict(blocks=(1, 2), ratios=(0.7,)), ConfigError,
     r"^ratios must have one value per block \(2\), not 1: \(0.7,\)$"),
    (dict(blocks=(1,), ratios=(0.0,)), ConfigError, r"^ratios must be in \(0, 1\], not 0.0$"),
    (dict(blocks=(1,), ratios=(1.5,)), ConfigError, r"^ratios must be in \(0, 1\], not 1.5$"),
    (dict(blocks=(1, 2), ratios=(0.5, 0.7)), ConfigError, r"^ratios must be non-increasing"),
    (dict(blocks=(1,), ratios=(0.7,), mode="fixed"), ConfigError,
     r"^mode must be one of threshold, topk, not 'fixed'$"),
    (dict(blocks=3, ratios=(0.7,)), ConfigTypeError, r"^blocks must be a sequence, not 3$"),
])
def test_bad_configs_are_rejected_naming_parameter_rule_and_value(kwargs, error, message):
    with pytest.raises(error, match=message):
        SelectorConfig(**kwargs)


def test_config_normalises_to_tuples_and_checks_depth():
    config = SelectorConfig(blocks=[1, 3], ratios=[1, 0.5], mode="topk")
    assert config.blocks == (1, 3) and config.ratios == (1.0, 0.5)
    assert config.stage_before(3) == 1 and config.stage_before(2) is None
    with pytest.raises(ConfigError, match=r"^blocks must be below the model's depth=3, not "
                                          r"\(1, 3\)$"):
        config.check_depth(3)


def test_selector_shapes_need_a_head_dim_divisible_by_four():
    sizes = selector_shapes(192, 3)   # DeiT-T: d = 64
    assert sizes["in_weight"] == (64, 64) and sizes["fc2_weight"] == (32, 16)
    assert sizes["out_weight"] == (16, 2) and sizes["head_fc1_weight"] == (3, 1)
    assert selector_shapes(16, 1)["head_fc2_weight"] == (1, 1)      # g = max(1 // 2, 1)
    with pytest.raises(ConfigError, match=r"multiple of 4 for a token selector, not 6"):
        selector_shapes(12, 2)


def test_keep_count_is_the_ceiling_of_the_decimal_ratio():
    assert keep_count(0.7, 16) == 12          # 11.2
    assert keep_count(0.49, 100) == 49        # 0.49 * 100 == 49.00000000000001 in float
    assert keep_count(0.343, 196) == 68       # 67.228
    assert keep_count(0.49, 196) == 97        # 96.04
    assert keep_count(1.0, 9) == 9


# ---------------------------------------------------------------- scoring formula

def _gelu(v):
    return 0.5 * v * (1 + math.erf(v / math.sqrt(2)))


def _loop_probabilities(s, patches, heads):
    """The scoring formula written out with plain loops over Python floats."""
    count, dim = len(patches), len(patches[0])
    d = dim // heads

    def linear(v, weight, bias):
        return [sum(v[i] * weight[i][j] for i in range(len(v))) + bias[j]
                for j in range(len(bias))]

    per_head = []
    for h in range(heads):
        z = []
        for t in range(count):
            v = [float(patches[t][h * d + c]) for c in range(d)]
            mean = sum(v) / d
            var = sum((a - mean) ** 2 for a in v) / d
            n = [(v[c] - mean) / math.sqrt(var + 1e-6) * s.ln_gamma[c] + s.ln_beta[c]
                 for c in range(d)]
            z.append([_gelu(a) for a in linear(n, s.in_weight, s.in_bias)])
        shared = [sum(z[t][c] for t in range(count)) / count for c in range(d // 2, d)]
        probabilities = []
        for t in range(count):
            u = z[t][:d // 2] + shared
            a = [_gelu(v) for v in linear(u, s.fc1_weight, s.fc1_bias)]
            b = [_gelu(v) for v in linear(a, s.fc2_weight, s.fc2_bias)]
            drop, keep = linear(b, s.out_weight, s.out_bias)
            probabilities.append(math.exp(keep) / (math.exp(drop) + math.exp(keep)))
        per_head.append(probabilities)
    m = [sum(patches[t][h * d + c] for t in range(count) for c in range(d)) / (count * d)
         for h in range(heads)]
    hidden = [_gelu(v) for v in linear(m, s.head_fc1_weight, s.head_fc1_bias)]
    w = [1 / (1 + math.exp(-v)) for v in linear(hidden, s.head_fc2_weight, s.head_fc2_bias)]
    return [sum(w[h] * per_head[h][t] for h in range(heads)) / sum(w) for t in range(count)]


@pytest.mark.parametrize("heads, count", [(2, 5), (4, 3), (1, 7)])
def test_keep_probabilities_match_a_straightforward_loop(heads, count):
    rng = np.random.default_rng(11 + heads)
    shape = VitShape(image_size=8, patch_size=2, in_channels=1, dim=8 * heads, depth=2,
                     heads=heads, mlp=8, classes=2)
    s = random_selectors(shape, SelectorConfig(blocks=(1,), ratios=(0.7,)), rng, scale=0.6)[0]
    for name in sel.FIELDS:       # non-trivial gamma, beta and biases too
        getattr(s, name)[...] += rng.normal(0, 0.3, getattr(s, name).shape)
    patches = rng.normal(0, 1, (count, shape.dim))
    got = keep_probabilities(s, patches, heads)
    expected = _loop_probabilities(s, patches.tolist(), heads)
    assert got.shape == (count,)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert np.ptp(got) > 1e-3 and got.min() > 0 and got.max() < 1   # a meaningful case


@pytest.mark.parametrize("channel", [0, 2])
def test_a_hand_computed_case_separates_local_and_global_channels(channel):
    """One head of d = 4; fc1 reads one channel of u: local (0) or global (2)."""
    fc1 = np.zeros((4, 2))
    fc1[channel, 0] = 1.0
    s = FloatSelector(ln_gamma=np.ones(4), ln_beta=np.zeros(4), in_weight=np.eye(4),
                      in_bias=np.zeros(4), fc1_weight=fc1, fc1_bias=np.zeros(2),
                      fc2_weight=np.array([[1.0], [0.0]]), fc2_bias=np.zeros(1),
                      out_weight=np.array([[0.0, 1.0]]), out_bias=np.zeros(2),
                      head_fc1_weight=np.array([[0.5]]), head_fc1_bias=np.array([0.1]),
                      head_fc2_weight=np.array([[2.0]]), head_fc2_bias=np.array([-1.0]))
    patches = np.array([[1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0]]) * 3 + 2
    # LayerNorm: mean 2, variance 9, so n = +-[1, -1, 1, -1] * c with c = 3 / sqrt(9 + eps).
    c = 3 / math.sqrt(9 + 1e-6)
    if channel == 0:      # local: gelu(+-c) per token
        scores = [_gelu(_gelu(_gelu(c))), _gelu(_gelu(_gelu(-c)))]
    else:                 # global: the mean of gelu(c) and gelu(-c) for both tokens
        scores = [_gelu(_gelu((_gelu(c) + _gelu(-c)) / 2))] * 2
    expected = [1 / (1 + math.exp(-score)) for score in scores]   # softmax([0, score])[1]
    np.testing.assert_allclose(keep_probabilities(s, patches, 1), expected, rtol=1e-14)


def test_keep_probability_in_closed_form():
    """With a zero output layer the keep probability is softmax(out_bias)[1] for every head."""
    s = constant(SHAPE, SelectorConfig(blocks=(1,), ratios=(0.7,)), 0.0, math.log(3))[0]
    got = keep_probabilities(s, np.random.default_rng(1).normal(0, 1, (4, 16)), 2)
    np.testing.assert_allclose(got, [0.75] * 4, rtol=0, atol=2e-16)
    assert len(keep_probabilities(s, np.zeros((0, 16)), 2)) == 0


# ---------------------------------------------------------------- decisions

def test_threshold_keeps_exactly_one_half_and_rejects_just_below():
    p = np.array([0.5, np.nextafter(0.5, 0), 0.75, 0.0, 1.0])
    assert choose(p, "threshold").tolist() == [True, False, True, False, True]


def test_topk_breaks_ties_by_lower_index():
    p = np.array([0.3, 0.5, 0.5, 0.2, 0.5, 0.9])
    assert np.flatnonzero(choose(p, "topk", 3)).tolist() == [1, 2, 5]
    assert np.flatnonzero(choose(p, "topk", 2)).tolist() == [1, 5]
    assert choose(p, "topk", 10).all()
    with pytest.raises(ConfigError, match="mode must be one of"):
        choose(p, "best", 1)


def test_package_token_is_the_keep_weighted_mean_or_the_plain_mean_at_zero():
    x = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, -2.0]])
    p = np.array([0.25, 0.5, 0.25])
    assert package_token(x, p).tolist() == [3.0, 3.0]
    assert package_token(x, np.zeros(3)).tolist() == [3.0, 2.0]


# ---------------------------------------------------------------- forward with pruning

@pytest.mark.parametrize("config", [
    SelectorConfig(blocks=(1, 3), ratios=(0.7, 0.5)),                      # threshold
    SelectorConfig(blocks=(1, 3), ratios=(1.0, 1.0), mode="topk"),
])
def test_selectors_that_keep_everything_give_the_dense_logits_exactly(config):
    vit, images = model()
    record = {}
    logits, kept = forward_pruned(vit, images, constant(SHAPE, config, -50.0, 50.0), config,
                                  record=record)
    assert logits.tobytes() == forward(vit, images).tobytes()
    assert all(k.tolist() == list(range(16)) for image in kept for k in image)
    for stage in range(2):
        for before, after in zip(record[f"select.{stage}.input"],
                                 record[f"select.{stage}.output"]):
            assert before.tobytes() == after.tobytes()     # no package token added


def test_selectors_that_keep_nothing_fold_every_patch_into_the_package_token():
    vit, images = model()
    config = SelectorConfig(blocks=(2,), ratios=(0.7,))
    selectors = constant(SHAPE, config, 50.0, -50.0)
    record = {}
    logits, kept = forward_pruned(vit, images, selectors, config, record=record)
    assert [k[0].tolist() for k in kept] == [[]] * 3
    for x, out in zip(record["select.0.input"], record["select.0.output"]):
        patches = x[1:17]
        p = keep_probabilities(selectors[0], patches, SHAPE.heads)
        assert 0 < p.min() and p.max() < 1e-40
        assert out.shape == (2, 16) and out[0].tobytes() == x[0].tobytes()
        np.testing.assert_array_equal(out[1], (p[:, None] * patches).sum(axis=0) / p.sum())
        np.testing.assert_allclose(out[1], patches.mean(axis=0), rtol=1e-12, atol=1e-14)
    assert all(x.shape == (2, 16) for x in record["3.x2"])
    assert np.isfinite(logits).all()


def test_keep_probabilities_of_exactly_zero_give_the_plain_mean():
    vit, images = model()
    config = SelectorConfig(blocks=(1,), ratios=(0.7,))
    record = {}
    forward_pruned(vit, images, constant(SHAPE, config, 1000.0, -1000.0), config,
                   record=record)
    for x, out, p in zip(record["select.0.input"], record["select.0.output"],
                         record["select.0.keep"]):
        assert not p.any()
        np.testing.assert_array_equal(out[1], x[1:17].mean(axis=0))


def test_a_keep_probability_of_exactly_one_half_is_kept():
    vit, images = model()
    config = SelectorConfig(blocks=(1,), ratios=(0.7,))
    record = {}
    logits, kept = forward_pruned(vit, images, constant(SHAPE, config, 0.25, 0.25), config,
                                  record=record)
    assert all((p == 0.5).all() for p in record["select.0.keep"])
    assert all(k[0].tolist() == list(range(16)) for k in kept)
    assert logits.tobytes() == forward(vit, images).tobytes()
    # A hair lower and nothing is kept.
    lower = constant(SHAPE, config, 0.25, 0.25 - 1e-12)
    _, kept = forward_pruned(vit, images, lower, config)
    assert all(len(k[0]) == 0 for k in kept)


def test_topk_keeps_exactly_the_ratio_of_the_original_patches():
    vit, images = model()
    config = SelectorConfig(blocks=(1, 2, 3), ratios=(0.7, 0.49, 0.343), mode="topk")
    selectors = random_selectors(SHAPE, config, np.random.default_rng(3), scale=0.5)
    record = {}
    _, kept = forward_pruned(vit, images, selectors, config, record=record)
    for image, k in enumerate(kept):
        assert [len(stage) for stage in k] == [12, 8, 6]     # ceil of 11.2, 7.84, 5.488
        assert set(k[1]) <= set(k[0]) and set(k[2]) <= set(k[1])
        assert all((np.diff(stage) > 0).all() for stage in k)
        p = record["select.0.keep"][image]
        assert p[k[0]].min() >= np.delete(p, k[0]).max()
    # Rows: class token, alive patches, one package token per earlier stage.
    assert [x.shape[0] for x in record["1.x2"]] == [1 + 12 + 1] * 3
    assert [x.shape[0] for x in record["3.x2"]] == [1 + 6 + 3] * 3
    # Earlier package tokens pass through untouched and are not scored.
    for x, out, p in zip(record["select.1.input"], record["select.1.output"],
                         record["select.1.keep"]):
        assert len(p) == 12
        assert out[-2].tobytes() == x[-1].tobytes()


def test_topk_with_equal_scores_keeps_the_first_patches():
    vit, images = model()
    config = SelectorConfig(blocks=(1, 2, 3), ratios=(0.7, 0.49, 0.343), mode="topk")
    _, kept = forward_pruned(vit, images, constant(SHAPE, config, 0.0, 0.0), config)
    for k in kept:
        assert [stage.tolist() for stage in k] == [list(range(12)), list(range(8)),
                                                   list(range(6))]


@pytest.mark.parametrize("mode", ["threshold", "topk"])
def test_odd_token_counts(mode):
    vit, images = model(ODD, seed=4)
    config = SelectorConfig(blocks=(1, 2), ratios=(0.7, 0.49), mode=mode)
    selectors = random_selectors(ODD, config, np.random.default_rng(8), scale=0.8)
    record = {}
    logits, kept = forward_pruned(vit, images, selectors, config, record=record)
    assert logits.shape == (3, 3) and np.isfinite(logits).all()
    for image, k in enumerate(kept):
        if mode == "topk":
            assert [len(stage) for stage in k] == [7, 5]     # ceil of 6.3, 4.41
        packages = [len(a) < len(b) for a, b in zip(k, [np.arange(9)] + k[:-1])]
        rows = record["2.x2"][image].shape[0]
        assert rows == 1 + len(k[-1]) + sum(packages)
    assert logits.tobytes() == forward(vit, images, selectors=selectors,
                                       config=config).tobytes()


def test_a_stage_with_no_alive_patches_adds_nothing():
    vit, images = model()
    config = SelectorConfig(blocks=(1, 2), ratios=(0.7, 0.5))
    selectors = constant(SHAPE, config, 50.0, -50.0)
    record = {}
    _, kept = forward_pruned(vit, images, selectors, config, record=record)
    assert all(len(k[0]) == 0 and len(k[1]) == 0 for k in kept)
    assert all(x.shape == (2, 16) for x in record["select.1.output"])


def test_random_selectors_on_the_tiny_preset_keep_some_tokens():
    shape = PRESETS["tiny"]
    vit = random_vit(shape, np.random.default_rng(0))
    images = np.random.default_rng(1).uniform(0, 1, (4, 1, 8, 8))
    config = default_stages(shape.depth, mode="topk")
    selectors = random_selectors(shape, config, np.random.default_rng(2))
    _, kept = forward_pruned(vit, images, selectors, config)
    assert [len(k[0]) for k in kept] == [12] * 4


def test_mismatched_selectors_are_rejected():
    vit, images = model()
    config = SelectorConfig(blocks=(1,), ratios=(0.7,))
    selectors = random_selectors(SHAPE, config, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="given together"):
        forward(vit, images, selectors=selectors)
    with pytest.raises(ConfigError, match=r"one selector per stage \(2\), not 1"):
        forward_pruned(vit, images, selectors, SelectorConfig(blocks=(1, 2), ratios=(1, 1)))
    with pytest.raises(ConfigError, match=r"below the model's depth=4"):
        forward_pruned(vit, images, selectors, SelectorConfig(blocks=(4,), ratios=(1,)))
    selectors[0].fc1_weight = np.zeros((8, 3))
    with pytest.raises(ConfigError, match=r"^selector 0: fc1_weight has shape \(8, 3\), "
                                          r"expected \(8, 4\)$"):
        forward_pruned(vit, images, selectors, config)


# ---------------------------------------------------------------- files

def test_selector_files_round_trip_exactly(tmp_path):
    config = SelectorConfig(blocks=(1, 3), ratios=(0.7, 0.49), mode="topk")
    selectors = random_selectors(SHAPE, config, np.random.default_rng(9), scale=0.5)
    path = tmp_path / "sel.npz"
    save_selectors(path, selectors, config, SHAPE)
    loaded, loaded_config = load_selectors(path, SHAPE)
    assert loaded_config == config and len(loaded) == 2
    for a, b in zip(selectors, loaded):
        for name in sel.FIELDS:
            assert getattr(b, name).dtype == np.float64
            assert getattr(a, name).tobytes() == getattr(b, name).tobytes()
    with np.load(path) as archive:
        meta = json.loads(str(archive["meta"]))
        assert meta == {"format": SELECTOR_FORMAT, "dim": 16, "heads": 2, "blocks": [1, 3],
                        "ratios": [0.7, 0.49], "mode": "topk"}
        assert "stages.1.head_fc2_bias" in archive.files
    vit, images = model()
    assert forward(vit, images, selectors=loaded, config=loaded_config).tobytes() == \
        forward(vit, images, selectors=selectors, config=config).tobytes()


def test_saving_checks_its_inputs(tmp_path):
    config = SelectorConfig(blocks=(1,), ratios=(0.7,))
    selectors = random_selectors(SHAPE, config, np.random.default_rng(0))
    with pytest.raises(ConfigError, match=r"one selector per stage \(1\), not 2"):
        save_selectors(tmp_path / "a.npz", selectors * 2, config, SHAPE)
    with pytest.raises(OutputError):
        save_selectors(tmp_path / "missing" / "a.npz", selectors, config, SHAPE)
    assert not list(tmp_path.iterdir())


def _write(path, arrays, **meta):
    full = {"format": SELECTOR_FORMAT, "dim": 16, "heads": 2, "blocks": [1], "ratios": [0.7],
            "mode": "threshold"}
    full.update(meta)
    full = {k: v for k, v in full.items() if v is not None}
    np.savez(path, meta=np.array(json.dumps(full)), **arrays)


def _arrays(stages=1):
    selectors = random_selectors(SHAPE, SelectorConfig(blocks=tuple(range(1, stages + 1)),
                                                       ratios=(0.7,) * stages),
                                 np.random.default_rng(0))
    return {f"stages.{i}.{name}": getattr(s, name) for i, s in enumerate(selectors)
            for name in sel.FIELDS}


def test_malformed_selector_files_are_rejected_with_a_clear_error(tmp_path):
    path = tmp_path / "bad.npz"

    def rejects(message):
        with pytest.raises(ConfigError, match=message):
            load_selectors(path, SHAPE)

    path.write_bytes(b"not a zip")
    rejects(r"is not a vitforge selector file")
    _write(path, _arrays(), format="vitforge-float-vit-1")
    rejects(r"has format 'vitforge-float-vit-1', expected 'vitforge-float-selectors-1'")
    _write(path, _arrays(), dim=32)
    rejects(r"selectors for dim=32, the model has dim=16$")
    _write(path, _arrays(), heads=4)
    rejects(r"selectors for heads=4, the model has heads=2$")
    _write(path, _arrays(), mode=None)
    rejects(r"invalid selector config in 'meta' \(no 'mode'\)")
    _write(path, _arrays(), ratios=[1.5])
    rejects(r"invalid selector config in 'meta' \(ratios must be in \(0, 1\], not 1.5\)")
    _write(path, _arrays(), blocks=[4])
    rejects(r"invalid selector config in 'meta' \(blocks must be below the model's depth=4")
    _write(path, _arrays(), blocks="1")
    rejects(r"invalid selector config in 'meta' \(blocks must hold integers")
    arrays = _arrays()
    del arrays["stages.0.fc2_bias"]
    _write(path, arrays)
    rejects(r"key 'stages.0.fc2_bias' is missing \(expected shape \(2,\)\)$")
    _write(path, _arrays(2))
    rejects(r"unexpected key 'stages.1.fc1_bias' for 1 stage\(s\)$")
    arrays = _arrays()
    arrays["stages.0.in_weight"] = np.zeros((8, 4))
    _write(path, arrays)
    rejects(r"key 'stages.0.in_weight' has shape \(8, 4\), expected \(8, 8\)$")
    arrays = _arrays()
    arrays["stages.0.out_bias"] = np.array([0.0, np.nan])
    _write(path, arrays)
    rejects(r"key 'stages.0.out_bias' has values that are not finite$")
    arrays = _arrays()
    arrays["stages.0.out_bias"] = np.array(["a", "b"])
    _write(path, arrays)
    rejects(r"key 'stages.0.out_bias' has dtype <U1, expected real numbers$")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(ConfigError, match="is not a vitforge selector file"):
        load_selectors(tmp_path / "plain.npy", SHAPE)
