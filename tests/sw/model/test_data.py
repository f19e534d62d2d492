"""Users' data files: every malformed one refused with one line naming the key."""

import numpy as np
import pytest

from vitforge.errors import ConfigError
from vitforge.sim.model_run import load_model
from vitforge.sw.model.data import DataFiles, calibration_count, parse_channels, split_data
from vitforge.sw.model.vit import PRESETS
from vitforge.sw.model.weights import EMBEDDED_WEIGHTS

SHAPE = PRESETS["tiny"]         # 1 channel of 8x8, 10 classes


def data_file(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def images(count, dtype=np.float32):
    return np.random.default_rng(0).uniform(0, 1, (count, 1, 8, 8)).astype(dtype)


@pytest.mark.parametrize("arrays, message", [
    (dict(labels=np.zeros(3, int)), r"has no 'images' array$"),
    (dict(images=images(3), extra=np.zeros(1)), r"must hold only 'images' and 'labels', not "
                                                r"\['extra'\]$"),
    (dict(images=images(3)[:, :, :4]), r": 'images' must have shape \(n, 1, 8, 8\) with n >= 1 "
                                       r"for this model, not \(3, 1, 4, 8\)$"),
    (dict(images=images(0)), r"not \(0, 1, 8, 8\)$"),
    (dict(images=images(3).astype(np.uint8)), r": 'images' must be floating point, not uint8$"),
    (dict(images=np.where(np.arange(192).reshape(3, 1, 8, 8) == 5, np.nan, images(3))),
     r": 'images' must be finite, not NaN or inf$"),
    (dict(images=images(3), labels=np.zeros(2, int)),
     r": 'labels' must have shape \(3,\), one per image, not \(2,\)$"),
    (dict(images=images(3), labels=np.zeros(3)), r": 'labels' must be integers, not float64$"),
    (dict(images=images(3), labels=np.array([0, 10, 2])),
     r": 'labels' must lie in \[0, 10\), not \[0, 10\]$"),
])
def test_malformed_data_files_are_refused_naming_the_key(tmp_path, arrays, message):
    with pytest.raises(ConfigError, match=message):
        split_data(data_file(tmp_path, **arrays), SHAPE)


def test_model_and_data_files_are_not_confused(tmp_path):
    with pytest.raises(ConfigError, match=r"is a vitforge model file \(it has 'meta'\): pass "
                                          r"it as --model, and images as --data$"):
        split_data(str(EMBEDDED_WEIGHTS), SHAPE)
    path = data_file(tmp_path, images=images(4))
    with pytest.raises(ConfigError, match=r"has no 'meta' entry: not a vitforge model file; it "
                                          r"holds 'images': pass a data file as --data$"):
        load_model(path)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ConfigError, match=r"broken\.npz is not a data \.npz file"):
        split_data(str(tmp_path / "broken.npz"), SHAPE)


def test_the_split_normalisation_and_a_calibration_file(tmp_path):
    pictures, labels = images(30, np.float64), np.arange(30) % 10
    path = data_file(tmp_path, images=pictures, labels=labels)
    assert [calibration_count(n) for n in (2, 30, 1000)] == [1, 6, 64]
    data = split_data(path, SHAPE)
    np.testing.assert_array_equal(data.calibration, pictures[:6])
    np.testing.assert_array_equal(data.test, pictures[6:])
    np.testing.assert_array_equal(data.labels, labels[6:])
    other = data_file(tmp_path, "calibration.npz", images=images(5), labels=np.zeros(5, int))
    data = DataFiles(path, calibration=other, mean="0.5", std="0.25").load(SHAPE)
    np.testing.assert_array_equal(data.test, (pictures - 0.5) / 0.25)
    np.testing.assert_array_equal(data.calibration, (images(5).astype(np.float64) - 0.5) / 0.25)
    np.testing.assert_array_equal(data.labels, labels)
    with pytest.raises(ConfigError, match=r"must hold at least 2 images \(calibration and "
                                          r"test\) without --calibration, not 1$"):
        split_data(data_file(tmp_path, "one.npz", images=images(1)), SHAPE)


@pytest.mark.parametrize("name, text, message", [
    ("mean", "0.5,x", r"^mean must be numbers separated by commas, not '0\.5,x'$"),
    ("mean", "1,2", r"^mean must be 1 or 3 finite numbers \(one per channel\), not '1,2'$"),
    ("std", "nan", r"^std must be 1 or 3 finite numbers"),
    ("std", "1,0,1", r"^std must be positive, not '1,0,1'$"),
])
def test_bad_normalisation_is_refused(name, text, message):
    with pytest.raises(ConfigError, match=message):
        parse_channels(name, text, 3)
    assert parse_channels("mean", "1,2,3", 3).ravel().tolist() == [1, 2, 3]


def test_a_model_runs_on_users_data(tmp_path):
    pictures, labels = images(12, np.float64), np.arange(12) % 10
    path = data_file(tmp_path, images=pictures, labels=labels)
    vit, calibration, test, test_labels = load_model("tiny", data=DataFiles(path))
    np.testing.assert_array_equal(calibration, pictures[:2])
    np.testing.assert_array_equal(test, pictures[2:])
    np.testing.assert_array_equal(test_labels, labels[2:])
