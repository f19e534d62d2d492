"""Masked fine-tuning of HP-pruned models (needs the `train` extra)."""

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="fine-tuning pruned models needs PyTorch (pip install -e '.[train]')")

from vitforge.sw.model.finetune_pruned import finetune_pruned  # noqa: E402
from vitforge.sw.model.hp_prune import layer_names, layer_weight, prune_vit  # noqa: E402
from vitforge.sw.model.vit import PRESETS, random_vit  # noqa: E402


def tune(pruned, seed=0):
    rng = np.random.default_rng(1)
    images, labels = rng.uniform(0, 1, (40, 1, 8, 8)), rng.integers(0, 10, 40)
    return finetune_pruned(pruned, images, labels, epochs=2, lr=1e-2, seed=seed, batch=16,
                           log=lambda line: None)


def test_pruned_weights_stay_exactly_zero_and_the_others_learn():
    vit = random_vit(PRESETS["tiny"], np.random.default_rng(0))
    pruned = prune_vit(vit, {"blocks.0.fc1": 0.5, "blocks.1.fc2": 0.75})
    tuned = tune(pruned)
    assert list(tuned.sparsity) == list(pruned.sparsity)
    for name, pattern in tuned.sparsity.items():
        weight = layer_weight(tuned, name)
        assert not weight[~pattern.mask()].any()
        assert np.count_nonzero(weight) == np.count_nonzero(pattern.mask())
    for name in layer_names(vit):
        assert not np.array_equal(layer_weight(tuned, name), layer_weight(pruned, name))


def test_fine_tuning_is_reproducible():
    pruned = prune_vit(random_vit(PRESETS["tiny"], np.random.default_rng(0)), 0.5)
    first, second, other = tune(pruned), tune(pruned), tune(pruned, seed=1)
    for name in layer_names(pruned):
        np.testing.assert_array_equal(layer_weight(first, name), layer_weight(second, name))
    assert not np.array_equal(first.head_weight, other.head_weight)
