"""Integer encoder blocks with random weights, calibrated so every stage uses the int8 range.

For tests and benchmarks of the compiler and the accelerator: no float model
is involved. Each requantization is chosen from the sums a calibration input
actually produces (the largest maps to about 100), so no stage saturates wholesale
or collapses to zero.
"""

from dataclasses import replace

import numpy as np

from vitforge.sw.gemm.sparse import HPSparseWeight
from vitforge.sw.gemm.sparse_problems import random_pattern
from vitforge.sw.golden.accel.residual import residual_add
from vitforge.sw.golden.encoder import encoder_block, linear
from vitforge.sw.golden.gemm.requantize import requantize
from vitforge.sw.golden.nonlinear.gelu import gelu
from vitforge.sw.golden.nonlinear.layernorm import layernorm_rows
from vitforge.sw.golden.nonlinear.softmax import softmax_rows
from vitforge.sw.params.gelu import gelu_table
from vitforge.sw.params.layernorm import layernorm_params
from vitforge.sw.params.softmax import exp_params
from vitforge.sw.quant import fixed_point_multiplier

from .quantized import QuantizedEncoderBlock, QuantizedLinear, Requant, ResidualParams
from .quantized_selector import QuantizedSelector, QuantizedSelectors

__all__ = ["random_block", "random_blocks", "random_tokens", "random_integer_selectors",
           "block_selectors", "sparsify", "sparsify_block"]

_TARGET = 100.0
_HALF_SUM = ResidualParams(x_multiplier=1 << 14, y_multiplier=1 << 14, shift=15)


def random_tokens(rng, tokens, dim):
    """Int8 activations of roughly unit-variance data at scale 1/32."""
    return np.clip(np.round(rng.normal(0, 32, (tokens, dim))), -128, 127).astype(np.int8)


def _calibrated_linear(rng, x, out_features):
    weight = np.clip(np.round(rng.normal(0, 40, (x.shape[1], out_features))), -127, 127)
    weight = weight.astype(np.int8)
    sums = x.astype(np.int64) @ weight.astype(np.int64)
    span = np.maximum(np.abs(sums).max(axis=0), 1)
    bias = np.round(rng.uniform(-0.1, 0.1, out_features) * span).astype(np.int64)
    multiplier, shift = fixed_point_multiplier(_TARGET / (span + np.abs(bias)))
    return QuantizedLinear(weight=weight, bias=bias, multiplier=multiplier, shift=shift)


def _calibrated_requant(sums):
    multiplier, shift = fixed_point_multiplier(_TARGET / max(int(np.abs(sums).max()), 1))
    return Requant(multiplier=int(multiplier), shift=int(shift))


def _layernorm(rng, dim):
    return layernorm_params(1 / 32, rng.uniform(0.5, 1.5, dim), rng.uniform(-0.3, 0.3, dim),
                            1e-6, 4 / 127)


def random_block(rng, *, dim, heads, hidden, calibration):
    """A :class:`QuantizedEncoderBlock` calibrated on int8 tokens ``calibration``."""
    head_dim = dim // heads
    ln1 = _layernorm(rng, dim)
    normalized = layernorm_rows(calibration, ln1)
    qkv = _calibrated_linear(rng, normalized, 3 * dim)
    projected = linear(normalized, qkv)
    q, k, v = projected[:, :dim], projected[:, dim:2 * dim], projected[:, 2 * dim:]
    head_slices = [slice(h * head_dim, (h + 1) * head_dim) for h in range(heads)]
    score_sums = np.stack([q[:, s].astype(np.int64) @ k[:, s].astype(np.int64).T
                           for s in head_slices])
    score = _calibrated_requant(score_sums)
    softmax = exp_params(0.06)
    probabilities = [softmax_rows(requantize(sums, 0, score.multiplier, score.shift),
                                  softmax).astype(np.int8) for sums in score_sums]
    context_sums = np.concatenate([p.astype(np.int64) @ v[:, s].astype(np.int64)
                                   for p, s in zip(probabilities, head_slices)], axis=1)
    context = _calibrated_requant(context_sums)
    attention_in = requantize(context_sums, 0, context.multiplier, context.shift)
    proj = _calibrated_linear(rng, attention_in, dim)
    x1 = residual_add(calibration, linear(attention_in, proj), _HALF_SUM.x_multiplier,
                      _HALF_SUM.y_multiplier, _HALF_SUM.shift)
    ln2 = _layernorm(rng, dim)
    fc1 = _calibrated_linear(rng, layernorm_rows(x1, ln2), hidden)
    table = gelu_table(0.05, 0.05)
    fc2 = _calibrated_linear(rng, gelu(linear(layernorm_rows(x1, ln2), fc1), table), dim)
    return QuantizedEncoderBlock(dim=dim, heads=heads, ln1=ln1, qkv=qkv, score=score,
                                 softmax=softmax, context=context, proj=proj,
                                 residual1=_HALF_SUM, ln2=ln2, fc1=fc1, gelu_table=table,
                                 fc2=fc2, residual2=_HALF_SUM)


def random_blocks(rng, *, tokens, dim, heads, hidden, count):
    """Random tokens and ``count`` blocks, each calibrated on the previous one's output.

    Returns ``(tokens, blocks, output)``: the int8 input, the blocks, and the
    int8 result of applying them in turn (the reference a program must match).
    """
    x = random_tokens(rng, tokens, dim)
    blocks, output = [], x
    for _ in range(count):
        blocks.append(random_block(rng, dim=dim, heads=heads, hidden=hidden,
                                   calibration=output))
        output = encoder_block(output, blocks[-1])
    return x, blocks, output


def _random_selector(rng, heads, patches):
    """A :class:`QuantizedSelector` for heads of ``patches.shape[1] // heads`` channels,
    each layer calibrated on what int8 patch tokens ``patches`` produce."""
    from vitforge.sw.golden.selector import broadcast_global_half, patch_means
    from vitforge.sw.params.sigmoid import sigmoid_table

    d = patches.shape[1] // heads
    table = gelu_table(0.05, 0.05)
    ln = _layernorm(rng, d)
    rows = patches.reshape(len(patches), heads, d).transpose(1, 0, 2).reshape(-1, d)
    normalized = layernorm_rows(rows, ln)
    projection = _calibrated_linear(rng, normalized, d)
    z = broadcast_global_half(gelu(linear(normalized, projection), table)
                              .reshape(heads, len(patches), d)).reshape(-1, d)
    fc1 = _calibrated_linear(rng, z, d // 2)
    hidden1 = gelu(linear(z, fc1), table)
    fc2 = _calibrated_linear(rng, hidden1, d // 4)
    hidden2 = gelu(linear(hidden1, fc2), table)
    means = patch_means(patches, d)[None, :]
    head_fc1 = _calibrated_linear(rng, means, max(heads // 2, 1))
    head_fc2 = _calibrated_linear(rng, gelu(linear(means, head_fc1), table), heads)
    return QuantizedSelector(
        ln=ln, input=projection, input_gelu=table, fc1=fc1, fc1_gelu=table, fc2=fc2,
        fc2_gelu=table, difference=_calibrated_linear(rng, hidden2, 1),
        keep_table=sigmoid_table(0.02), head_fc1=head_fc1, head_gelu=table,
        head_fc2=head_fc2, weight_table=sigmoid_table(0.02))


def random_integer_selectors(rng, x, blocks, config):
    """Random integer selectors of ``config`` (SelectorConfig) for ``blocks`` on tokens ``x``.

    Each stage is calibrated on the patches that reach it (:func:`random_block`'s
    way: each requantization maps the largest sum to about 100), so its scores
    spread around one half: ``threshold`` keeps an arbitrary count, ``topk``
    exactly its ratio.
    """
    from vitforge.sw.golden.selector import select

    config.check_depth(len(blocks))
    stages, alive, patches = [], len(x) - 1, len(x) - 1
    for index, block in enumerate(blocks):
        stage = config.stage_before(index)
        if stage is not None:
            stages.append(_random_selector(rng, block.heads, x[1:1 + max(alive, 1)]))
            x, mask = select(stages[-1], x, alive, heads=block.heads, mode=config.mode,
                             ratio=config.ratios[stage], patches=patches)
            alive = int(mask.sum())
        x = encoder_block(x, block)
    return QuantizedSelectors(config=config, stages=tuple(stages))


def block_selectors(prune, mode, rng, x, blocks):
    """The selectors ``vitforge block --prune PRUNE [--prune-mode MODE]`` asks for, or ``None``.

    ``"none"`` is dense; ``"default"`` gives :func:`random_integer_selectors` at
    :func:`~vitforge.sw.model.selector.default_stages` of the stack's depth
    (``mode``, threshold by default).
    """
    from vitforge.errors import ConfigError
    from .selector import default_stages

    if prune == "none":
        if mode is not None:
            raise ConfigError(f"prune-mode {mode} needs --prune default")
        return None
    if prune != "default":
        raise ConfigError(f"prune must be none or default for random blocks, not {prune!r}")
    if len(blocks) < 2:
        raise ConfigError(f"blocks must be at least 2 for --prune (a selector runs before a "
                          f"later block), not {len(blocks)}")
    return random_integer_selectors(rng, x, blocks,
                                    default_stages(len(blocks), mode or "threshold"))


def sparsify(rng, layer, **pattern):
    """``layer`` (a QuantizedLinear) with its weights outside a :func:`random_pattern`
    (keywords ``pattern``) zeroed and stored sparse; the requantization stays."""
    kept = random_pattern(rng, *layer.weight.shape, **pattern)
    weight = np.where(kept.mask(), layer.weight, 0).astype(np.int8)
    return replace(layer, weight=weight, sparse=HPSparseWeight.encode(weight, kept))


def sparsify_block(rng, block, layers=("qkv", "proj", "fc1", "fc2"), **pattern):
    """``block`` with the linear ``layers`` :func:`sparsify`-ed, each on its own pattern
    (keywords ``pattern``, ``kept_blocks`` at most the blocks of the shortest layer)."""
    return replace(block, **{name: sparsify(rng, getattr(block, name), **pattern)
                             for name in layers})
