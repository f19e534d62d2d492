"""What ``--prune`` and ``--prune-mode`` select, before any simulation."""

import numpy as np
import pytest

from vitforge.errors import ConfigError
from vitforge.sim.model_run import _token_counts, load_model, load_pruning
from vitforge.sw.accel.selection import block_counts
from vitforge.sw.model.selector import DEFAULT_RATIOS, save_selectors
from vitforge.sw.model.vit import PRESETS, random_vit


def test_none_is_dense_and_refuses_a_mode():
    vit = load_model("tiny")[0]
    assert load_pruning("none", None, "tiny", vit) is None
    with pytest.raises(ConfigError, match="prune-mode topk needs --prune default or a selector"):
        load_pruning("none", "topk", "tiny", vit)
    with pytest.raises(ConfigError, match="prune-mode must be one of threshold, topk, not 'all'"):
        load_pruning("default", "all", "tiny", vit)


def test_default_is_the_shipped_selector_of_tiny_and_random_ones_for_presets():
    vit = load_model("tiny")[0]
    selectors, config = load_pruning("default", None, "tiny", vit)
    assert (config.blocks, config.ratios, config.mode) == ((1,), (0.7,), "threshold")
    assert load_pruning("default", "topk", "tiny", vit)[1].mode == "topk"
    deit = random_vit(PRESETS["deit-tiny"], np.random.default_rng(0))
    selectors, config = load_pruning("default", None, "deit-tiny", deit, seed=3)
    assert (config.blocks, config.ratios) == ((3, 6, 9), DEFAULT_RATIOS)
    again, _ = load_pruning("default", None, "deit-tiny", deit, seed=3)
    np.testing.assert_array_equal(selectors[0].in_weight, again[0].in_weight)
    with pytest.raises(ConfigError, match=r"prune default has selectors only for the embedded "
                                          r"tiny model and the presets; for model file m\.npz"):
        load_pruning("default", None, "m.npz", deit)


def test_a_selector_file_is_read_for_the_model_and_checked(tmp_path):
    vit = load_model("tiny")[0]
    selectors, config = load_pruning("default", None, "tiny", vit)
    path = tmp_path / "mine.npz"
    save_selectors(path, selectors, config, vit.shape)
    loaded, loaded_config = load_pruning(str(path), "topk", "tiny", vit)
    assert loaded_config.mode == "topk" and loaded_config.blocks == config.blocks
    np.testing.assert_array_equal(loaded[0].fc1_weight, selectors[0].fc1_weight)
    deit = random_vit(PRESETS["deit-tiny"], np.random.default_rng(0))
    with pytest.raises(ConfigError, match="selectors for dim=32, the model has dim=192"):
        load_pruning(str(path), None, "deit-tiny", deit)
    with pytest.raises(ConfigError, match="prune must be one of none, default or a selector "
                                          ".npz file, not 'missing.npz'"):
        load_pruning("missing.npz", None, "tiny", vit)


def test_token_counts_add_a_package_token_per_stage_that_dropped():
    kept = [np.arange(10), np.arange(10), np.arange(4)]
    assert _token_counts(kept, 16) == [1 + 10 + 1, 1 + 10 + 1, 1 + 4 + 2]
    assert _token_counts([np.arange(16)], 16) == [17]


def test_blocks_run_on_the_tokens_the_last_stage_before_them_left():
    shape = PRESETS["deit-tiny"]
    assert block_counts((3, 6, 9), (140, 100, 72), shape) == (197,) * 3 + (140,) * 3 \
        + (100,) * 3 + (72,) * 3
    assert block_counts((0,), (50,), shape) == (50,) * 12
