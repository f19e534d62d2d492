"""The shipped HP-pruned digits model (``tiny-hp50``) and loading digits model files."""

import numpy as np
import pytest

from vitforge.errors import ConfigError
from vitforge.sim.model_run import load_model
from vitforge.sw.model.digits import digits_split
from vitforge.sw.model.finetune_pruned import digits_accuracies
from vitforge.sw.model.vit import VitShape, random_vit
from vitforge.sw.model.weights import (EMBEDDED_HP50_WEIGHTS, EMBEDDED_WEIGHTS, load_vit,
                                       save_vit)


def test_the_shipped_pruned_model_keeps_the_dense_accuracy_in_int8():
    vit, meta = load_vit(EMBEDDED_HP50_WEIGHTS)
    assert meta["data"] == "digits"
    assert meta["hp"] == {"sparsity": 0.5, "cols": 16, "block_rows": 32}
    assert len(vit.sparsity) == 8
    for pattern in vit.sparsity.values():
        assert (pattern.sparsity, pattern.cols, pattern.block_rows) == (0.5, 16, 32)
    float_accuracy, int8_accuracy = digits_accuracies(vit)
    dense_float, _ = digits_accuracies(load_vit(EMBEDDED_WEIGHTS)[0])
    assert float_accuracy == meta["float_test_accuracy"]
    # The file records the int8 accuracy it had when shipped; quantization may only improve it
    # (issue 14's observers and probability scales raised it from 96.66% to 96.94%).
    assert int8_accuracy >= meta["accuracy"]["tuned"]["int8"]
    assert int8_accuracy >= dense_float - 0.01                      # the goal


def test_tiny_hp50_loads_with_its_patterns_and_the_digits_split():
    vit, calibration, images, labels = load_model("tiny-hp50")
    (train, _), (test, test_labels) = digits_split()
    assert len(vit.sparsity) == 8
    np.testing.assert_array_equal(calibration, train[:200])
    np.testing.assert_array_equal(images, test)
    np.testing.assert_array_equal(labels, test_labels)


def test_model_files_on_digits_use_the_digits_split(tmp_path):
    vit, _ = load_vit(EMBEDDED_HP50_WEIGHTS)
    save_vit(tmp_path / "digits.npz", vit, {"data": "digits"})
    loaded, calibration, images, labels = load_model(str(tmp_path / "digits.npz"))
    assert list(loaded.sparsity) == list(vit.sparsity) and labels.shape == (359,)
    assert calibration.shape == (200, 1, 8, 8)
    save_vit(tmp_path / "other.npz", vit)
    assert load_model(str(tmp_path / "other.npz"))[3] is None        # random images


def test_a_digits_file_of_another_image_shape_is_rejected(tmp_path):
    shape = VitShape(image_size=12, patch_size=2, in_channels=1, dim=32, depth=1, heads=2,
                     mlp=64, classes=10)
    save_vit(tmp_path / "m.npz", random_vit(shape, np.random.default_rng(0)),
             {"data": "digits"})
    with pytest.raises(ConfigError, match=r"m\.npz says its data is 'digits', but the digits "
                                          r"cannot feed a 12x12 1-channel model$"):
        load_model(str(tmp_path / "m.npz"))
