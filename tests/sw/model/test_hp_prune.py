"""Hierarchical pruning of float weights and models, and pruned float model files."""

import json

import numpy as np
import pytest

from vitforge.errors import ConfigError
from vitforge.sw.model.hp_prune import hp_pattern, layer_names, layer_weight, prune_vit
from vitforge.sw.model.vit import PRESETS, random_vit
from vitforge.sw.model.weights import EMBEDDED_WEIGHTS, load_vit, save_vit


def tiny(seed=0):
    return random_vit(PRESETS["tiny"], np.random.default_rng(seed))


def kept_rows_per_group(pattern):
    """Distinct rows each group keeps (fillers not counted)."""
    return [len(set(rows.tolist())) for rows in pattern.row_index()]


@pytest.mark.parametrize("sparsity, blocks, rows", [
    (0, 6, 32), (0.25, 6, 24), (0.5, 6, 16), (0.75, 6, 8), (0.9, 1, 19), (1, 0, 32)])
def test_patterns_are_balanced_at_the_asked_sparsity(sparsity, blocks, rows):
    weight = np.random.default_rng(0).normal(size=(192, 72))       # 5 groups, the last of 8
    pattern = hp_pattern(weight, sparsity, cols=16)
    assert (pattern.kept_blocks, pattern.kept_rows) == (blocks, rows)
    assert pattern.length == round((1 - sparsity) * 192)
    assert kept_rows_per_group(pattern) == [pattern.length] * 5
    assert np.count_nonzero(pattern.mask()) == pattern.length * 72
    assert not pattern.fillers().any()


def test_a_short_last_block_keeps_all_its_rows_and_fillers():
    weight = np.random.default_rng(1).normal(size=(40, 20))       # blocks of 32 and 8 rows
    pattern = hp_pattern(weight, 0, cols=16)                      # every row: b=2, r=32
    assert (pattern.kept_blocks, pattern.kept_rows) == (2, 32)
    assert pattern.blocks.tolist() == [[0, 1], [0, 1]]
    assert pattern.offsets[:, 1].tolist() == [list(range(8)) + [7] * 24] * 2
    assert pattern.fillers().sum(axis=1).tolist() == [24, 24]
    assert kept_rows_per_group(pattern) == [40, 40] and pattern.sparsity == 0
    half = hp_pattern(weight, 0.5, cols=16)
    assert half.length == 20 and kept_rows_per_group(half) == [20 - f for f in
                                                               half.fillers().sum(axis=1)]


def test_the_strongest_block_and_row_are_kept():
    rng = np.random.default_rng(2)
    weight = rng.normal(0, 0.01, (128, 32))
    weight[64:96, 16:] = 1.0                   # group 1, block 2: every row strong
    weight[5, :16] = 1.0                       # group 0: one strong row in block 0
    pattern = hp_pattern(weight, 0.75, cols=16)   # L = 32: (1, 32), (2, 16) or (4, 8)
    assert (pattern.kept_blocks, pattern.kept_rows) == (1, 32)
    assert pattern.blocks.tolist() == [[0], [2]]
    half = hp_pattern(weight, 0.5, cols=16)
    assert 5 in half.row_index()[0]
    assert set(range(64, 96)) <= set(half.row_index()[1].tolist())


def test_equal_energies_keep_the_fewest_and_first_blocks():
    pattern = hp_pattern(np.ones((192, 16)), 0.5, cols=16)
    assert (pattern.kept_blocks, pattern.kept_rows) == (3, 32)
    assert pattern.blocks.tolist() == [[0, 1, 2]]


def test_a_zero_target_keeps_no_block():
    pattern = hp_pattern(np.ones((3, 16)), 0.9, cols=16, block_rows=2)
    assert pattern.kept_blocks == 0 and not pattern.mask().any()


@pytest.mark.parametrize("weight, kwargs, message", [
    (np.ones((4, 4)), {"sparsity": 1.5}, r"^sparsity must be a number in \[0, 1\], not 1\.5$"),
    (np.ones((4, 4)), {"sparsity": -0.1}, r"sparsity must be a number in \[0, 1\], not -0\.1"),
    (np.ones((4, 4)), {"sparsity": True}, r"sparsity must be a number in \[0, 1\], not True"),
    (np.ones((4, 4)), {"sparsity": "0.5"}, r"sparsity must be a number .*, not '0\.5'$"),
    (np.ones((4, 4)), {"sparsity": 0.5, "cols": 0},
     r"^cols must be a positive integer, not 0$"),
    (np.ones((4, 4)), {"sparsity": 0.5, "block_rows": 24},
     r"^block_rows must be a power of two from 2 to 256, not 24$"),
    (np.ones(4), {"sparsity": 0.5}, r"^weight must be a finite 2-D real matrix, not float64 "
                                    r"of shape \(4,\)$"),
    (np.full((2, 2), np.nan), {"sparsity": 0.5}, r"^weight must be a finite 2-D real matrix"),
])
def test_bad_arguments_are_named(weight, kwargs, message):
    with pytest.raises(ValueError, match=message):
        hp_pattern(weight, **{"cols": 4, **kwargs})


def test_prune_vit_zeroes_the_pruned_weights_of_every_encoder_layer():
    vit = tiny()
    pruned = prune_vit(vit, 0.5)
    assert list(pruned.sparsity) == layer_names(vit) and not vit.sparsity
    for name, pattern in pruned.sparsity.items():
        weight = layer_weight(vit, name)
        assert pattern.cols == 16 and pattern.block_rows == 32 and pattern.sparsity == 0.5
        np.testing.assert_array_equal(layer_weight(pruned, name), weight * pattern.mask())
        assert np.count_nonzero(layer_weight(vit, name)) == weight.size    # not modified
    for name in ("patch_weight", "head_weight", "position"):
        np.testing.assert_array_equal(getattr(pruned, name), getattr(vit, name))


def test_prune_vit_takes_a_sparsity_per_layer():
    vit = tiny()
    pruned = prune_vit(vit, {"blocks.1.fc1": 0.75, "blocks.0.qkv": 0.25}, cols=8,
                       block_rows=16)
    assert sorted(pruned.sparsity) == ["blocks.0.qkv", "blocks.1.fc1"]
    assert pruned.sparsity["blocks.1.fc1"].sparsity == 0.75
    assert pruned.sparsity["blocks.0.qkv"].cols == 8
    np.testing.assert_array_equal(pruned.blocks[1].fc2_weight, vit.blocks[1].fc2_weight)
    again = prune_vit(pruned, {"blocks.0.fc2": 0.5})
    assert sorted(again.sparsity) == ["blocks.0.fc2", "blocks.0.qkv", "blocks.1.fc1"]


@pytest.mark.parametrize("sparsity, kwargs, message", [
    ({"blocks.2.fc1": 0.5}, {}, r"^sparsity names layer 'blocks\.2\.fc1', which is not one of "
                                r"the prunable layers blocks\.0\.qkv \.\.\. blocks\.1\.fc2"),
    ({"head": 0.5}, {}, r"sparsity names layer 'head'"),
    ({"blocks.0.fc1": 2}, {}, r"^sparsity of blocks\.0\.fc1 must be a number in \[0, 1\], "
                              r"not 2$"),
    (-1, {}, r"^sparsity must be a number in \[0, 1\], not -1$"),
    (0.5, {"cols": -16}, r"^cols must be a positive integer, not -16$"),
    (0.5, {"block_rows": 3}, r"^block_rows must be a power of two"),
])
def test_prune_vit_rejects_bad_arguments(sparsity, kwargs, message):
    with pytest.raises(ValueError, match=message):
        prune_vit(tiny(), sparsity, **kwargs)


def _patterns_equal(left, right):
    assert list(left) == list(right)
    for name in left:
        a, b = left[name].to_arrays(), right[name].to_arrays()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name} {key}")


def test_pruned_float_files_round_trip_bit_exactly(tmp_path):
    pruned = prune_vit(tiny(), {"blocks.0.fc2": 0.5, "blocks.1.qkv": 0.9})
    save_vit(tmp_path / "a.npz", pruned, {"note": "x"})
    loaded, meta = load_vit(tmp_path / "a.npz")
    assert meta["note"] == "x" and meta["format"] == "vitforge-float-vit-2"
    _patterns_equal(loaded.sparsity, pruned.sparsity)
    for name in layer_names(pruned):
        np.testing.assert_array_equal(layer_weight(loaded, name),
                                      layer_weight(pruned, name).astype(np.float32))
    save_vit(tmp_path / "b.npz", loaded)
    again, _ = load_vit(tmp_path / "b.npz")
    _patterns_equal(again.sparsity, loaded.sparsity)
    for name in layer_names(pruned):
        np.testing.assert_array_equal(layer_weight(again, name), layer_weight(loaded, name))


def test_version_1_float_files_load_dense():
    vit, meta = load_vit(EMBEDDED_WEIGHTS)
    assert meta["format"] == "vitforge-float-vit-1" and vit.sparsity == {}


def test_extra_meta_cannot_replace_the_files_own_keys(tmp_path):
    with pytest.raises(ValueError, match=r"^extra_meta must not set the reserved keys format, "
                                         r"shape and sparsity, not shape, sparsity$"):
        save_vit(tmp_path / "m.npz", tiny(), {"sparsity": 0.5, "shape": 1})


def _rewrite(tmp_path, arrays, meta_change=None, **changes):
    arrays = dict(arrays, **changes)
    meta = json.loads(str(arrays["meta"]))
    if meta_change:
        meta_change(meta)
    arrays["meta"] = np.array(json.dumps(meta))
    path = tmp_path / "broken.npz"
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
    return path


def test_malformed_patterns_in_float_files_name_the_layer(tmp_path):
    save_vit(tmp_path / "m.npz", prune_vit(tiny(), 0.5))
    with np.load(tmp_path / "m.npz") as archive:
        arrays = {key: archive[key] for key in archive.files}
    offsets = arrays["sparsity.blocks.1.fc2.offsets"].copy()
    offsets[0, 0, 0] = 40
    weight = arrays["blocks.0.qkv_weight"].copy()
    outside = np.argwhere(~prune_vit(tiny(), 0.5).sparsity["blocks.0.qkv"].mask())[0]
    weight[tuple(outside)] = 0.5

    def unknown(meta):
        meta["sparsity"]["blocks.4.fc1"] = meta["sparsity"]["blocks.0.fc1"]

    def no_rows(meta):
        del meta["sparsity"]["blocks.0.proj"]["rows"]

    cases = [
        ({"sparsity.blocks.1.fc2.offsets": offsets},
         None, r"layer blocks\.1\.fc2: bad HP pattern \(group 0, block \d+: row offsets must "
               r"lie in \[0, 31\]"),
        ({"blocks.0.qkv_weight": weight}, None,
         r"blocks\.0\.qkv: weight has 1 nonzero values outside its HP pattern$"),
        ({"sparsity.blocks.4.fc1.blocks": arrays["sparsity.blocks.0.fc1.blocks"],
          "sparsity.blocks.4.fc1.offsets": arrays["sparsity.blocks.0.fc1.offsets"]}, unknown,
         r"sparsity names layer 'blocks\.4\.fc1', which is not a prunable layer"),
        ({}, no_rows, r"layer blocks\.0\.proj: bad HP pattern \(no 'rows'\)"),
        ({"sparsity.blocks.0.fc1.blocks": None}, None,
         r"layer blocks\.0\.fc1: bad HP pattern \(no 'sparsity\.blocks\.0\.fc1\.blocks'\)"),
        ({"sparsity.blocks.7.fc1.blocks": arrays["sparsity.blocks.0.fc1.blocks"]}, None,
         r"key 'sparsity\.blocks\.7\.fc1\.blocks' belongs to no layer in meta\['sparsity'\]"),
    ]
    for changes, meta_change, message in cases:
        path = _rewrite(tmp_path, arrays, meta_change, **changes)
        with pytest.raises(ConfigError, match=f"^{path}: {message}"):
            load_vit(path)
