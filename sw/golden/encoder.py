"""The integer encoder block computed directly from its parameters (not via a program).

It cross-checks the compiler: a compiled program run by the golden interpreter
must give exactly this.
"""

import numpy as np

from vitforge.errors import ConfigError

from .accel.residual import residual_add
from .gemm.requantize import requantize
from .nonlinear.gelu import gelu
from .nonlinear.layernorm import layernorm_rows
from .nonlinear.softmax import softmax_rows

__all__ = ["encoder_block", "encoder_blocks", "pruned_encoder_blocks", "block_token_counts",
           "linear", "vit_logits", "vit_activations", "pruned_vit_logits"]


def linear(x, layer):
    """``requantize(x @ weight, bias, multiplier, shift)`` for int8 ``x`` (tokens, in)."""
    sums = x.astype(np.float64) @ layer.weight.astype(np.float64)    # exact below 2**53
    return requantize(sums.astype(np.int64), layer.bias, layer.multiplier, layer.shift)


def _matmul_requant(a, b, requant):
    sums = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return requantize(sums, 0, requant.multiplier, requant.shift)


def encoder_block(x, block, keep=None):
    """One :class:`QuantizedEncoderBlock` on int8 tokens ``x`` (N, C); returns int8 (N, C).

    ``keep(name, array)``, when given, receives each int8 activation named as in
    :data:`~vitforge.sw.model.calibration.BLOCK_TENSORS` (``"scores"`` stacked
    over the heads).
    """
    x = np.asarray(x)
    if x.dtype != np.int8 or x.ndim != 2 or x.shape[1] != block.dim:
        raise ConfigError(f"block input must be int8 of shape (tokens, {block.dim}), not "
                          f"{x.dtype} of shape {x.shape}")
    keep = keep or (lambda name, value: None)
    dim, head_dim = block.dim, block.head_dim
    normalized = layernorm_rows(x, block.ln1)
    qkv = linear(normalized, block.qkv)
    heads, scores = [], []
    for head in range(block.heads):
        columns = slice(head * head_dim, (head + 1) * head_dim)
        q = qkv[:, columns]
        k = qkv[:, dim:][:, columns]
        v = qkv[:, 2 * dim:][:, columns]
        scores.append(_matmul_requant(q, k.T, block.score))
        probabilities = softmax_rows(scores[-1], block.softmax,
                                     shift=block.probability_shift).astype(np.int8)
        heads.append(_matmul_requant(probabilities, v, block.context))
    context = np.concatenate(heads, axis=1)
    attention = linear(context, block.proj)
    r = block.residual1
    x1 = residual_add(x, attention, r.x_multiplier, r.y_multiplier, r.shift)
    normalized2 = layernorm_rows(x1, block.ln2)
    fc1 = linear(normalized2, block.fc1)
    hidden = gelu(fc1, block.gelu_table)
    fc2 = linear(hidden, block.fc2)
    r = block.residual2
    x2 = residual_add(x1, fc2, r.x_multiplier, r.y_multiplier, r.shift)
    for name, value in (("ln1", normalized), ("qkv", qkv), ("scores", np.stack(scores)),
                        ("context", context), ("proj", attention), ("x1", x1),
                        ("ln2", normalized2), ("fc1", fc1), ("gelu", hidden), ("fc2", fc2),
                        ("x2", x2)):
        keep(name, value)
    return x2


def vit_activations(model, patches):
    """Every int8 activation of one dense image (:func:`vit_logits`), by the names of
    :class:`~vitforge.sw.model.calibration.Calibration`: ``"tokens"``,
    ``"{block}.{name}"``, and the class token's ``"norm"`` and ``"logits"``."""
    activations = {"tokens": _tokens(model, patches)}
    x = activations["tokens"]
    for index, block in enumerate(model.blocks):
        x = encoder_block(x, block, keep=lambda name, value, index=index:
                          activations.__setitem__(f"{index}.{name}", value))
    activations["norm"] = layernorm_rows(x, model.norm)[0]
    activations["logits"] = linear(activations["norm"][None], model.head)[0]
    return activations


def block_token_counts(block_tokens, blocks, tokens):
    """The token count of each block: ``block_tokens`` checked, or ``tokens`` for all.

    Block ``i`` runs on the first ``block_tokens[i]`` rows of its input; the
    counts never grow, so the class token (row 0) always stays.

    Raises
    ------
    ValueError
        If there is not one count per block, or a count is not a positive
        integer at most the one before it (the first at most ``tokens``).
    """
    if block_tokens is None:
        return (tokens,) * len(blocks)
    counts = tuple(block_tokens)
    if len(counts) != len(blocks):
        raise ConfigError(f"block_tokens must have one count per block ({len(blocks)}), not "
                          f"{len(counts)}: {counts}")
    previous = tokens
    for index, count in enumerate(counts):
        if not isinstance(count, (int, np.integer)) or not 1 <= count <= previous:
            raise ConfigError(f"block_tokens must be positive and non-increasing from the "
                              f"{tokens} input tokens, not {count!r} for block {index} after "
                              f"{previous}")
        previous = count
    return tuple(int(count) for count in counts)


def encoder_blocks(x, blocks, block_tokens=None):
    """``blocks`` in turn on int8 tokens ``x``, block ``i`` on the first ``block_tokens[i]`` rows.

    Without ``block_tokens`` every block sees all tokens. Returns the last
    block's output.
    """
    for block, count in zip(blocks, block_token_counts(block_tokens, blocks, len(x))):
        x = encoder_block(x[:count], block)
    return x


def pruned_encoder_blocks(x, blocks, selectors):
    """``blocks`` in turn on int8 tokens ``x`` (row 0 the class token, the rest patches),
    with the stages of ``selectors`` (QuantizedSelectors) before their blocks.

    Returns
    -------
    (numpy.ndarray, list)
        The last block's output (the kept tokens only) and, per stage, the
        indices of the kept patches (0-based among ``x``'s patches).
    """
    from .selector import select

    config, patches = selectors.config, len(x) - 1
    config.check_depth(len(blocks))
    alive, kept = np.arange(patches), []
    for index, block in enumerate(blocks):
        stage = config.stage_before(index)
        if stage is not None:
            x, mask = select(selectors.stages[stage], x, len(alive), heads=block.heads,
                             mode=config.mode, ratio=config.ratios[stage], patches=patches)
            alive = alive[mask]
            kept.append(alive)
        x = encoder_block(x, block)
    return x, kept


def _tokens(model, patches):
    """The int8 tokens ``(tokens, dim)`` of one image's int8 patch features, class token row 0."""
    patches = np.asarray(patches)
    if patches.dtype != np.int8 or patches.shape != (model.shape.patches,
                                                     model.shape.patch_features):
        raise ConfigError(f"patches must be int8 of shape "
                          f"{(model.shape.patches, model.shape.patch_features)}, not "
                          f"{patches.dtype} of shape {patches.shape}")
    rows = np.concatenate([np.zeros((1, patches.shape[1]), np.int8), patches])
    e = model.embed
    return residual_add(linear(rows, model.patch), model.position, e.x_multiplier,
                        e.y_multiplier, e.shift)


def _head(model, x):
    return linear(layernorm_rows(x, model.norm), model.head)[0]


def vit_logits(model, patches, *, block_tokens=None, selectors=None):
    """Integer logits (int8, ``classes``) of one image's int8 patch features.

    ``patches`` is ``(patches, features)``; the class token is row 0, with zero
    features, as the accelerator sees it. ``block_tokens`` keeps only the first
    rows in later blocks (see :func:`encoder_blocks`). ``selectors``, a
    :class:`~vitforge.sw.model.quantized_selector.QuantizedSelectors`, prunes
    tokens at run time instead (see :func:`pruned_vit_logits`); give at most one
    of the two.
    """
    if selectors is not None:
        if block_tokens is not None:
            raise ConfigError(f"block_tokens must be None when selectors prune the tokens, "
                              f"not {block_tokens!r}")
        return pruned_vit_logits(model, patches, selectors)[0]
    x = encoder_blocks(_tokens(model, patches), model.blocks, block_tokens)
    return _head(model, x)


def pruned_vit_logits(model, patches, selectors):
    """Integer logits of one image with run-time token selection, and the kept patches.

    Before each block of ``selectors.config.blocks`` the stage's integer
    selector runs (:func:`vitforge.sw.golden.selector.select`) on the block's
    int8 input tokens, in the config's mode.

    Returns
    -------
    (numpy.ndarray, list)
        The int8 logits, and per stage the ``int64`` indices of the kept patches
        (0-based among the image's patches, ascending), as
        :func:`vitforge.sw.model.selector.forward_pruned` gives them per image.

    Raises
    ------
    vitforge.errors.ConfigError
        If a stage lies beyond the model's depth, a selector's heads or head
        dim differ from the model's, or ``patches`` is malformed.
    """
    from .selector import select

    from vitforge.sw.model.quantized_selector import check_selectors_fit

    check_selectors_fit(selectors, model.shape)
    config, shape = selectors.config, model.shape
    x = _tokens(model, patches)
    alive = np.arange(shape.patches)
    kept = []
    for index, block in enumerate(model.blocks):
        stage = config.stage_before(index)
        if stage is not None:
            x, mask = select(selectors.stages[stage], x, len(alive), heads=shape.heads,
                             mode=config.mode, ratio=config.ratios[stage],
                             patches=shape.patches)
            alive = alive[mask]
            kept.append(alive)
        x = encoder_block(x, block)
    return _head(model, x), kept
