"""Run-time token selection (HeatViT/SPViT style): the float reference.

A *selector* runs before some encoder blocks. It scores the alive patch
tokens of one image with a small multi-head predictor, keeps some of them
(``threshold``: keep probability at least 0.5; ``topk``: a fixed count) and
folds the dropped ones into one *package token*. The formulas, the modes and
the choices made here are in ``docs/token-selection.md``; the PyTorch
training script (``train_selectors.py``) mirrors this file.

Token rows at a stage's input: ``[class token, alive patch tokens...,
package tokens of earlier stages...]``. Only the alive patch tokens are
scored; the class token and earlier package tokens are always kept. Kept
tokens stay in their original order; this stage's package token, if any token
was dropped, is appended at the end.
"""

from dataclasses import dataclass, fields
from fractions import Fraction
import json
import math
from numbers import Integral, Real

import numpy as np

from vitforge.errors import ConfigError, ConfigTypeError, UserError
from vitforge.sw.files import atomic_output
from vitforge.sw.params import reference

from .archive import float_arrays, read_archive
from .vit import LAYERNORM_EPS, _block, _embed, _logits, _recorder, patchify

__all__ = ["FloatSelector", "SelectorConfig", "SELECTOR_FORMAT", "MODES", "THRESHOLD",
           "DEFAULT_RATIOS", "default_stages", "selector_shapes", "random_selectors",
           "keep_probabilities", "keep_count", "choose", "package_token", "select",
           "forward_pruned", "save_selectors", "load_selectors"]

SELECTOR_FORMAT = "vitforge-float-selectors-1"
#: The decision modes: ``threshold`` (HeatViT, image-dependent count) and ``topk`` (fixed).
MODES = ("threshold", "topk")
#: ``threshold`` mode keeps a token whose keep probability is at least this.
THRESHOLD = 0.5
#: Cumulative keep ratios of the default stages (DynamicViT, SPViT, HeatViT): 0.7 ** (i + 1).
DEFAULT_RATIOS = (0.7, 0.49, 0.343)


@dataclass
class FloatSelector:
    """One stage's predictor, for heads of ``d = dim / heads`` channels (float64).

    Weights are stored ``(in, out)`` like :class:`~vitforge.sw.model.vit.FloatBlock`.
    ``out_*`` column 0 is the drop score, column 1 the keep score. ``head_fc*``
    is the squeeze-and-excitation MLP over the heads, ``g = max(heads // 2, 1)``.
    """

    ln_gamma: np.ndarray         # (d,)
    ln_beta: np.ndarray          # (d,)
    in_weight: np.ndarray        # (d, d)
    in_bias: np.ndarray          # (d,)
    fc1_weight: np.ndarray       # (d, d // 2)
    fc1_bias: np.ndarray         # (d // 2,)
    fc2_weight: np.ndarray       # (d // 2, d // 4)
    fc2_bias: np.ndarray         # (d // 4,)
    out_weight: np.ndarray       # (d // 4, 2): drop | keep
    out_bias: np.ndarray         # (2,)
    head_fc1_weight: np.ndarray  # (heads, g)
    head_fc1_bias: np.ndarray    # (g,)
    head_fc2_weight: np.ndarray  # (g, heads)
    head_fc2_bias: np.ndarray    # (heads,)


FIELDS = tuple(item.name for item in fields(FloatSelector))


def selector_shapes(dim, heads):
    """Field name -> array shape of a :class:`FloatSelector` for ``dim`` and ``heads``.

    Raises
    ------
    vitforge.errors.ConfigError
        If ``dim`` is not a multiple of ``heads`` or the head dim not a multiple of 4.
    """
    if dim % heads:
        raise ConfigError(f"dim must be a multiple of heads={heads}, not {dim}")
    d = dim // heads
    if d % 4:
        raise ConfigError(f"the head dim (dim / heads) must be a multiple of 4 for a token "
                          f"selector, not {d} (dim={dim}, heads={heads})")
    g = max(heads // 2, 1)
    return {"ln_gamma": (d,), "ln_beta": (d,), "in_weight": (d, d), "in_bias": (d,),
            "fc1_weight": (d, d // 2), "fc1_bias": (d // 2,),
            "fc2_weight": (d // 2, d // 4), "fc2_bias": (d // 4,),
            "out_weight": (d // 4, 2), "out_bias": (2,),
            "head_fc1_weight": (heads, g), "head_fc1_bias": (g,),
            "head_fc2_weight": (g, heads), "head_fc2_bias": (heads,)}


@dataclass(frozen=True)
class SelectorConfig:
    """Where the selectors run and how they decide.

    Parameters
    ----------
    blocks : tuple of int
        Strictly increasing; a selector runs before each of these block indices
        (0-based; 0 <= b < depth, checked against a model by :meth:`check_depth`).
    ratios : tuple of float
        The cumulative keep ratio of each stage, in (0, 1], non-increasing: the
        fraction of the image's patches alive after the stage. ``topk`` keeps
        exactly :func:`keep_count` of them; ``threshold`` ignores them (they are
        the training target).
    mode : str
        ``"threshold"`` or ``"topk"``.
    """

    blocks: tuple
    ratios: tuple
    mode: str = "threshold"

    def __post_init__(self):
        blocks, ratios = self.blocks, self.ratios
        for name, value in (("blocks", blocks), ("ratios", ratios)):
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
                raise ConfigTypeError(f"{name} must be a sequence, not {value!r}")
        if not len(blocks):
            raise ConfigError("blocks must name at least one block, not ()")
        for block in blocks:
            if not isinstance(block, Integral) or isinstance(block, bool):
                raise ConfigTypeError(f"blocks must hold integers, not {block!r}")
            if block < 0:
                raise ConfigError(f"blocks must be block indices >= 0, not {block!r}")
        blocks = tuple(int(block) for block in blocks)
        if any(b <= a for a, b in zip(blocks, blocks[1:])):
            raise ConfigError(f"blocks must be strictly increasing, not {blocks}")
        if len(ratios) != len(blocks):
            raise ConfigError(f"ratios must have one value per block ({len(blocks)}), "
                              f"not {len(ratios)}: {tuple(ratios)}")
        for ratio in ratios:
            if not isinstance(ratio, Real) or isinstance(ratio, bool):
                raise ConfigTypeError(f"ratios must hold real numbers, not {ratio!r}")
            if not 0 < ratio <= 1:
                raise ConfigError(f"ratios must be in (0, 1], not {ratio!r}")
        ratios = tuple(float(ratio) for ratio in ratios)
        if any(b > a for a, b in zip(ratios, ratios[1:])):
            raise ConfigError(f"ratios must be non-increasing (cumulative keep ratios), "
                              f"not {ratios}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "ratios", ratios)

    def check_depth(self, depth):
        """Raise :exc:`ConfigError` unless every selector is before a block of ``depth``."""
        if self.blocks[-1] >= depth:
            raise ConfigError(f"blocks must be below the model's depth={depth}, not "
                              f"{self.blocks}")

    def stage_before(self, block):
        """The stage index of the selector before ``block``, or ``None``."""
        return self.blocks.index(block) if block in self.blocks else None


def default_stages(depth, mode="threshold"):
    """The default stages for a model of ``depth`` blocks.

    Depth 12 (DeiT): before blocks 3, 6 and 9 (the 4th, 7th and 10th) with
    cumulative ratios 0.7, 0.49, 0.343. Other depths: ``round(depth * b / 12)``
    for ``b`` in 3, 6, 9 (Python's round, half to even), clamped to
    ``[1, depth - 1]`` and deduplicated, with the first ratios: depth 2 ->
    block 1, ratio 0.7; depth 6 -> blocks 2, 3, 4.

    Raises
    ------
    vitforge.errors.ConfigError
        If ``depth`` is below 2 (no block has a block before it).
    """
    if not isinstance(depth, Integral) or isinstance(depth, bool):
        raise ConfigTypeError(f"depth must be an integer, not {depth!r}")
    if depth < 2:
        raise ConfigError(f"depth must be at least 2 for token selection, not {depth!r}")
    blocks = []
    for b in (3, 6, 9):
        block = min(max(round(depth * b / 12), 1), depth - 1)
        if block not in blocks:
            blocks.append(block)
    return SelectorConfig(blocks=tuple(blocks), ratios=DEFAULT_RATIOS[:len(blocks)], mode=mode)


def random_selectors(shape, config, rng, scale=0.02):
    """One :class:`FloatSelector` per stage of ``config`` with random weights.

    Weights are normal with standard deviation ``scale`` clipped to two of it
    (as :func:`~vitforge.sw.model.vit.random_vit`), LayerNorm gamma one, biases
    and beta zero. Keep probabilities are then near 0.5, so ``threshold`` mode
    keeps an arbitrary count; ``topk`` keeps exactly its ratio.
    """
    config.check_depth(shape.depth)
    sizes = selector_shapes(shape.dim, shape.heads)

    def make(name, size):
        if name == "ln_gamma":
            return np.ones(size)
        if name.endswith("weight"):
            return np.clip(rng.normal(0, scale, size), -2 * scale, 2 * scale)
        return np.zeros(size)

    return [FloatSelector(**{name: make(name, size) for name, size in sizes.items()})
            for _ in config.blocks]


def keep_probabilities(selector, patches, heads, keep=None):
    """Keep probability ``(p,)`` of each of ``p`` patch tokens ``(p, dim)``.

    Per head ``h`` (channels ``h*d .. (h+1)*d``): LayerNorm(d), Linear(d, d),
    GELU; the first d/2 channels are local, the last d/2 averaged over the
    ``p`` tokens and broadcast; Linear(d, d/2), GELU, Linear(d/2, d/4), GELU,
    Linear(d/4, 2); softmax column 1. The heads are weighted by
    ``sigmoid(GELU(m @ head_fc1 + b) @ head_fc2 + b)`` where ``m`` is each
    head's mean over the tokens and its channels, and normalised by the sum of
    the weights. ``keep(name, value)``, if given, records the intermediates.
    """
    keep = keep or (lambda name, value: value)
    patches = np.asarray(patches, dtype=np.float64)
    count, dim = patches.shape
    if count == 0:
        return np.zeros(0)
    d = dim // heads
    per_head = patches.reshape(count, heads, d).transpose(1, 0, 2)      # (heads, p, d)
    normed = keep("ln", reference.layernorm(per_head, selector.ln_gamma, selector.ln_beta,
                                            LAYERNORM_EPS))
    z = keep("in_gelu", reference.gelu(keep("in", normed @ selector.in_weight
                                            + selector.in_bias)))
    half = d // 2
    local = z[:, :, :half]
    shared = np.broadcast_to(z[:, :, half:].mean(axis=1, keepdims=True), local.shape)
    u = keep("u", np.concatenate([local, shared], axis=2))
    h1 = keep("gelu1", reference.gelu(keep("fc1", u @ selector.fc1_weight + selector.fc1_bias)))
    h2 = keep("gelu2", reference.gelu(keep("fc2", h1 @ selector.fc2_weight
                                           + selector.fc2_bias)))
    scores = keep("scores", h2 @ selector.out_weight + selector.out_bias)   # (heads, p, 2)
    head_keep = keep("head_keep", reference.softmax(scores)[:, :, 1])         # (heads, p)
    means = keep("head_mean", per_head.mean(axis=(1, 2)))                     # (heads,)
    hidden = keep("head_gelu", reference.gelu(keep("head_fc1", means @ selector.head_fc1_weight
                                                   + selector.head_fc1_bias)))
    weights = keep("head_weights", reference.sigmoid(keep(
        "head_fc2", hidden @ selector.head_fc2_weight + selector.head_fc2_bias)))
    return keep("keep", (weights[:, None] * head_keep).sum(axis=0) / weights.sum())


def keep_count(ratio, patches):
    """``ceil(ratio * patches)``, the ``topk`` count, with ``ratio`` taken as its decimal.

    The product is computed exactly on the shortest decimal that prints as
    ``ratio`` (so 0.49 of 100 patches is 49, not ``ceil(49.000000000000007)``).
    """
    return math.ceil(Fraction(repr(float(ratio))) * patches)


def choose(probabilities, mode, count=None):
    """Boolean keep mask of the scored tokens.

    ``threshold``: ``p >= 0.5``. ``topk``: the ``min(count, len)`` highest,
    ties to the lower index (a stable sort on ``-p``).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if mode == "threshold":
        return probabilities >= THRESHOLD
    if mode != "topk":
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    mask = np.zeros(len(probabilities), dtype=bool)
    mask[np.argsort(-probabilities, kind="stable")[:count]] = True
    return mask


def package_token(dropped, probabilities):
    """The package token of dropped tokens ``(q, dim)``: their keep-probability-weighted mean.

    ``sum_i p_i x_i / sum_i p_i``; the plain mean when every ``p_i`` is 0.
    """
    dropped = np.asarray(dropped, dtype=np.float64)
    total = probabilities.sum()
    if total == 0:
        return dropped.mean(axis=0)
    return (probabilities[:, None] * dropped).sum(axis=0) / total


def select(selector, x, alive, *, heads, mode, ratio, patches, keep=None):
    """One stage on one image's tokens ``x``: ``(new x, keep mask over the alive patches)``.

    ``x`` rows: the class token, ``alive`` patch tokens, then earlier package
    tokens. ``patches`` is the image's original patch count (for ``topk``).
    """
    keep = keep or (lambda name, value: value)
    scored = x[1:1 + alive]
    probabilities = keep_probabilities(selector, scored, heads, keep)
    count = min(keep_count(ratio, patches), alive) if mode == "topk" else None
    mask = keep("mask", choose(probabilities, mode, count))
    rows = [x[:1], scored[mask], x[1 + alive:]]
    if not mask.all():
        rows.append(package_token(scored[~mask], probabilities[~mask])[None, :])
    return np.concatenate(rows), mask


def _check_selectors(vit, selectors, config):
    if selectors is None or config is None:
        raise ConfigError("selectors and config must be given together")
    if not isinstance(config, SelectorConfig):
        raise ConfigTypeError(f"config must be a SelectorConfig, not {config!r}")
    config.check_depth(vit.shape.depth)
    if len(selectors) != len(config.blocks):
        raise ConfigError(f"selectors must have one selector per stage "
                          f"({len(config.blocks)}), not {len(selectors)}")
    sizes = selector_shapes(vit.shape.dim, vit.shape.heads)
    for stage, selector in enumerate(selectors):
        for name, size in sizes.items():
            found = np.shape(getattr(selector, name))
            if found != size:
                raise ConfigError(f"selector {stage}: {name} has shape {found}, expected "
                                  f"{size}")


def forward_pruned(vit, images, selectors, config, *, record=None):
    """Logits ``(batch, classes)`` with token selection, and the kept patches.

    Returns
    -------
    (numpy.ndarray, list)
        The logits, and per image a list with, per stage, the ``int64`` array of
        the kept patches' indices (0-based among the image's patches,
        row-major; token row = index + 1 before any selection), ascending.

    ``record`` receives what :func:`~vitforge.sw.model.vit.forward` records
    (with the pruned token counts) and, per stage ``s``, ``select.{s}.input``
    (the stage's input tokens), the predictor's intermediates
    ``select.{s}.{ln,in,in_gelu,u,fc1,gelu1,fc2,gelu2,scores,head_keep,head_mean,
    head_fc1,head_gelu,head_fc2,head_weights,keep,mask}`` and ``select.{s}.output``.
    """
    _check_selectors(vit, selectors, config)
    shape = vit.shape
    logits, kept = [], []
    for image_patches in patchify(images, shape):
        record_ = _recorder(record)
        x = _embed(vit, image_patches, record_)
        alive = np.arange(shape.patches)
        stages = []
        for index, block in enumerate(vit.blocks):
            stage = config.stage_before(index)
            if stage is not None:
                def keep(name, value, prefix=f"select.{stage}"):
                    return record_(f"{prefix}.{name}", value)
                keep("input", x)
                x, mask = select(selectors[stage], x, len(alive), heads=shape.heads,
                                 mode=config.mode, ratio=config.ratios[stage],
                                 patches=shape.patches, keep=keep)
                keep("output", x)
                alive = alive[mask]
                stages.append(alive)
            x = _block(x, block, index, shape.heads, record_)
        logits.append(_logits(vit, x))
        kept.append(stages)
    return np.array(logits), kept


def save_selectors(path, selectors, config, shape):
    """Write the selectors of a model of ``shape`` and their ``config`` to ``path`` (``.npz``).

    Arrays ``stages.{i}.{field}`` in float64, a JSON ``meta`` with ``format``,
    ``dim``, ``heads``, ``blocks``, ``ratios`` and ``mode``; written atomically.
    """
    if not isinstance(config, SelectorConfig):
        raise ConfigTypeError(f"config must be a SelectorConfig, not {config!r}")
    config.check_depth(shape.depth)
    if len(selectors) != len(config.blocks):
        raise ConfigError(f"selectors must have one selector per stage "
                          f"({len(config.blocks)}), not {len(selectors)}")
    sizes = selector_shapes(shape.dim, shape.heads)
    arrays = {}
    for stage, selector in enumerate(selectors):
        for name, size in sizes.items():
            value = np.asarray(getattr(selector, name), dtype=np.float64)
            if value.shape != size:
                raise ConfigError(f"selector {stage}: {name} has shape {value.shape}, "
                                  f"expected {size}")
            arrays[f"stages.{stage}.{name}"] = value
    meta = {"format": SELECTOR_FORMAT, "dim": shape.dim, "heads": shape.heads,
            "blocks": list(config.blocks), "ratios": list(config.ratios), "mode": config.mode}
    with atomic_output(path, suffix=".npz") as out:
        np.savez_compressed(out, meta=np.array(json.dumps(meta)), **arrays)


def load_selectors(path, shape):
    """Read selectors written by :func:`save_selectors` for a model of ``shape``.

    Returns
    -------
    (list of FloatSelector, SelectorConfig)

    Raises
    ------
    vitforge.errors.ConfigError
        If the file is not a selector file, its ``dim``/``heads`` differ from
        ``shape``'s, its config is invalid or does not fit ``shape.depth``, or a
        key is missing, unexpected, of the wrong shape (naming the key and both
        shapes), not real numbers or not finite.
    """
    arrays, meta = read_archive(path, "vitforge selector", (SELECTOR_FORMAT,))
    for key in ("dim", "heads"):
        if meta.get(key) != getattr(shape, key):
            raise ConfigError(f"{path}: selectors for {key}={meta.get(key)!r}, the model has "
                              f"{key}={getattr(shape, key)}")
    try:
        config = SelectorConfig(blocks=tuple(meta["blocks"]), ratios=tuple(meta["ratios"]),
                                mode=meta["mode"])
        config.check_depth(shape.depth)
    except (KeyError, TypeError, UserError) as error:
        text = f"no {error}" if isinstance(error, KeyError) else str(error)
        raise ConfigError(f"{path}: invalid selector config in 'meta' ({text})") from None
    sizes = selector_shapes(shape.dim, shape.heads)
    expected = {f"stages.{stage}.{name}": size for stage in range(len(config.blocks))
                for name, size in sizes.items()}
    values = float_arrays(path, arrays, expected, f"{len(config.blocks)} stage(s)")
    selectors = [FloatSelector(**{name: values[f"stages.{stage}.{name}"] for name in sizes})
                 for stage in range(len(config.blocks))]
    return selectors, config
