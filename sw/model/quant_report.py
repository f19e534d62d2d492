"""Where int8 accuracy goes: every quantized activation against the float model's.

For each image the integer golden model (:func:`~vitforge.sw.golden.encoder.vit_activations`)
and the float model run side by side; each int8 activation times its scale is
compared with the float activation of the same name. The error of a tensor is
therefore the error accumulated up to it, not only its own rounding.
"""

import math

import numpy as np

from .calibration import scaled_activations
from .vit import forward

__all__ = ["activation_errors", "LayerError", "logit_comparison"]


def logit_comparison(integers, logit_scale, floats, labels=None):
    """Int8 logits ``integers`` (batch, classes) of scale ``logit_scale`` against float
    ``floats``: ``top1_agreement``, ``logit_cosine`` (the mean over images), and the top-1
    ``float_accuracy`` and ``int8_accuracy`` on ``labels`` (``None`` without)."""
    scaled = np.asarray(integers, dtype=np.float64) * logit_scale
    floats = np.asarray(floats, dtype=np.float64)
    cosine = (np.sum(scaled * floats, axis=1) / np.linalg.norm(scaled, axis=1)
              / np.linalg.norm(floats, axis=1))

    def accuracy(logits):
        return None if labels is None else float((logits.argmax(1) == labels).mean())

    return {"float_accuracy": accuracy(floats), "int8_accuracy": accuracy(scaled),
            "top1_agreement": float((scaled.argmax(1) == floats.argmax(1)).mean()),
            "logit_cosine": float(np.mean(cosine))}


class LayerError(dict):
    """One activation's error over the images: ``name``, ``block`` (``None`` outside the
    encoder), ``scale``, ``sqnr_db`` (signal power over error power, summed over the
    images), ``max_error`` (largest ``|float - int8 * scale|``, plus the offset where the
    activation has one) and ``clipped`` (the fraction of float values beyond the int8
    range, which saturate)."""


def _float_activations(vit, image):
    """The float activations of one image under :class:`~.calibration.Calibration`'s names."""
    record = {}
    forward(vit, image[None],
            record=lambda name, value: record.update(scaled_activations(vit, name, value)))
    return record


def activation_errors(vit, model, images):
    """The :class:`LayerError` of every activation of ``model`` (quantized from ``vit``,
    with its ``activation_scales``) on float ``images`` (batch, C, H, W), in network order.

    Raises
    ------
    vitforge.errors.ConfigError
        If ``model`` does not carry its activation scales.
    """
    from vitforge.errors import ConfigError
    from vitforge.sw.golden.encoder import vit_activations

    from .quantize import quantized_patches

    scales = model.activation_scales
    if scales is None:
        raise ConfigError("model must carry its activation scales (quantize it with this "
                          "version), not None")
    offsets = model.activation_offsets or {}
    totals = {}
    for image in np.asarray(images, dtype=np.float64):
        floats = _float_activations(vit, image)
        for name, value in vit_activations(model, quantized_patches(model, image[None])[0]).items():
            real, offset = floats[name], offsets.get(name, 0.0)
            error = real - (value.astype(np.float64) * scales[name] + offset)
            codes = (real - offset) / scales[name]
            signal, noise, peak, clipped, count = totals.get(name, (0.0, 0.0, 0.0, 0, 0))
            totals[name] = (signal + float(np.sum(real ** 2)), noise + float(np.sum(error ** 2)),
                            max(peak, float(np.abs(error).max())),
                            clipped + int(np.sum((codes >= 127.5) | (codes < -128.5))),
                            count + value.size)
    rows = []
    for name, (signal, noise, peak, clipped, count) in totals.items():
        block = int(name.split(".")[0]) if name[0].isdigit() else None
        rows.append(LayerError(
            name=name, block=block, scale=scales[name],
            sqnr_db=math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-300) / noise),
            max_error=peak, clipped=clipped / count))
    return rows
