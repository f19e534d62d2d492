"""Calibration: one :class:`~.observers.MagnitudeHistogram` per activation the integer
ViT scales, collected over float forward passes, and the observer rule that turns them
into scales."""

import numpy as np

from vitforge.errors import ConfigError
from vitforge.hw.numerics import PROBABILITY_SHIFT_BITS

from .observers import MagnitudeHistogram, check_observer
from .vit import LAYERNORM_EPS, forward

__all__ = ["Calibration", "BLOCK_TENSORS", "observer_rule", "scaled_activations"]

#: The activations of encoder block ``i`` that get a scale, as ``f"{i}.{name}"``.
BLOCK_TENSORS = ("ln1", "qkv", "scores", "context", "proj", "x1", "ln2", "fc1", "gelu", "fc2",
                 "x2")


def observer_rule(name):
    """The observer ``"auto"`` gives activation ``name`` (see ``docs/quantization.md``)."""
    if name in ("patches", "logits"):
        return "maxabs"
    return "percentile"


def scaled_activations(vit, name, value):
    """The ``(name, value)`` pairs of :class:`Calibration`'s names that the activation
    ``name`` of :func:`~.vit.forward`'s ``record`` gives: itself, and the embedding after
    ``"patches"`` or the class token's final norm and logits after the last block."""
    yield name, value
    if name == "patches":
        yield "embedded", value @ vit.patch_weight + vit.patch_bias
    elif name == f"{vit.shape.depth - 1}.x2":
        from vitforge.sw.params import reference

        cls = reference.layernorm(value[0], vit.norm_gamma, vit.norm_beta, LAYERNORM_EPS)
        yield "norm", cls
        yield "logits", cls @ vit.head_weight + vit.head_bias


class Calibration:
    """Histograms of every activation :func:`~.quantize.quantize_vit` scales.

    The names are those of :func:`~.vit.forward`'s ``record`` (``"tokens"``,
    ``"3.fc1"``, ...; ``"3.probabilities"`` for :meth:`probability_shift`), plus
    ``"embedded"`` (the patch embedding before the position table), ``"norm"``
    (the final LayerNorm of the class token) and ``"logits"`` (the head's output
    for the class token): only the class token reaches the output, so only its
    row sets those two scales.

    Parameters
    ----------
    vit : FloatVit
    """

    def __init__(self, vit):
        self._vit = vit
        self.histograms = {}
        self.images = 0

    @classmethod
    def of(cls, vit, images, progress=None):
        """A calibration of ``vit`` on ``images`` (see :meth:`add`)."""
        calibration = cls(vit)
        calibration.add(images, progress)
        return calibration

    def add(self, images, progress=None):
        """Run the float model on ``images`` (batch, C, H, W) and observe its activations.

        ``progress(done, total)`` is called after each image when given.

        Raises
        ------
        vitforge.errors.ConfigError
            If there are no images, or one is NaN or infinite.
        """
        images = np.asarray(images, dtype=np.float64)
        if images.ndim != 4 or not len(images):
            raise ConfigError(f"calibration images must be a non-empty (batch, C, H, W) array, "
                              f"not of shape {images.shape}")
        if not np.isfinite(images).all():
            raise ConfigError("calibration images must be finite, not NaN or inf")
        for index, image in enumerate(images):
            forward(self._vit, image[None], record=self._observe)
            self.images += 1
            if progress is not None:
                progress(index + 1, len(images))

    def _observe(self, name, value):
        for scaled, activation in scaled_activations(self._vit, name, value):
            self.histograms.setdefault(scaled, MagnitudeHistogram()).update(activation)

    def probability_shift(self, block):
        """The ``probability_shift`` of ``block``'s softmax (0 to 3) whose probability scale
        ``1 / (127 * 2**shift)`` quantizes the observed probabilities with the least
        squared error (:meth:`~.observers.MagnitudeHistogram.best_threshold`)."""
        thresholds = [2.0 ** -shift for shift in range(1 << PROBABILITY_SHIFT_BITS)]
        best = self.histograms[f"{block}.probabilities"].best_threshold(thresholds)
        return thresholds.index(best)

    def scales(self, observer="auto"):
        """Name -> scale (``threshold / 127``) of every observed activation.

        ``observer`` is ``"auto"`` (:func:`observer_rule` per tensor) or one of
        :data:`~.observers.OBSERVERS` for all.
        """
        if observer != "auto":
            check_observer("observer", observer)
        if not self.images:
            raise ConfigError("calibration must observe at least one image first")
        return {name: max(histogram.threshold(
                    observer_rule(name) if observer == "auto" else observer), 1e-12) / 127
                for name, histogram in self.histograms.items()}

