"""Hierarchical pruning (HP) of float ViT weights by magnitude (``docs/sparsity.md``).

A layer's weight ``(K, N)`` is cut into column groups of ``cols`` output
channels and each group's rows into blocks of ``block_rows`` rows. The
*energy* of a row in a group is the sum of its squared weights over the
group's columns; the energy of a block kept with ``r`` rows is the sum of its
``r`` largest row energies. One ``(b, r)`` is chosen for the whole layer, then
each group keeps its ``b`` blocks of largest energy and, inside them, their
``r`` rows of largest energy: the balanced :class:`~vitforge.sw.gemm.sparse.HPPattern`
the accelerator's ``GEMM_SPARSE`` runs.
"""

from dataclasses import replace
import math
import numbers

import numpy as np

from vitforge.sw.gemm.layout import tiles
from vitforge.sw.gemm.sparse import DEFAULT_BLOCK_ROWS, HPPattern, check_block_rows

__all__ = ["hp_pattern", "prune_vit", "layer_names", "layer_weight", "check_sparsity",
           "PRUNED_LAYERS"]

#: The encoder block layers pruning applies to (not the patch embedding, not the head).
PRUNED_LAYERS = ("qkv", "proj", "fc1", "fc2")
#: Kept energies this close (relative) count as equal: the fewer blocks then win.
_ENERGY_TIE = 1e-12


def layer_names(vit):
    """The prunable layers of ``vit``: ``blocks.I.qkv``, ``blocks.I.proj``, ... in order."""
    return [f"blocks.{index}.{layer}" for index in range(len(vit.blocks))
            for layer in PRUNED_LAYERS]


def layer_weight(vit, name):
    """The float weight ``(in, out)`` of layer ``name`` (one of :func:`layer_names`)."""
    _, index, layer = name.split(".")
    return getattr(vit.blocks[int(index)], f"{layer}_weight")


def _check_sparsity(value, name="sparsity"):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], not {value!r}")
    return float(value)


def _check_cols(cols):
    if isinstance(cols, bool) or not isinstance(cols, (int, np.integer)) or cols < 1:
        raise ValueError(f"cols must be a positive integer, not {cols!r}")
    return int(cols)


def _block_energies(weight, cols, block_rows):
    """Row energies ``(groups, blocks, block_rows)``; rows past ``K`` are -1 (never chosen)."""
    rows, columns = weight.shape
    groups = tiles(columns, cols)
    squares = np.zeros((rows, groups * cols))
    squares[:, :columns] = weight ** 2
    energy = np.full((groups, tiles(rows, block_rows) * block_rows), -1.0)
    energy[:, :rows] = squares.reshape(rows, groups, cols).sum(axis=2).T
    return energy.reshape(groups, -1, block_rows)


def _choose_shape(prefix, target):
    """``(b, r)``: ``b * r`` nearest ``target``, then the most kept energy, then fewest blocks.

    ``prefix[g, j, r - 1]`` is the energy of block ``j``'s ``r`` strongest rows in group ``g``.
    """
    _, blocks, block_rows = prefix.shape
    best = -np.sort(-prefix, axis=1)                                # blocks by energy
    kept = np.zeros((blocks + 1, block_rows))                       # [b, r - 1]
    kept[1:] = np.cumsum(best, axis=1).sum(axis=0)
    b, r = np.meshgrid(np.arange(blocks + 1), np.arange(1, block_rows + 1), indexing="ij")
    distance = np.abs(b * r - target)
    nearest = distance == distance.min()
    most = kept[nearest].max()
    chosen = nearest & (kept >= most * (1 - _ENERGY_TIE))
    # Fewest blocks (fewest index bytes) among the best, then the most rows per block.
    b_best = b[chosen].min()
    r_best = r[chosen & (b == b_best)].max()
    return int(b_best), int(r_best)


def hp_pattern(weight, sparsity, *, cols, block_rows=DEFAULT_BLOCK_ROWS):
    """The magnitude-based HP pattern of a float ``(K, N)`` weight at ``sparsity``.

    Parameters
    ----------
    weight : array_like, float ``(K, N)``
    sparsity : float
        Fraction to prune, in [0, 1]. Every group keeps ``L = b * r`` entries
        (fillers included), ``b * r`` as near ``round((1 - sparsity) * K)``
        (halves up) as a ``b <= blocks``, ``1 <= r <= block_rows`` allows;
        among those, the ``(b, r)`` keeping the most squared magnitude (then
        the fewest blocks). ``1`` (or a target of 0 rows) keeps no block; a
        target of all ``K`` rows keeps every block whole (when ``K`` is not a
        multiple of ``block_rows``, with fillers in the short block), so that
        ``0`` never prunes.
    cols : int
        Output channels per group: the GEMM array's columns it is pruned for.
    block_rows : int
        Rows per block (a power of two, 2..256).

    Returns
    -------
    vitforge.sw.gemm.sparse.HPPattern

    Raises
    ------
    ValueError
        If ``weight`` is not a finite 2-D real matrix, or ``sparsity``,
        ``cols`` or ``block_rows`` breaks its rule (naming it and the value).
    """
    sparsity = _check_sparsity(sparsity)
    cols = _check_cols(cols)
    check_block_rows(block_rows)
    weight = np.asarray(weight)
    if weight.ndim != 2 or weight.dtype.kind not in "fiu" or 0 in weight.shape \
            or not np.isfinite(weight).all():
        raise ValueError(f"weight must be a finite 2-D real matrix, not {weight.dtype} of "
                         f"shape {weight.shape}")
    rows, columns = weight.shape
    energy = _block_energies(weight.astype(np.float64), cols, block_rows)
    order = np.argsort(-energy, axis=2, kind="stable")               # strongest rows first
    prefix = np.cumsum(np.take_along_axis(energy, order, axis=2).clip(0), axis=2)
    target = math.floor((1 - sparsity) * rows + 0.5)
    b, r = (prefix.shape[1], block_rows) if target == rows else _choose_shape(prefix, target)
    blocks = np.sort(np.argsort(-prefix[:, :, r - 1], axis=1, kind="stable")[:, :b], axis=1)
    sizes = np.minimum(block_rows, rows - blocks * block_rows)       # (groups, b)
    chosen = np.take_along_axis(order, blocks[:, :, None], axis=1)[:, :, :r]
    offsets = np.sort(np.minimum(chosen, sizes[:, :, None] - 1), axis=2)   # fillers: last row
    return HPPattern(rows=rows, columns=columns, cols=cols, block_rows=block_rows,
                     kept_rows=r, blocks=blocks, offsets=offsets)


def _layer_sparsity(vit, sparsity):
    """``{layer name: sparsity}`` from one number or a dict of some layers."""
    names = layer_names(vit)
    if not isinstance(sparsity, dict):
        value = _check_sparsity(sparsity)
        return {name: value for name in names}
    for name in sparsity:
        if name not in names:
            raise ValueError(f"sparsity names layer {name!r}, which is not one of the prunable "
                             f"layers {names[0]} ... {names[-1]} (blocks.I.qkv/proj/fc1/fc2)")
    return {name: _check_sparsity(value, f"sparsity of {name}")
            for name, value in sparsity.items()}


def prune_vit(vit, sparsity, *, cols=16, block_rows=DEFAULT_BLOCK_ROWS):
    """A copy of ``vit`` with its encoder layers HP-pruned by magnitude.

    Parameters
    ----------
    vit : FloatVit
    sparsity : float or dict
        One sparsity for every encoder layer (QKV, projection, fc1, fc2), or
        ``{"blocks.3.fc1": 0.5, ...}`` for some of them. The patch embedding
        and the head stay dense.
    cols, block_rows : int
        The group width and block height (see :func:`hp_pattern`).

    Returns
    -------
    FloatVit
        Pruned weights set to zero; ``sparsity`` maps each pruned layer to
        its :class:`~vitforge.sw.gemm.sparse.HPPattern` (a layer pruned
        before keeps its pattern unless pruned again).

    Raises
    ------
    ValueError
        On a sparsity outside [0, 1], an unknown layer name, or a bad ``cols``
        or ``block_rows``.
    """
    patterns = dict(vit.sparsity)
    blocks = list(vit.blocks)
    for name, value in _layer_sparsity(vit, sparsity).items():
        weight = layer_weight(vit, name)
        pattern = hp_pattern(weight, value, cols=cols, block_rows=block_rows)
        _, index, layer = name.split(".")
        blocks[int(index)] = replace(blocks[int(index)],
                                     **{f"{layer}_weight": weight * pattern.mask()})
        patterns[name] = pattern
    return replace(vit, blocks=blocks, sparsity=patterns)


def check_sparsity(vit):
    """Raise :exc:`ValueError` unless every pattern of ``vit.sparsity`` fits its layer.

    A pattern must be an :class:`~vitforge.sw.gemm.sparse.HPPattern` of a
    prunable layer, of the layer's shape, and the layer's weights must be zero
    outside it. The message names the layer.
    """
    names = set(layer_names(vit))
    for name, pattern in vit.sparsity.items():
        if name not in names:
            raise ValueError(f"sparsity names layer {name!r}, which is not a prunable layer "
                             f"of this model (blocks.I.qkv/proj/fc1/fc2, I < {len(vit.blocks)})")
        if not isinstance(pattern, HPPattern):
            raise ValueError(f"{name}: pattern must be an HPPattern, not "
                             f"{type(pattern).__name__}")
        weight = layer_weight(vit, name)
        if (pattern.rows, pattern.columns) != weight.shape:
            raise ValueError(f"{name}: pattern of shape {(pattern.rows, pattern.columns)} does "
                             f"not match the weight's {weight.shape}")
        outside = np.count_nonzero(weight[~pattern.mask()])
        if outside:
            raise ValueError(f"{name}: weight has {outside} nonzero values outside its HP "
                             f"pattern")

