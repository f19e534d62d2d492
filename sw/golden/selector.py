"""The integer token selector, bit-exact (``docs/numerics.md``, Token selector).

One stage on one image's int8 tokens ``[class token, alive patches...,
earlier package tokens...]``: the alive patches are scored with the integer
predictor of a :class:`~vitforge.sw.model.quantized_selector.QuantizedSelector`,
some are kept (``threshold`` or ``topk``, as in the float reference
:mod:`vitforge.sw.model.selector`) and the dropped ones are folded into an int8
package token. Only operations of the accelerator are used: int8 GEMM with
requantize, LayerNorm and GELU tables on the units that run the model, and
``TOKEN_MEAN`` (:func:`token_means`) and ``TOKEN_SELECT``
(:func:`keep_scores`, :func:`choose`, :func:`compact`) on the selector unit.
"""

from typing import NamedTuple

import numpy as np

from vitforge.errors import ConfigError
from vitforge.hw.numerics import PACKAGE_WEIGHT_SHIFT, SIGMOID_ONE
from vitforge.sw.model.selector import MODES, keep_count

from .encoder import linear
from .nonlinear.gelu import gelu
from .nonlinear.layernorm import layernorm_rows

__all__ = ["round_div", "sigmoid_lookup", "token_means", "patch_means", "broadcast_global_half",
           "SelectorScores", "keep_scores",
           "selector_scores", "choose", "package_weights", "package_token", "compact", "select"]


def round_div(numerator, denominator):
    """``numerator / denominator`` rounded half up (towards +inf at .5), exactly.

    ``floor((2 n + d) / (2 d))`` for integers ``n`` and ``d > 0``; ties round
    like ``requantize``: ``5 / 2 -> 3``, ``-5 / 2 -> -2``. No saturation.
    """
    n = np.asarray(numerator, dtype=np.int64)
    d = np.asarray(denominator, dtype=np.int64)
    if np.any(d <= 0):
        raise ConfigError(f"denominator must be positive, not {d.min()}")
    return (2 * n + d) // (2 * d)


def sigmoid_lookup(q, table):
    """``table[bits(q)]`` for int8 ``q`` (any shape), as int64 Q0.15 probabilities."""
    q = np.asarray(q)
    if q.dtype != np.int8:
        raise TypeError(f"sigmoid input must have dtype int8, not {q.dtype}")
    return np.asarray(table, dtype=np.int64)[q.view(np.uint8)]


def token_means(rows, alive, group):
    """The int8 means of ``rows[1 : 1 + alive]`` over each group of ``group`` consecutive columns.

    ``rows`` is int8 ``(R, words)`` with ``R > alive`` (row 0 is the class
    token); ``words`` must be a multiple of ``group``. Mean ``j`` is
    ``round_div(sum of the alive rows' columns [j group, (j+1) group), alive group)``,
    in the int8 range without saturation (a mean of int8 values); with
    ``alive == 0`` every mean is 0. ``TOKEN_MEAN`` computes this.
    """
    rows = np.asarray(rows)
    words = rows.shape[1]
    if group <= 0 or words % group:
        raise ConfigError(f"group must be a positive divisor of the {words} words, "
                          f"not {group}")
    if alive == 0:
        return np.zeros(words // group, np.int8)
    sums = rows[1:1 + alive].astype(np.int64).sum(axis=0).reshape(-1, group).sum(axis=1)
    return round_div(sums, alive * group).astype(np.int8)


def patch_means(patches, group):
    """:func:`token_means` of patch tokens only (no class token row): ``patches`` (p, words)."""
    return token_means(np.concatenate([patches[:1], patches]), len(patches), group)


def broadcast_global_half(z):
    """Each head's global half ``z[h, :, d/2:]`` (``z`` int8 ``(H, p, d)``) replaced, in place,
    by its int8 mean over the ``p`` tokens, broadcast (``TOKEN_MEAN`` with ``group`` 1)."""
    half = z.shape[2] // 2
    for head in z:
        head[:, half:] = patch_means(head[:, half:], 1)
    return z


class SelectorScores(NamedTuple):
    """The integer scores of one stage's ``p`` alive patches (int64 arrays)."""

    head_keep: np.ndarray    # (H, p): each head's keep probability, Q0.15
    weights: np.ndarray      # (H,): the head weights, Q0.15
    keep: np.ndarray         # (p,): sum_h weights[h] * head_keep[h], Q0.30 times sum(weights)


def keep_scores(differences, weight_logits, keep_table, weight_table):
    """The :class:`SelectorScores` of tokens from the predictor's int8 outputs.

    ``differences`` is the int8 ``(H, p)`` keep-minus-drop output of each
    head, ``weight_logits`` the int8 ``(H,)`` output of ``head_fc2``:
    ``p_h,i = SIG_keep[t_h,i]``, ``w_h = SIG_w[l_h]``, ``K_i = sum_h w_h p_h,i``
    (exact). ``TOKEN_SELECT`` computes this.
    """
    head_keep = sigmoid_lookup(differences, keep_table)
    weights = sigmoid_lookup(weight_logits, weight_table)
    return SelectorScores(head_keep, weights, weights @ head_keep)


def selector_scores(selector, patches, heads):
    """Score the int8 alive patch tokens ``patches`` ``(p, dim)`` of one image.

    Per head ``h`` (channels ``h d .. (h+1) d``), on all heads' rows at once::

        z     = GELU_T(input(LayerNorm(P_h)))                 int8 (p, d)
        z[:, d/2:] = token_means(z[:, d/2:])                  the global half, broadcast
        t     = difference(GELU_T(fc2(GELU_T(fc1(z)))))       int8 (p,): keep - drop

    Head weights from ``m_h = token_means(P_h)`` (the mean over tokens and the
    head's ``d`` channels), ``head_fc2(GELU_T(head_fc1(m)))``; then
    :func:`keep_scores`.

    Returns
    -------
    SelectorScores
    """
    patches = np.asarray(patches)
    count, dim = patches.shape
    d = selector.head_dim
    if patches.dtype != np.int8 or dim != heads * d or heads != selector.heads:
        raise ConfigError(f"patches must be int8 of shape (p, {selector.heads * d}) for "
                          f"{selector.heads} heads of {d} channels, not {patches.dtype} of "
                          f"shape {patches.shape} with heads={heads}")
    if count == 0:
        empty = np.zeros((heads, 0), np.int64)
        return SelectorScores(empty, np.zeros(heads, np.int64), np.zeros(0, np.int64))
    per_head = patches.reshape(count, heads, d).transpose(1, 0, 2)      # (H, p, d)
    z = broadcast_global_half(gelu(linear(
        layernorm_rows(per_head.reshape(heads * count, d), selector.ln), selector.input),
        selector.input_gelu).reshape(heads, count, d))
    fc1 = gelu(linear(z.reshape(heads * count, d), selector.fc1), selector.fc1_gelu)
    hidden = gelu(linear(fc1, selector.fc2), selector.fc2_gelu)
    differences = linear(hidden, selector.difference)[:, 0].reshape(heads, count)
    means = patch_means(patches, d)
    head_hidden = gelu(linear(means[None, :], selector.head_fc1), selector.head_gelu)
    return keep_scores(differences, linear(head_hidden, selector.head_fc2)[0],
                       selector.keep_table, selector.weight_table)


def choose(scores, mode, count=None):
    """Boolean keep mask of the scored tokens from their :class:`SelectorScores`.

    ``threshold``: keep token ``i`` when ``sum_h w_h (2 p_h,i - 2**15) >= 0``,
    i.e. ``2 K_i >= 2**15 sum_h w_h`` (exact, no division; a weighted keep
    probability of exactly 0.5 is kept; all weights 0 keeps every token).
    ``topk``: the ``min(count, p)`` largest ``K_i``, ties to the lower index.
    """
    if mode == "threshold":
        return 2 * scores.keep >= SIGMOID_ONE * scores.weights.sum()
    if mode != "topk":
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    mask = np.zeros(len(scores.keep), dtype=bool)
    mask[np.argsort(-scores.keep, kind="stable")[:count]] = True
    return mask


def package_weights(keep):
    """The dropped tokens' weights in the package token: ``(K_i >> 15) + 1``, never 0."""
    return (np.asarray(keep, dtype=np.int64) >> PACKAGE_WEIGHT_SHIFT) + 1


def package_token(dropped, keep):
    """The int8 package token of dropped int8 tokens ``(q, dim)`` with keep scores ``K_i``.

    ``round_div(sum_i W_i x_i, sum_i W_i)`` per channel with the
    :func:`package_weights` ``W_i``: the keep-weighted mean, rounded half up.
    A weighted mean of int8 values needs no saturation.
    """
    weights = package_weights(keep)
    return round_div(weights @ np.asarray(dropped, dtype=np.int64),
                     int(weights.sum())).astype(np.int8)


def compact(x, alive, mask, keep):
    """``[x[0], kept patches, x[1 + alive:], package token]``: one stage's output tokens.

    ``mask`` (over ``x[1 : 1 + alive]``) keeps patches in order; the package
    token of the dropped ones (:func:`package_token`, with their keep scores
    ``keep``) is appended only if one was dropped.
    """
    scored = x[1:1 + alive]
    rows = [x[:1], scored[mask], x[1 + alive:]]
    if not mask.all():
        rows.append(package_token(scored[~mask], keep[~mask])[None, :])
    return np.concatenate(rows)


def select(selector, x, alive, *, heads, mode, ratio, patches):
    """One stage on one image's int8 tokens ``x``: ``(new x, keep mask over the alive patches)``.

    As :func:`vitforge.sw.model.selector.select`: the class token (row 0) and
    earlier package tokens pass unchanged, kept patches stay in order, and the
    package token of this stage, if any patch was dropped, is appended last.
    ``patches`` is the image's original patch count (``topk`` keeps
    ``min(keep_count(ratio, patches), alive)``).
    """
    scores = selector_scores(selector, x[1:1 + alive], heads)
    count = min(keep_count(ratio, patches), alive) if mode == "topk" else None
    mask = choose(scores, mode, count)
    return compact(x, alive, mask, scores.keep), mask
