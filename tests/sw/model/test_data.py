"""Users' data files: the split and normalisation (every malformed file is a case of
``tests/sw/test_bad_inputs.py``)."""

import numpy as np

from vitforge.sim.model_run import load_model
from vitforge.sw.model.data import DataFiles, calibration_count, parse_channels, split_data
from vitforge.sw.model.vit import PRESETS

SHAPE = PRESETS["tiny"]         # 1 channel of 8x8, 10 classes


def data_file(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def images(count, dtype=np.float32):
    return np.random.default_rng(0).uniform(0, 1, (count, 1, 8, 8)).astype(dtype)


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


def test_normalisation_takes_one_number_or_one_per_channel():
    assert parse_channels("mean", "0.5", 3).ravel().tolist() == [0.5] * 3
    assert parse_channels("mean", "1,2,3", 3).ravel().tolist() == [1, 2, 3]


def test_a_model_runs_on_users_data(tmp_path):
    pictures, labels = images(12, np.float64), np.arange(12) % 10
    path = data_file(tmp_path, images=pictures, labels=labels)
    vit, calibration, test, test_labels = load_model("tiny", data=DataFiles(path))
    np.testing.assert_array_equal(calibration, pictures[:2])
    np.testing.assert_array_equal(test, pictures[2:])
    np.testing.assert_array_equal(test_labels, labels[2:])
