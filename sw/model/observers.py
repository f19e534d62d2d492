"""Activation observers: the clip threshold (and so the int8 scale) of each tensor.

Every calibration image's activations go into one :class:`MagnitudeHistogram` per
tensor, so calibration holds a fixed 2,048 counters per tensor however many images
it sees, and the statistics only sharpen as images are added. An observer then
turns the histogram into a clip threshold ``T``; the tensor's scale is ``T / 127``
(``docs/quantization.md``):

``maxabs``
    ``T`` is the largest ``|x|`` seen. Exact, but a single outlier sets the scale
    of the whole tensor, and more images can only raise it.
``percentile``
    ``T`` is the :data:`PERCENTILE` percentile of ``|x|``: the largest
    ``1 - PERCENTILE / 100`` of the values saturate.
``mse``
    ``T`` minimizes the expected squared error of quantizing the histogram:
    clipping ``(|x| - T)**2`` above ``T``, rounding ``s**2 / 12`` below it
    (``x**2`` where ``x`` rounds to zero), over :data:`MSE_CANDIDATES`
    thresholds evenly spaced up to the peak.
"""

import math

import numpy as np

from vitforge.errors import ConfigError

__all__ = ["MagnitudeHistogram", "OBSERVERS", "PERCENTILE", "MSE_CANDIDATES", "check_observer"]

#: The observers by name.
OBSERVERS = ("maxabs", "percentile", "mse")
#: The percentile of ``|x|`` the ``percentile`` observer clips at.
PERCENTILE = 99.99
#: Thresholds the ``mse`` observer tries: ``peak * k / MSE_CANDIDATES`` for k = 1..
MSE_CANDIDATES = 512


def check_observer(name, observer):
    """Raise :exc:`~vitforge.errors.ConfigError` unless ``observer`` is one of :data:`OBSERVERS`."""
    if observer not in OBSERVERS:
        raise ConfigError(f"{name} must be one of {', '.join(OBSERVERS)}, not {observer!r}")


class MagnitudeHistogram:
    """A streaming histogram of ``|x|`` over every value a tensor took.

    ``BINS`` bins of equal width cover ``[0, top)``; ``top`` is a power of two
    that doubles, merging pairs of bins, when a larger value arrives, so every
    count stays exact and the bins are never more than twice as wide as the
    peak needs. The exact peak is kept beside the bins.
    """

    BINS = 2048

    def __init__(self):
        self.peak = 0.0
        self.top = 0.0
        self.counts = np.zeros(self.BINS, np.int64)

    def update(self, values):
        """Add every element of ``values`` (array_like of float).

        Raises
        ------
        ValueError
            If a value is NaN or infinite.
        """
        magnitudes = np.abs(np.asarray(values, dtype=np.float64)).ravel()
        if not magnitudes.size:
            return
        peak = float(magnitudes.max())
        if not math.isfinite(peak):
            raise ValueError("values must be finite, not NaN or inf")
        self.peak = max(self.peak, peak)
        if self.top == 0.0 and peak > 0.0:
            self.top = 2.0 ** math.ceil(math.log2(peak))
        while self.peak > self.top:
            self.counts = np.concatenate([self.counts.reshape(-1, 2).sum(axis=1),
                                          np.zeros(self.BINS // 2, np.int64)])
            self.top *= 2
        if self.top == 0.0:
            self.counts[0] += magnitudes.size
            return
        bins = np.minimum((magnitudes * (self.BINS / self.top)).astype(np.int64), self.BINS - 1)
        self.counts += np.bincount(bins, minlength=self.BINS)

    def threshold(self, observer):
        """The clip threshold ``observer`` (one of :data:`OBSERVERS`) chooses; at most the peak."""
        check_observer("observer", observer)
        if observer == "maxabs" or self.peak == 0.0:
            return self.peak
        width = self.top / self.BINS
        if observer == "percentile":
            cumulative = np.cumsum(self.counts)
            index = int(np.searchsorted(cumulative, cumulative[-1] * PERCENTILE / 100))
            return min((index + 1) * width, self.peak)
        return self.best_threshold(self.peak * np.arange(1, MSE_CANDIDATES + 1)
                                   / MSE_CANDIDATES)

    def best_threshold(self, candidates):
        """The one of ``candidates`` (positive clip thresholds) with the least expected
        squared error over the histogram, as the ``mse`` observer measures it."""
        candidates = np.asarray(candidates, dtype=np.float64)
        used = np.flatnonzero(self.counts)
        centers = (used + 0.5) * (self.top / self.BINS)
        counts = self.counts[used].astype(np.float64)
        steps = candidates[:, None] / 127
        error = np.where(centers > candidates[:, None], (centers - candidates[:, None]) ** 2,
                         np.where(centers < steps / 2, centers ** 2, steps ** 2 / 12))
        return float(candidates[np.argmin(error @ counts)])
