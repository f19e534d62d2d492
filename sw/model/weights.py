"""Float ViT weights on disk: one ``.npz`` with a JSON ``meta`` entry, no pickles."""

from dataclasses import asdict, fields
import json
from pathlib import Path

import numpy as np

from vitforge.errors import ConfigError
from vitforge.sw.files import atomic_output

from .archive import float_arrays, read_archive
from .vit import FloatBlock, FloatVit, VitShape

__all__ = ["save_vit", "load_vit", "FORMAT", "EMBEDDED_WEIGHTS", "EMBEDDED_SELECTORS",
           "DEIT_DIGITS_SELECTORS"]

FORMAT = "vitforge-float-vit-1"
#: The embedded default: the ``tiny`` ViT trained on scikit-learn's digits.
EMBEDDED_WEIGHTS = Path(__file__).parent / "data" / "digits_vit.npz"
#: Where the trained selectors of the embedded model are shipped.
EMBEDDED_SELECTORS = Path(__file__).parent / "data" / "digits_selectors.npz"
#: The selectors trained (``--model``) for the timm DeiT-T digits model (224x224, 1 channel).
DEIT_DIGITS_SELECTORS = Path(__file__).parent / "data" / "deit_tiny_digits224_selectors.npz"
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
    """Write ``vit`` to ``path`` atomically."""
    arrays = {name: getattr(vit, name) for name in _TOP}
    for index, block in enumerate(vit.blocks):
        for item in fields(FloatBlock):
            arrays[f"blocks.{index}.{item.name}"] = getattr(block, item.name)
    meta = {"format": FORMAT, "shape": asdict(vit.shape), **(extra_meta or {})}
    with atomic_output(path, suffix=".npz") as out:
        np.savez_compressed(out, meta=np.array(json.dumps(meta)),
                            **{k: np.asarray(v, np.float32) for k, v in arrays.items()})


def load_vit(path):
    """Read a model written by :func:`save_vit`; returns ``(FloatVit, meta)``.

    Raises
    ------
    vitforge.errors.ConfigError
        If the file is not such a model, or a key is missing, unexpected or of
        the wrong shape (naming the key and both shapes).
    """
    path = Path(path)
    arrays, meta = read_archive(path, "vitforge model", (FORMAT,))
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
    return FloatVit(shape=shape, blocks=blocks, **{name: values[name] for name in _TOP}), meta
