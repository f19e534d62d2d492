"""Users' own images: a data ``.npz`` checked against the model, normalised and split.

A data file holds ``images``, float ``(n, C, H, W)`` in the model's channels and size, and
optionally ``labels``, integers ``(n,)`` in ``[0, classes)``; nothing else. Without a
separate calibration file the first :func:`calibration_count` images calibrate and the
rest are the test images (``docs/quantization.md``).
"""

from dataclasses import dataclass
import zipfile

import numpy as np

from vitforge.errors import ConfigError

__all__ = ["ImageData", "DataFiles", "load_images", "split_data", "calibration_count",
           "parse_channels", "MAX_CALIBRATION_IMAGES"]

#: At most this many images of a data file calibrate when no calibration file is given.
MAX_CALIBRATION_IMAGES = 64
_KEYS = ("images", "labels")


@dataclass(frozen=True)
class ImageData:
    """Calibration and test images for a model, and where they came from."""

    calibration: np.ndarray
    test: np.ndarray
    labels: np.ndarray          # or None
    source: str


def calibration_count(images):
    """How many of a data file's ``images`` calibrate: a fifth, at least 1, at most
    :data:`MAX_CALIBRATION_IMAGES`; the rest stay for testing."""
    return min(MAX_CALIBRATION_IMAGES, max(1, images // 5))


def parse_channels(name, text, channels):
    """``--mean``/``--std`` text (one number, or one per channel, comma-separated) as a
    ``(channels, 1, 1)`` array.

    Raises
    ------
    vitforge.errors.ConfigError
        If it is not that many finite numbers (naming ``name``), or a ``std`` is not
        positive.
    """
    try:
        values = np.array([float(item) for item in text.split(",")])
    except ValueError:
        raise ConfigError(f"{name} must be numbers separated by commas, not {text!r}") from None
    if len(values) not in (1, channels) or not np.isfinite(values).all():
        count = "one finite number" if channels == 1 else \
            f"1 or {channels} finite numbers (one per channel)"
        raise ConfigError(f"{name} must be {count}, not {text!r}")
    if name == "std" and (values <= 0).any():
        raise ConfigError(f"std must be positive, not {text!r}")
    return np.broadcast_to(values, (channels,)).reshape(channels, 1, 1)


def load_images(path, shape, *, labels_allowed=True):
    """``(images, labels)`` of data file ``path`` for a model of ``shape`` (a VitShape);
    ``labels`` is ``None`` when the file has none.

    Raises
    ------
    vitforge.errors.ConfigError
        If the file cannot be read, is a model file, lacks ``images`` or has other keys,
        or an array has the wrong shape, dtype or a NaN/inf value (naming the key).
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as error:
        raise ConfigError(f"{path} is not a data .npz file ({error})") from None
    if "meta" in arrays:
        raise ConfigError(f"{path} is a vitforge model file (it has 'meta'): pass it as "
                          f"--model, and images as --data")
    unknown = sorted(set(arrays) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{path} must hold only 'images' and 'labels', not {unknown}")
    if "images" not in arrays:
        raise ConfigError(f"{path} has no 'images' array")
    images = arrays["images"]
    expected = (shape.in_channels, shape.image_size, shape.image_size)
    if images.ndim != 4 or images.shape[1:] != expected or not len(images):
        raise ConfigError(f"{path}: 'images' must have shape (n, {', '.join(map(str, expected))})"
                          f" with n >= 1 for this model, not {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise ConfigError(f"{path}: 'images' must be floating point, not {images.dtype}")
    if not np.isfinite(images).all():
        raise ConfigError(f"{path}: 'images' must be finite, not NaN or inf")
    labels = arrays.get("labels")
    if labels is not None:
        if not labels_allowed:
            labels = None
        elif not np.issubdtype(labels.dtype, np.integer):
            raise ConfigError(f"{path}: 'labels' must be integers, not {labels.dtype}")
        elif labels.shape != (len(images),):
            raise ConfigError(f"{path}: 'labels' must have shape ({len(images)},), one per "
                              f"image, not {labels.shape}")
        elif len(labels) and not (0 <= labels.min() and labels.max() < shape.classes):
            raise ConfigError(f"{path}: 'labels' must lie in [0, {shape.classes}), not "
                              f"[{labels.min()}, {labels.max()}]")
    return images.astype(np.float64), None if labels is None else labels.astype(np.int64)


@dataclass(frozen=True)
class DataFiles:
    """What ``--data``, ``--calibration``, ``--mean`` and ``--std`` name (texts as given)."""

    path: str
    calibration: str = None
    mean: str = None
    std: str = None

    def load(self, shape):
        """The :class:`ImageData` of these files for a model of ``shape``."""
        channels = shape.in_channels
        return split_data(self.path, shape, calibration_path=self.calibration,
                          mean=None if self.mean is None else
                          parse_channels("mean", self.mean, channels),
                          std=None if self.std is None else
                          parse_channels("std", self.std, channels))


def split_data(path, shape, *, calibration_path=None, mean=None, std=None):
    """The :class:`ImageData` of data file ``path`` for a model of ``shape``.

    With ``calibration_path`` its images calibrate and all of ``path``'s are test
    images; otherwise the first :func:`calibration_count` of ``path`` calibrate.
    ``mean`` and ``std`` (``(C, 1, 1)`` arrays, :func:`parse_channels`) normalise
    every image as ``(image - mean) / std``.

    Raises
    ------
    vitforge.errors.ConfigError
        As :func:`load_images`, or if a file without ``calibration_path`` has fewer
        than two images.
    """
    images, labels = load_images(path, shape)
    if calibration_path is not None:
        calibration, _ = load_images(calibration_path, shape, labels_allowed=False)
        source = f"{path} ({len(images)} test images), calibrated on {calibration_path}"
    else:
        if len(images) < 2:
            raise ConfigError(f"{path} must hold at least 2 images (calibration and test) "
                              f"without --calibration, not {len(images)}")
        count = calibration_count(len(images))
        calibration, images = images[:count], images[count:]
        labels = None if labels is None else labels[count:]
        source = f"{path} (first {count} images calibrate, {len(images)} test)"
    mean = 0.0 if mean is None else mean
    std = 1.0 if std is None else std
    return ImageData(calibration=(calibration - mean) / std, test=(images - mean) / std,
                     labels=labels, source=source)
