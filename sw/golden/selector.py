"""The integer token selector, bit-exact (``docs/numerics.md``, Token selector).

One stage on one image's int8 tokens ``[class token, alive patches...,
earlier package tokens...]``: the alive patches are scored with the integer
predictor of a :class:`~vitforge.sw.model.quantized_selector.QuantizedSelector`,
some are kept (``threshold`` or ``topk``, as in the float reference
:mod:`vitforge.sw.model.selector`) and the dropped ones are folded into an int8
package token. Only operations of the accelerator (int8 GEMM with requantize,
LayerNorm, GELU tables) and cheap control logic (column sums, one division per
head and channel, comparisons, table look-ups) are used.
"""

from dataclasses import replace
from typing import NamedTuple

import numpy as np

from vitforge.errors import ConfigError
from vitforge.hw.numerics import OPERAND_MAX, OPERAND_MIN, SIGMOID_ONE
from vitforge.sw.model.selector import MODES, keep_count

from .encoder import linear
from .nonlinear.gelu import gelu
from .nonlinear.layernorm import layernorm_rows

__all__ = ["round_div", "sigmoid_lookup", "global_bias", "SelectorScores", "selector_scores",
           "choose", "package_token", "select"]


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


def global_bias(global_half, weight, count):
    """The per-image bias of ``fc1``'s global half: ``round_div(colsum(z_g) @ W_g, count)``.

    ``global_half`` is the int8 ``(count, d/2)`` global half of one head's
    tokens, ``weight`` the int8 rows ``W_g`` of ``fc1`` that multiply it. The
    column sums (``|.| <= 128 count``) times ``W_g`` are exact; the division by
    the alive count rounds half up. Equal to ``fc1``'s accumulator contribution
    of the exact (rational) mean broadcast to every token, rounded half up once.
    """
    sums = np.asarray(global_half, dtype=np.int64).sum(axis=0)
    return round_div(sums @ np.asarray(weight, dtype=np.int64), count)


class SelectorScores(NamedTuple):
    """The integer scores of one stage's ``p`` alive patches (int64 arrays)."""

    head_keep: np.ndarray    # (H, p): each head's keep probability, Q0.15
    weights: np.ndarray      # (H,): the head weights, Q0.15
    keep: np.ndarray         # (p,): sum_h weights[h] * head_keep[h], Q0.30 times sum(weights)


def selector_scores(selector, patches, heads):
    """Score the int8 alive patch tokens ``patches`` ``(p, dim)`` of one image.

    Per head ``h`` (channels ``h d .. (h+1) d``), on all heads' rows at once::

        z     = GELU_T(input(LayerNorm(P_h)))                     int8 (p, d)
        b_img = round_div(colsum(z[:, d/2:]) @ W_g, p)            per-image bias (d/2,)
        f     = requantize(z[:, :d/2] @ W_l, fc1.bias + b_img, ...)
        t     = difference(GELU_T(fc2(GELU_T(f))))                int8 (p,): keep - drop
        p_h   = SIG_keep[t]                                       Q0.15

    Head weights: ``m_h = round_div(sum of P_h, p d)`` (int8), then
    ``w = SIG_w[head_fc2(GELU_T(head_fc1(m)))]`` (Q0.15), and the token's keep
    score ``K_i = sum_h w_h p_h,i`` (exact; at most ``H 2**30``).

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
    rows = per_head.reshape(heads * count, d)
    z = gelu(linear(layernorm_rows(rows, selector.ln), selector.input), selector.input_gelu)
    z = z.reshape(heads, count, d)
    half = d // 2
    fc1 = np.concatenate([
        linear(z[h, :, :half], replace(selector.fc1_local, bias=selector.fc1_local.bias
                                       + global_bias(z[h, :, half:], selector.fc1_global,
                                                     count)))
        for h in range(heads)])
    hidden = gelu(linear(gelu(fc1, selector.fc1_gelu), selector.fc2), selector.fc2_gelu)
    difference = linear(hidden, selector.difference)[:, 0]              # (H p,)
    head_keep = sigmoid_lookup(difference, selector.keep_table).reshape(heads, count)
    means = round_div(per_head.astype(np.int64).sum(axis=(1, 2)), count * d).astype(np.int8)
    head_hidden = gelu(linear(means[None, :], selector.head_fc1), selector.head_gelu)
    weights = sigmoid_lookup(linear(head_hidden, selector.head_fc2)[0], selector.weight_table)
    return SelectorScores(head_keep, weights, weights @ head_keep)


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


def package_token(dropped, keep):
    """The int8 package token of dropped int8 tokens ``(q, dim)`` with keep scores ``K_i``.

    ``round_div(sum_i K_i x_i, sum_i K_i)`` per channel (the keep-weighted
    mean; the heads' normalisation ``sum_h w_h`` cancels), or
    ``round_div(sum_i x_i, q)`` when every ``K_i`` is 0; half up, then
    saturated to int8 (a mean never leaves the int8 range, so the clip is
    inactive).
    """
    dropped = np.asarray(dropped, dtype=np.int64)
    keep = np.asarray(keep, dtype=np.int64)
    total = int(keep.sum())
    if total == 0:
        mean = round_div(dropped.sum(axis=0), len(dropped))
    else:
        mean = round_div(keep @ dropped, total)
    return np.clip(mean, OPERAND_MIN, OPERAND_MAX).astype(np.int8)


def select(selector, x, alive, *, heads, mode, ratio, patches):
    """One stage on one image's int8 tokens ``x``: ``(new x, keep mask over the alive patches)``.

    As :func:`vitforge.sw.model.selector.select`: the class token (row 0) and
    earlier package tokens pass unchanged, kept patches stay in order, and the
    package token of this stage, if any patch was dropped, is appended last.
    ``patches`` is the image's original patch count (``topk`` keeps
    ``min(keep_count(ratio, patches), alive)``).
    """
    scored = x[1:1 + alive]
    scores = selector_scores(selector, scored, heads)
    count = min(keep_count(ratio, patches), alive) if mode == "topk" else None
    mask = choose(scores, mode, count)
    rows = [x[:1], scored[mask], x[1 + alive:]]
    if not mask.all():
        rows.append(package_token(scored[~mask], scores.keep[~mask])[None, :])
    return np.concatenate(rows), mask
