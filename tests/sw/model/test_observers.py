"""Activation observers and calibration: planted outliers, more data, the probability scale."""

import numpy as np
import pytest

from vitforge.errors import ConfigError
from vitforge.sw.model.calibration import Calibration, observer_rule
from vitforge.sw.model.observers import OBSERVERS, MagnitudeHistogram
from vitforge.sw.model.vit import PRESETS, random_vit


def histogram_of(*batches):
    histogram = MagnitudeHistogram()
    for batch in batches:
        histogram.update(batch)
    return histogram


def test_counts_stay_exact_as_the_range_doubles():
    rng = np.random.default_rng(0)
    small, large = rng.normal(0, 1, 5000), rng.normal(0, 40, 5000)
    grown = histogram_of(small, large)
    assert grown.counts.sum() == 10000
    assert grown.peak == np.abs(np.concatenate([small, large])).max()
    assert grown.top >= grown.peak > grown.top / 2
    # Merging bins as the range grew gives the same counts as binning at the final range.
    direct = MagnitudeHistogram()
    direct.top = grown.top
    direct.update(np.concatenate([small, large]))
    np.testing.assert_array_equal(grown.counts, direct.counts)


def test_a_planted_outlier_sets_maxabs_but_not_the_percentile():
    seed = 1
    values = np.random.default_rng(seed).normal(0, 1, 100_000)
    values[12345] = 80.0
    histogram = histogram_of(values)
    assert histogram.threshold("maxabs") == 80.0
    chosen = histogram.threshold("percentile")
    assert 3.0 < chosen < 5.0, f"seed {seed}: percentile chose {chosen}"
    # MSE weighs the outlier's squared clipping error (over 5,000) against the rounding of
    # the 100,000 others: it clips, but far less.
    assert 40.0 < histogram.threshold("mse") < 79.0


def test_more_calibration_data_moves_the_percentile_little_and_maxabs_much():
    """Max-abs grows with every rare value that more images bring; the percentile
    converges (a heavy-tailed Student-t, as post-GELU and residual activations are)."""
    rng = np.random.default_rng(2)
    images = [rng.standard_t(3, 20_000) for _ in range(256)]
    thresholds = {observer: [histogram_of(*images[:count]).threshold(observer)
                             for count in (16, 64, 256)] for observer in ("maxabs",
                                                                          "percentile")}
    assert max(thresholds["percentile"]) / min(thresholds["percentile"]) < 1.15, thresholds
    assert max(thresholds["maxabs"]) / min(thresholds["maxabs"]) > 1.3, thresholds


def test_zeros_nan_and_unknown_observers():
    zeros = histogram_of(np.zeros(10))
    assert [zeros.threshold(observer) for observer in OBSERVERS] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"^values must be finite, not NaN or inf$"):
        histogram_of(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match=r"^observer must be one of maxabs, percentile, mse, "
                                         r"not 'kl'$"):
        zeros.threshold("kl")


def test_best_threshold_weighs_clipping_against_rounding():
    values = np.random.default_rng(3).uniform(-1, 1, 50_000)
    histogram = histogram_of(values)
    # Uniform values: clipping at half the range costs far more than coarser rounding.
    assert histogram.best_threshold([0.5, 1.0]) == 1.0
    # Two million values at 0.001 round to 0 at a threshold of 1 (2e6 * 1e-6 = 2), more
    # than clipping the single 1.0 to 0.01 costs (0.98).
    spikes = histogram_of(np.concatenate([np.full(2_000_000, 0.001), [1.0]]))
    assert spikes.best_threshold([0.01, 1.0]) == 0.01


def test_the_rule_and_the_calibration_scales():
    assert [observer_rule(name) for name in ("patches", "logits", "3.fc1", "tokens")] == [
        "maxabs", "maxabs", "percentile", "percentile"]
    rng = np.random.default_rng(4)
    vit = random_vit(PRESETS["tiny"], rng, scale=0.2)
    calibration = Calibration.of(vit, rng.uniform(0, 1, (6, 1, 8, 8)))
    names = set(calibration.scales())
    assert {"patches", "embedded", "tokens", "norm", "logits", "0.fc1", "1.x2",
            "1.probabilities"} <= names
    maxabs, auto = calibration.scales("maxabs"), calibration.scales()
    assert all(auto[name] <= maxabs[name] for name in names)
    assert auto["patches"] == maxabs["patches"] and auto["logits"] == maxabs["logits"]
    assert calibration.probability_shift(0) in range(4)
    with pytest.raises(ConfigError, match=r"^calibration images must be finite"):
        calibration.add(np.full((1, 1, 8, 8), np.inf))
    with pytest.raises(ConfigError, match=r"^observer must be one of maxabs, percentile, mse, "
                                          r"not 'best'$"):
        calibration.scales("best")


def test_diffuse_attention_gets_a_finer_probability_scale():
    """Uniform attention over 197 tokens (p = 1/197) rounds to 1/127 or 0 at shift 0; the
    calibration picks the largest shift, 1/1016."""
    calibration = Calibration(random_vit(PRESETS["tiny"], np.random.default_rng(5)))
    calibration.images = 1
    calibration._observe("0.probabilities", np.full((3, 197, 197), 1 / 197))
    assert calibration.probability_shift(0) == 3
    peaked = np.zeros((3, 197, 197))
    peaked[..., 0] = 1.0
    calibration._observe("1.probabilities", peaked)
    assert calibration.probability_shift(1) == 0
