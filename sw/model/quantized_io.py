"""A quantized ViT on disk: one ``.npz`` of integer arrays plus JSON metadata, no pickles."""

from dataclasses import asdict, fields, is_dataclass
import json
import math

import numpy as np

from vitforge.errors import ConfigError
from vitforge.sw.files import atomic_output
from vitforge.sw.gemm.sparse import PATTERN_SIZES, HPSparseWeight
from vitforge.sw.params.layernorm import LayerNormParams
from vitforge.sw.params.softmax import ExpParams

from .archive import read_archive
from .quantized import (QuantizedEncoderBlock, QuantizedLinear, QuantizedVit, Requant,
                        ResidualParams)
from .vit import VitShape

__all__ = ["save_quantized", "load_quantized", "QUANTIZED_FORMAT"]

#: Version 4 adds each block's ``probability_shift``, the ``activation_scales`` and the
#: ``activation_offsets``; version 3 files (shift 0, neither) load as they are. Version 3
#: stores HP-pruned layers compressed (``sparse``: values and index records, no dense
#: weight). Version 2 (all dense) loads as is; version 1 stored ``position`` with the class
#: token last, ``[patches..., class token]``, and is converted on load.
QUANTIZED_FORMAT = "vitforge-int8-vit-4"
_SHIFT_FREE_FORMAT = "vitforge-int8-vit-3"
_DENSE_FORMAT = "vitforge-int8-vit-2"
_CLASS_TOKEN_LAST_FORMAT = "vitforge-int8-vit-1"
_TYPES = {cls.__name__: cls for cls in (QuantizedLinear, Requant, ResidualParams,
                                        LayerNormParams, ExpParams, QuantizedEncoderBlock)}


def _stored_fields(value):
    """The fields of dataclass ``value`` a file holds: not those that are ``None``, and not
    the dense weight of a sparse layer (its ``sparse`` form holds it)."""
    names = [f.name for f in fields(value) if getattr(value, f.name) is not None]
    if isinstance(value, QuantizedLinear) and value.sparse is not None:
        names.remove("weight")
    return names


def _flatten_sparse(value, prefix, arrays):
    """An :class:`HPSparseWeight` as its values and index records, its sizes in JSON."""
    arrays[f"{prefix}.values"] = value.values
    arrays[f"{prefix}.index"] = value.index_bytes()
    sizes = value.pattern.to_arrays()
    return {"hp_sparse": {key: sizes[key] for key in PATTERN_SIZES},
            "values": f"{prefix}.values", "index": f"{prefix}.index"}


def _flatten(value, prefix, arrays):
    """JSON description of ``value``; its arrays go to ``arrays`` under dotted keys."""
    if isinstance(value, np.ndarray):
        arrays[prefix] = value
        return {"array": prefix}
    if isinstance(value, HPSparseWeight):
        return _flatten_sparse(value, prefix, arrays)
    if is_dataclass(value) and type(value).__name__ in _TYPES:
        return {"type": type(value).__name__,
                "fields": {name: _flatten(getattr(value, name), f"{prefix}.{name}", arrays)
                           for name in _stored_fields(value)}}
    if isinstance(value, (int, float, np.integer, np.floating)):
        return {"value": value.item() if hasattr(value, "item") else value}
    raise TypeError(f"cannot store {prefix} of type {type(value).__name__}")


def _array(key, arrays, where):
    if key not in arrays:
        raise ConfigError(f"{where}: array {key!r} is missing")
    return arrays[key]


def _unflatten_sparse(description, arrays, where):
    """Parse and check a sparse layer's stored form (:meth:`HPSparseWeight.from_stored`)."""
    values = _array(description["values"], arrays, where)
    index = _array(description["index"], arrays, where)
    sizes = description["hp_sparse"]
    try:
        weight = HPSparseWeight.from_stored(values, index, **{
            key: sizes[key] for key in PATTERN_SIZES if key != "cols"})
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: bad HP sparse weight ({error})") from None
    if weight.pattern.cols != sizes["cols"]:
        raise ConfigError(f"{where}: HP sparse values must be cols={sizes['cols']} wide, not "
                          f"{weight.pattern.cols}")
    return weight


def _unflatten(description, arrays, where):
    """Inverse of :func:`_flatten`; ``where`` (file and part, ``"...: block 1 fc2"``) names
    the part in errors."""
    if "array" in description:
        return _array(description["array"], arrays, where)
    if "hp_sparse" in description:
        return _unflatten_sparse(description, arrays, where)
    if "type" in description:
        cls = _TYPES.get(description["type"])
        if cls is None:
            raise ConfigError(f"{where}: unknown type {description['type']!r}")
        values = {name: _unflatten(item, arrays, f"{where} {name}")
                  for name, item in description["fields"].items()}
        if cls is QuantizedLinear and "weight" not in values and "sparse" in values:
            values["weight"] = values["sparse"].dense()
        try:
            return cls(**values)
        except ValueError as error:
            raise ConfigError(f"{where}: {error}") from None
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
    for key in ("activation_scales", "activation_offsets"):
        if getattr(model, key) is not None:
            meta[key] = {name: float(value) for name, value in getattr(model, key).items()}
    with atomic_output(path, suffix=".npz") as out:
        np.savez_compressed(out, meta=np.array(json.dumps(meta)), **arrays)


def load_quantized(path):
    """Read a model written by :func:`save_quantized`.

    Files of format version 2 (dense) load as they are; those of version 1
    (``vitforge-int8-vit-1``, position table with the class token last) are
    converted: the class token's row moves to the front. A sparse layer's
    index records are parsed and checked (block numbers, row offsets, balance).

    Raises
    ------
    vitforge.errors.ConfigError
        If the file is not a quantized vitforge model or parts of it are missing
        or malformed (the block and layer are named: ``block 1 fc2``).
    """
    arrays, meta = read_archive(path, "vitforge quantized model",
                                (QUANTIZED_FORMAT, _SHIFT_FREE_FORMAT, _DENSE_FORMAT,
                                 _CLASS_TOKEN_LAST_FORMAT))
    try:
        parts = meta["parts"]
        values = {name: _unflatten(parts[name], arrays, f"{path}: {name}")
                  for name in ("patch", "position", "embed", "norm", "head")}
        blocks = tuple(_unflatten(block, arrays, f"{path}: block {i}")
                       for i, block in enumerate(parts["blocks"]))
        shape = VitShape(**meta["shape"])
        input_scale, logit_scale = meta["input_scale"], meta["logit_scale"]
        activation_scales = _activation_values(meta, "activation_scales", path, positive=True)
        activation_offsets = _activation_values(meta, "activation_offsets", path)
    except (KeyError, TypeError) as error:
        raise ConfigError(f"{path}: malformed model description ({error})") from None
    if meta["format"] == _CLASS_TOKEN_LAST_FORMAT:
        values["position"] = np.roll(values["position"], 1, axis=0)
    return QuantizedVit(shape=shape, input_scale=input_scale, blocks=blocks,
                        logit_scale=logit_scale, activation_scales=activation_scales,
                        activation_offsets=activation_offsets, **values)


def _activation_values(meta, key, path, positive=False):
    """``meta[key]``, a dict of names to numbers (absent before format version 4)."""
    stored = meta.get(key)
    if stored is None:
        return None
    if not isinstance(stored, dict) or not all(
            isinstance(value, (int, float)) and math.isfinite(value)
            and (value > 0 or not positive) for value in stored.values()):
        kind = "positive numbers" if positive else "finite numbers"
        raise ConfigError(f"{path}: {key} must map names to {kind}")
    return {str(name): float(value) for name, value in stored.items()}
