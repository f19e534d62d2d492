"""Quantizing HP-pruned models, and their quantized files (compressed sparse layers)."""

from dataclasses import fields, is_dataclass
import json

import numpy as np
import pytest

from vitforge.errors import ConfigError
from vitforge.sw.gemm.sparse import HPSparseWeight
from vitforge.sw.golden.encoder import vit_logits
from vitforge.sw.model.hp_prune import prune_vit
from vitforge.sw.model.quantize import quantize_tensor, quantize_vit
from vitforge.sw.model.quantized_io import load_quantized, save_quantized
from vitforge.sw.model.vit import PRESETS, patchify, random_vit

LAYERS = ("qkv", "proj", "fc1", "fc2")


def pruned_model(sparsity=0.5, seed=0):
    """A random ``tiny`` model pruned to ``sparsity``, its integer model and 2 test images."""
    rng = np.random.default_rng(seed)
    vit = prune_vit(random_vit(PRESETS["tiny"], rng, scale=0.2), sparsity)
    pictures = rng.uniform(0, 1, (12, 1, 8, 8))
    model = quantize_vit(vit, pictures[:10])
    patches = [quantize_tensor(patchify(p[None], vit.shape)[0], model.input_scale)
               for p in pictures[10:]]
    return vit, model, patches


def test_pruned_layers_quantize_to_sparse_weights_that_keep_the_zeros():
    vit, model, _ = pruned_model()
    for index, block in enumerate(model.blocks):
        for layer in LAYERS:
            linear = getattr(block, layer)
            pattern = vit.sparsity[f"blocks.{index}.{layer}"]
            assert isinstance(linear.sparse, HPSparseWeight)
            assert linear.sparse.pattern is pattern
            np.testing.assert_array_equal(linear.sparse.dense(), linear.weight)
            assert not linear.weight[~pattern.mask()].any()
            assert np.count_nonzero(linear.weight) > 0.45 * linear.weight.size
    assert model.patch.sparse is None and model.head.sparse is None


def test_layers_left_dense_stay_dense():
    rng = np.random.default_rng(0)
    vit = prune_vit(random_vit(PRESETS["tiny"], rng), {"blocks.1.fc2": 0.75})
    model = quantize_vit(vit, rng.uniform(0, 1, (4, 1, 8, 8)))
    assert model.blocks[1].fc2.sparse.pattern.sparsity == 0.75
    assert [getattr(b, n).sparse for b in model.blocks for n in LAYERS].count(None) == 7


def test_weights_outside_the_pattern_are_rejected_naming_the_layer():
    rng = np.random.default_rng(0)
    vit = prune_vit(random_vit(PRESETS["tiny"], rng), 0.5)
    vit.blocks[0].proj_weight[~vit.sparsity["blocks.0.proj"].mask()] = 0.01
    with pytest.raises(ValueError, match=r"^blocks\.0\.proj: weight has 512 nonzero values "
                                         r"outside its HP pattern$"):
        quantize_vit(vit, rng.uniform(0, 1, (4, 1, 8, 8)))


def assert_same(left, right, where="model"):
    """Recursive bit-exact comparison of two quantized models (or parts of them)."""
    assert type(left) is type(right), where
    if isinstance(left, np.ndarray):
        assert left.dtype == right.dtype, where
        np.testing.assert_array_equal(left, right, err_msg=where)
    elif isinstance(left, (tuple, list)):
        assert len(left) == len(right), where
        for index, (a, b) in enumerate(zip(left, right)):
            assert_same(a, b, f"{where}[{index}]")
    elif is_dataclass(left):
        for item in fields(left):
            assert_same(getattr(left, item.name), getattr(right, item.name),
                        f"{where}.{item.name}")
    else:
        assert left == right, where


def test_sparse_quantized_files_round_trip_bit_exactly(tmp_path):
    _, model, patches = pruned_model()
    save_quantized(tmp_path / "q.npz", model)
    with np.load(tmp_path / "q.npz") as archive:
        keys = set(archive.files)
        meta = json.loads(str(archive["meta"]))
    assert meta["format"] == "vitforge-int8-vit-4"
    assert "blocks.1.fc2.weight" not in keys            # stored compressed only
    assert {"blocks.1.fc2.sparse.values", "blocks.1.fc2.sparse.index"} <= keys
    assert meta["parts"]["blocks"][1]["fields"]["fc2"]["fields"]["sparse"]["hp_sparse"] == {
        "rows": 128, "columns": 32, "cols": 16, "block_rows": 32, "kept_rows": 16}
    loaded = load_quantized(tmp_path / "q.npz")
    assert_same(loaded, model)
    for features in patches:
        np.testing.assert_array_equal(vit_logits(loaded, features), vit_logits(model, features))
    save_quantized(tmp_path / "again.npz", loaded)
    assert_same(load_quantized(tmp_path / "again.npz"), model)


@pytest.mark.parametrize("version", [2, 3])
def test_dense_version_2_and_3_files_still_load(tmp_path, version):
    rng = np.random.default_rng(0)
    model = quantize_vit(random_vit(PRESETS["tiny"], rng), rng.uniform(0, 1, (4, 1, 8, 8)),
                         probability_shift=0)
    save_quantized(tmp_path / "q.npz", model)
    path = _rewrite(tmp_path, tmp_path / "q.npz",
                    lambda meta: meta.update(format=f"vitforge-int8-vit-{version}"))
    assert_same(load_quantized(path), model)


def _rewrite(tmp_path, source, meta_change=None, **changes):
    with np.load(source) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays.update(changes)
    meta = json.loads(str(arrays["meta"]))
    if meta_change:
        meta_change(meta)
    arrays["meta"] = np.array(json.dumps(meta))
    path = tmp_path / "broken.npz"
    np.savez(path, **arrays)
    return path


def _index(tmp_path, change):
    """The index records of block 1's fc2 (4 blocks of 16 rows, 80 bytes), changed."""
    with np.load(tmp_path / "q.npz") as archive:
        index = archive["blocks.1.fc2.sparse.index"].copy()
    return {"blocks.1.fc2.sparse.index": change(index)}


def _set(offset, value):
    def change(index):
        index[0, offset] = value
        return index
    return change


def _fc2_sizes(**sizes):
    def change(meta):
        meta["parts"]["blocks"][1]["fields"]["fc2"]["fields"]["sparse"]["hp_sparse"].update(
            sizes)
    return change


@pytest.mark.parametrize("index_change, meta_change, message", [
    (_set(1, 40), None, r"group 0, block \d: row offsets must lie in \[0, 31\], not \[40, "),
    (_set(0, 9), None, r"group 0: block numbers must lie in \[0, 3\], not \[9, "),
    (_set(2, 0), None, r"row offsets must be strictly ascending"),         # row kept twice
    (_set(17, 0), None, r"group 0: block numbers must be strictly ascending, not \[\d, 0, "),
    (_set(70, 1), None, r"index records must be zero after their first 68 bytes"),
    (lambda index: index[:, :-16], None, r"index records must be 80 bytes for 4 blocks of "
                                         r"16 rows, not 64"),
    (None, _fc2_sizes(kept_rows=15), r"entries per group must be a multiple of kept_rows=15 "
                                     r"\(balanced blocks\), not 64"),
    (None, _fc2_sizes(cols=8), r"HP sparse values must be cols=8 wide, not 16"),
    (None, _fc2_sizes(rows=96), r"a group keeps at most 3 blocks, not 4"),
])
def test_corrupted_sparse_layers_are_rejected_naming_the_layer(tmp_path, index_change,
                                                               meta_change, message):
    _, model, _ = pruned_model()
    save_quantized(tmp_path / "q.npz", model)
    changes = _index(tmp_path, index_change) if index_change else {}
    path = _rewrite(tmp_path, tmp_path / "q.npz", meta_change, **changes)
    with pytest.raises(ConfigError, match=f"^{path}: block 1 fc2 sparse: .*{message}"):
        load_quantized(path)


def test_truncated_values_are_rejected_naming_the_layer(tmp_path):
    _, model, _ = pruned_model()
    save_quantized(tmp_path / "q.npz", model)
    with np.load(tmp_path / "q.npz") as archive:
        values = archive["blocks.0.qkv.sparse.values"][:, :-1]
    path = _rewrite(tmp_path, tmp_path / "q.npz", **{"blocks.0.qkv.sparse.values": values})
    with pytest.raises(ConfigError, match=f"^{path}: block 0 qkv sparse: bad HP sparse weight "
                                          r"\(entries per group must be a multiple of "
                                          r"kept_rows=16 \(balanced blocks\), not 15\)$"):
        load_quantized(path)
