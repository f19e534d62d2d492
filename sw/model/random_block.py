"""Integer encoder blocks with random weights, calibrated so every stage uses the int8 range.

For tests and benchmarks of the compiler and the accelerator: no float model
is involved. Each requantization is chosen from the sums a calibration input
actually produces (the largest maps to about 100), so no stage saturates wholesale
or collapses to zero.
"""

import numpy as np

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

__all__ = ["random_block", "random_blocks", "random_tokens"]

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
