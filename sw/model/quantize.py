"""Post-training quantization of float encoder blocks to :class:`QuantizedEncoderBlock`.

Observer: symmetric max-abs per tensor over the calibration images (the scale of
a tensor is ``max|t| / 127``); weights are symmetric per output channel. Every
integer parameter then follows from the scales as ``docs/numerics.md`` defines
it: requantization multipliers from scale ratios, the softmax exp parameters from
the score scale, the GELU table from the input and output scales of GELU, and
residual adds rescaling both operands to the sum's scale.
"""

import math

import numpy as np

from vitforge.sw.gemm.sparse import HPSparseWeight
from vitforge.sw.params.gelu import gelu_table
from vitforge.sw.params.layernorm import layernorm_params
from vitforge.sw.params.softmax import exp_params
from vitforge.sw.quant import fixed_point_multiplier

from .hp_prune import check_sparsity
from .quantized import QuantizedEncoderBlock, QuantizedLinear, Requant, ResidualParams
from .vit import LAYERNORM_EPS

__all__ = ["tensor_scale", "quantize_tensor", "quantize_block", "quantize_vit",
           "RESIDUAL_SHIFT_MAX"]

RESIDUAL_SHIFT_MAX = 30


def tensor_scale(values):
    """Symmetric max-abs scale of a tensor (or a list of them): ``max|t| / 127``."""
    peak = max(float(np.abs(np.asarray(value)).max()) for value in
               (values if isinstance(values, list) else [values]))
    return max(peak, 1e-12) / 127


def quantize_tensor(values, scale):
    """``clip(round(values / scale), -128, 127)`` as int8."""
    return np.clip(np.round(np.asarray(values) / scale), -128, 127).astype(np.int8)


def _linear(weight, bias, scale_in, scale_out, pattern=None):
    """The integer layer; with an HP ``pattern`` its weight also in the sparse stored form
    (a pruned weight quantizes to zero)."""
    weight_scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127
    weight_q = np.clip(np.round(weight / weight_scale), -127, 127).astype(np.int8)
    acc_scale = scale_in * weight_scale
    bias_q = np.round(bias / acc_scale).astype(np.int64)
    multiplier, shift = fixed_point_multiplier(acc_scale / scale_out)
    sparse = None if pattern is None else HPSparseWeight.encode(weight_q, pattern)
    return QuantizedLinear(weight=weight_q, bias=bias_q, multiplier=multiplier, shift=shift,
                           sparse=sparse)


def _requant(scale):
    multiplier, shift = fixed_point_multiplier(scale)
    return Requant(multiplier=int(multiplier), shift=int(shift))


def _residual(scale_x, scale_y, scale_out):
    ratios = (scale_x / scale_out, scale_y / scale_out)
    shift = RESIDUAL_SHIFT_MAX
    while shift and max(round(r * 2 ** shift) for r in ratios) >= 1 << 16:
        shift -= 1
    return ResidualParams(x_multiplier=round(ratios[0] * 2 ** shift),
                          y_multiplier=round(ratios[1] * 2 ** shift), shift=shift)


def quantize_block(block, heads, record, index, scale_in, patterns=None):
    """Quantize float block ``index`` whose input tokens have scale ``scale_in``.

    ``record`` holds the float activations of the calibration images
    (``vit.forward(..., record=...)``); ``patterns`` maps the block's HP-pruned
    layers (``"qkv"``, ``"proj"``, ``"fc1"``, ``"fc2"``) to their
    :class:`~vitforge.sw.gemm.sparse.HPPattern`, whose layers then carry
    their ``sparse`` form. Returns the integer block and the scale of its output.
    """
    patterns = patterns or {}

    def scale(name):
        return tensor_scale(record[f"{index}.{name}"])

    def linear(name, scale_in, scale_out):
        return _linear(getattr(block, f"{name}_weight"), getattr(block, f"{name}_bias"),
                       scale_in, scale_out, patterns.get(name))

    dim = block.qkv_weight.shape[0]
    head_dim = dim // heads
    s_ln1, s_qkv, s_scores = scale("ln1"), scale("qkv"), scale("scores")
    s_context, s_proj, s_x1 = scale("context"), scale("proj"), scale("x1")
    s_ln2, s_fc1, s_gelu, s_fc2, s_x2 = (scale(n) for n in ("ln2", "fc1", "gelu", "fc2", "x2"))
    quantized = QuantizedEncoderBlock(
        dim=dim, heads=heads,
        ln1=layernorm_params(scale_in, block.ln1_gamma, block.ln1_beta, LAYERNORM_EPS, s_ln1),
        qkv=linear("qkv", s_ln1, s_qkv),
        score=_requant(s_qkv * s_qkv / math.sqrt(head_dim) / s_scores),
        softmax=exp_params(s_scores),
        context=_requant(s_qkv / 127 / s_context),
        proj=linear("proj", s_context, s_proj),
        residual1=_residual(scale_in, s_proj, s_x1),
        ln2=layernorm_params(s_x1, block.ln2_gamma, block.ln2_beta, LAYERNORM_EPS, s_ln2),
        fc1=linear("fc1", s_ln2, s_fc1),
        gelu_table=gelu_table(s_fc1, s_gelu),
        fc2=linear("fc2", s_gelu, s_fc2),
        residual2=_residual(s_x1, s_fc2, s_x2))
    return quantized, s_x2


def quantize_vit(vit, calibration_images):
    """Quantize a :class:`FloatVit` with its activations on ``calibration_images``.

    Returns a :class:`QuantizedVit`; see the module notes for the observer. The layers
    HP-pruned in ``vit.sparsity`` keep their zeros and carry their ``sparse`` form.

    Raises
    ------
    ValueError
        If a pattern of ``vit.sparsity`` does not fit its layer (naming it).
    """
    from vitforge.sw.golden.encoder import linear as integer_linear

    from .quantized import QuantizedVit
    from .vit import forward

    check_sparsity(vit)
    record = {}
    forward(vit, calibration_images, record=record)
    shape = vit.shape
    input_scale = tensor_scale(record["patches"])
    embedded = [patches @ vit.patch_weight + vit.patch_bias for patches in record["patches"]]
    embed_scale = tensor_scale(embedded)
    patch = _linear(vit.patch_weight, vit.patch_bias, input_scale, embed_scale)
    token_scale = tensor_scale(record["tokens"])
    position_scale = tensor_scale(vit.position)
    embed = _residual(embed_scale, position_scale, token_scale)
    # Token order [class, patches...]: the class row's embedding is the patch GEMM
    # of zero features; pick its "position" so the ADD lands on cls + pos[0].
    position = quantize_tensor(vit.position, position_scale)
    zero_row = integer_linear(np.zeros((1, shape.patch_features), np.int8), patch)[0]
    target = quantize_tensor(vit.cls_token + vit.position[0], token_scale).astype(np.int64)
    wanted = (target << embed.shift) - zero_row.astype(np.int64) * embed.x_multiplier
    position[0] = np.clip(np.round(wanted / embed.y_multiplier), -128, 127).astype(np.int8)

    blocks, scale = [], token_scale
    for index, block in enumerate(vit.blocks):
        patterns = {name.rsplit(".", 1)[1]: pattern for name, pattern in vit.sparsity.items()
                    if name.startswith(f"blocks.{index}.")}
        quantized, scale = quantize_block(block, shape.heads, record, index, scale, patterns)
        blocks.append(quantized)
    final = _final_norms(vit, record)
    norm_scale = tensor_scale(final)
    norm = layernorm_params(scale, vit.norm_gamma, vit.norm_beta, LAYERNORM_EPS, norm_scale)
    logits = [row @ vit.head_weight + vit.head_bias for row in final]
    logit_scale = tensor_scale(logits)
    head = _linear(vit.head_weight, vit.head_bias, norm_scale, logit_scale)
    return QuantizedVit(shape=shape, input_scale=input_scale, patch=patch, position=position,
                        embed=embed, blocks=tuple(blocks), norm=norm, head=head,
                        logit_scale=logit_scale)


def _final_norms(vit, record):
    """The float final LayerNorm of every calibration image's tokens."""
    from vitforge.sw.params import reference

    last = f"{vit.shape.depth - 1}.x2"
    return [reference.layernorm(x, vit.norm_gamma, vit.norm_beta, LAYERNORM_EPS)
            for x in record[last]]
