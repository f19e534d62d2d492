"""Float ViT weights on disk: one ``.npz`` with a JSON ``meta`` entry, no pickles."""

from dataclasses import asdict, fields
import json
from pathlib import Path

import numpy as np

from vitforge.errors import ConfigError
from vitforge.sw.files import atomic_output
from vitforge.sw.gemm.sparse import PATTERN_SIZES, HPPattern

from .archive import float_arrays, read_archive
from .hp_prune import check_sparsity
from .vit import FloatBlock, FloatVit, VitShape

__all__ = ["save_vit", "load_vit", "FORMAT", "EMBEDDED_WEIGHTS", "EMBEDDED_HP50_WEIGHTS",
           "DIGITS_CALIBRATION_IMAGES", "EMBEDDED_SELECTORS",
           "DEIT_DIGITS_SELECTORS"]

#: Version 2 adds the HP patterns of pruned layers (``sparsity``); version 1 files load as
#: dense models.
FORMAT = "vitforge-float-vit-2"
_DENSE_FORMAT = "vitforge-float-vit-1"
#: The embedded default: the ``tiny`` ViT trained on scikit-learn's digits.
EMBEDDED_WEIGHTS = Path(__file__).parent / "data" / "digits_vit.npz"
#: The embedded model HP-pruned to 50 % (16 columns, 32-row blocks) and fine-tuned
#: (:mod:`.finetune_pruned`).
EMBEDDED_HP50_WEIGHTS = Path(__file__).parent / "data" / "digits_vit_hp50.npz"
#: Quantizing a digits model calibrates it on this many of the first training images.
DIGITS_CALIBRATION_IMAGES = 200
#: Where the trained selectors of the embedded model are shipped.
EMBEDDED_SELECTORS = Path(__file__).parent / "data" / "digits_selectors.npz"
#: The selectors trained (``--model``) for the timm DeiT-T digits model (224x224, 1 channel).
DEIT_DIGITS_SELECTORS = Path(__file__).parent / "data" / "deit_tiny_digits224_selectors.npz"
#: HP patterns are stored as ``sparsity.<layer>.blocks`` and ``.offsets`` arrays, their sizes
#: in ``meta["sparsity"][layer]``.
_SPARSITY = "sparsity."
_TOP = ("patch_weight", "patch_bias", "cls_token", "position", "norm_gamma", "norm_beta",
        "head_weight", "head_bias")


def _expected_shapes(shape):
    d, m = shape.dim, shape.mlp
    top = {"patch_weight": (shape.patch_features, d), "patch_bias": (d,), "cls_token": (d,),
           "position": (shape.tokens, d), "norm_gamma": (d,), "norm_beta": (d,),
           "head_weight": (d, shape.classes), "head_bias": (shape.classes,)}
    block = {"ln1_gamma": (d,), "ln1_beta": (d,), "qkv_weight": (d, 3 * d),
             "qkv_bias": (3 * d,), "proj_weight": (d, d), "proj_bias": (d,), "ln2_gamma": (d,),
             "ln2_beta": (d,), "fc1_weight": (d, m), "fc1_bias": (m,), "fc2_weight": (m, d),
             "fc2_bias": (d,)}
    return top, block


def save_vit(path, vit, extra_meta=None):
    """Write ``vit`` (with its HP patterns, if pruned) to ``path`` atomically.

    ``extra_meta`` (a JSON-able dict) is stored in ``meta`` beside the file's own
    ``format``, ``shape`` and ``sparsity`` keys, which it must not set.

    Raises
    ------
    ValueError
        If ``extra_meta`` sets one of those keys, or a pattern of ``vit.sparsity``
        does not fit its layer (:func:`~.hp_prune.check_sparsity`).
    """
    check_sparsity(vit)
    reserved = sorted({"format", "shape", "sparsity"} & set(extra_meta or {}))
    if reserved:
        raise ValueError(f"extra_meta must not set the reserved keys format, shape and "
                         f"sparsity, not {', '.join(reserved)}")
    arrays = {name: getattr(vit, name) for name in _TOP}
    for index, block in enumerate(vit.blocks):
        for item in fields(FloatBlock):
            arrays[f"blocks.{index}.{item.name}"] = getattr(block, item.name)
    arrays = {key: np.asarray(value, np.float32) for key, value in arrays.items()}
    sizes = {}
    for name, pattern in vit.sparsity.items():
        stored = pattern.to_arrays()
        sizes[name] = {key: stored[key] for key in PATTERN_SIZES}
        for key in ("blocks", "offsets"):
            arrays[f"{_SPARSITY}{name}.{key}"] = stored[key].astype(np.int16)
    meta = {**(extra_meta or {}), "format": FORMAT, "shape": asdict(vit.shape),
            "sparsity": sizes}
    with atomic_output(path, suffix=".npz") as out:
        np.savez_compressed(out, meta=np.array(json.dumps(meta)), **arrays)


def _load_sparsity(path, arrays, meta):
    """The HP patterns of a file, taking their arrays out of ``arrays``."""
    sizes = meta.get("sparsity", {})
    stored = {key: arrays.pop(key) for key in [k for k in arrays if k.startswith(_SPARSITY)]}
    if not isinstance(sizes, dict):
        raise ConfigError(f"{path}: 'sparsity' in 'meta' must map layers to pattern sizes, "
                          f"not {sizes!r}")
    patterns = {}
    for name, values in sizes.items():
        try:
            patterns[name] = HPPattern(
                **{key: values[key] for key in PATTERN_SIZES},
                **{key: stored.pop(f"{_SPARSITY}{name}.{key}") for key in ("blocks", "offsets")})
        except KeyError as error:
            raise ConfigError(f"{path}: layer {name}: bad HP pattern (no {error})") from None
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{path}: layer {name}: bad HP pattern ({error})") from None
    for key in stored:
        raise ConfigError(f"{path}: key {key!r} belongs to no layer in meta['sparsity']")
    return patterns


def load_vit(path):
    """Read a model written by :func:`save_vit`; returns ``(FloatVit, meta)``.

    Files of version 1 (``vitforge-float-vit-1``, no HP patterns) load as dense models.

    Raises
    ------
    vitforge.errors.ConfigError
        If the file is not such a model, or a key is missing, unexpected or of
        the wrong shape (naming the key and both shapes), or an HP pattern is
        malformed, does not fit its layer, or the layer has nonzero weights
        outside it (naming the layer).
    """
    path = Path(path)
    arrays, meta = read_archive(path, "vitforge model", (FORMAT, _DENSE_FORMAT))
    sparsity = _load_sparsity(path, arrays, meta)
    try:
        shape = VitShape(**meta["shape"])
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{path} has no valid model shape in 'meta' ({error})") from None
    top, block = _expected_shapes(shape)
    expected = dict(top)
    for index in range(shape.depth):
        expected.update({f"blocks.{index}.{name}": size for name, size in block.items()})
    values = float_arrays(path, arrays, expected, f"a model of shape {shape}")
    blocks = [FloatBlock(**{name: values[f"blocks.{index}.{name}"] for name in block})
              for index in range(shape.depth)]
    vit = FloatVit(shape=shape, blocks=blocks, sparsity=sparsity,
                   **{name: values[name] for name in _TOP})
    try:
        check_sparsity(vit)
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from None
    return vit, meta
