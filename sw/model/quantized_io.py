"""A quantized ViT on disk: one ``.npz`` of integer arrays plus JSON metadata, no pickles."""

from dataclasses import asdict, fields, is_dataclass
import json

import numpy as np

from vitforge.errors import ConfigError
from vitforge.sw.files import atomic_output
from vitforge.sw.params.layernorm import LayerNormParams
from vitforge.sw.params.softmax import ExpParams

from .archive import read_archive
from .quantized import (QuantizedEncoderBlock, QuantizedLinear, QuantizedVit, Requant,
                        ResidualParams)
from .vit import VitShape

__all__ = ["save_quantized", "load_quantized", "QUANTIZED_FORMAT"]

#: Version 2 stores ``position`` with the class token first (row 0); version 1
#: stored it last, ``[patches..., class token]``, and is converted on load.
QUANTIZED_FORMAT = "vitforge-int8-vit-2"
_CLASS_TOKEN_LAST_FORMAT = "vitforge-int8-vit-1"
_TYPES = {cls.__name__: cls for cls in (QuantizedLinear, Requant, ResidualParams,
                                        LayerNormParams, ExpParams, QuantizedEncoderBlock)}


def _flatten(value, prefix, arrays):
    """JSON description of ``value``; its arrays go to ``arrays`` under dotted keys."""
    if isinstance(value, np.ndarray):
        arrays[prefix] = value
        return {"array": prefix}
    if is_dataclass(value) and type(value).__name__ in _TYPES:
        return {"type": type(value).__name__,
                "fields": {f.name: _flatten(getattr(value, f.name), f"{prefix}.{f.name}", arrays)
                           for f in fields(value)}}
    if isinstance(value, (int, float, np.integer, np.floating)):
        return {"value": value.item() if hasattr(value, "item") else value}
    raise TypeError(f"cannot store {prefix} of type {type(value).__name__}")


def _unflatten(description, arrays, where):
    if "array" in description:
        key = description["array"]
        if key not in arrays:
            raise ConfigError(f"{where}: array {key!r} is missing")
        return arrays[key]
    if "type" in description:
        cls = _TYPES.get(description["type"])
        if cls is None:
            raise ConfigError(f"{where}: unknown type {description['type']!r}")
        values = {name: _unflatten(item, arrays, where)
                  for name, item in description["fields"].items()}
        return cls(**values)
    return description["value"]


def save_quantized(path, model):
    """Write ``model`` (a :class:`QuantizedVit`) to ``path`` atomically."""
    arrays = {}
    parts = {name: _flatten(getattr(model, name), name, arrays)
             for name in ("patch", "position", "embed", "norm", "head")}
    parts["blocks"] = [_flatten(block, f"blocks.{i}", arrays)
                       for i, block in enumerate(model.blocks)]
    meta = {"format": QUANTIZED_FORMAT, "shape": asdict(model.shape),
            "input_scale": model.input_scale, "logit_scale": model.logit_scale, "parts": parts}
    with atomic_output(path, suffix=".npz") as out:
        np.savez_compressed(out, meta=np.array(json.dumps(meta)), **arrays)


def load_quantized(path):
    """Read a model written by :func:`save_quantized`.

    Files of the previous format (``vitforge-int8-vit-1``, position table with
    the class token last) are converted: the class token's row moves to the
    front.

    Raises
    ------
    vitforge.errors.ConfigError
        If the file is not a quantized vitforge model or parts of it are missing
        or malformed (the block and field are named).
    """
    arrays, meta = read_archive(path, "vitforge quantized model",
                                (QUANTIZED_FORMAT, _CLASS_TOKEN_LAST_FORMAT))
    try:
        parts = meta["parts"]
        values = {name: _unflatten(parts[name], arrays, f"{path}: {name}")
                  for name in ("patch", "position", "embed", "norm", "head")}
        blocks = tuple(_unflatten(block, arrays, f"{path}: block {i}")
                       for i, block in enumerate(parts["blocks"]))
        shape = VitShape(**meta["shape"])
        input_scale, logit_scale = meta["input_scale"], meta["logit_scale"]
    except (KeyError, TypeError) as error:
        raise ConfigError(f"{path}: malformed model description ({error})") from None
    if meta["format"] == _CLASS_TOKEN_LAST_FORMAT:
        values["position"] = np.roll(values["position"], 1, axis=0)
    return QuantizedVit(shape=shape, input_scale=input_scale, blocks=blocks,
                        logit_scale=logit_scale, **values)
