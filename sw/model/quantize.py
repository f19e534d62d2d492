"""Post-training quantization of float encoder blocks to :class:`QuantizedEncoderBlock`.

Activations: symmetric per tensor, the clip threshold chosen by an observer over
the calibration images (:mod:`.observers`, :mod:`.calibration`); weights are
symmetric max-abs per output channel. Every integer parameter then follows from the
scales as ``docs/numerics.md`` defines it: requantization multipliers from scale
ratios, the softmax exp parameters from the score scale, the GELU table from the
input and output scales of GELU, and residual adds rescaling both operands to the
sum's scale.
"""

import math

import numpy as np

from vitforge.errors import ConfigError
from vitforge.hw.numerics import PROBABILITY_SHIFT_BITS
from vitforge.sw.gemm.sparse import HPSparseWeight
from vitforge.sw.params.gelu import gelu_output_range, gelu_table
from vitforge.sw.params.layernorm import layernorm_params
from vitforge.sw.params.softmax import exp_params
from vitforge.sw.quant import fixed_point_multiplier

from .calibration import BLOCK_TENSORS, Calibration
from .hp_prune import check_sparsity
from .quantized import QuantizedEncoderBlock, QuantizedLinear, Requant, ResidualParams
from .vit import LAYERNORM_EPS

__all__ = ["tensor_scale", "quantize_tensor", "quantized_patches", "quantize_block",
           "quantize_vit",
           "quantize_calibrated", "RESIDUAL_SHIFT_MAX"]

RESIDUAL_SHIFT_MAX = 30


def tensor_scale(values):
    """Symmetric max-abs scale of a tensor (or a list of them): ``max|t| / 127``."""
    peak = max(float(np.abs(np.asarray(value)).max()) for value in
               (values if isinstance(values, list) else [values]))
    return max(peak, 1e-12) / 127


def quantize_tensor(values, scale):
    """``clip(round(values / scale), -128, 127)`` as int8."""
    return np.clip(np.round(np.asarray(values) / scale), -128, 127).astype(np.int8)


def quantized_patches(model, images):
    """The int8 patch features ``(batch, patches, features)`` that ``model`` (a QuantizedVit)
    sees for float ``images`` (batch, C, H, W)."""
    from .vit import patchify

    return quantize_tensor(patchify(images, model.shape), model.input_scale)


def _linear(weight, bias, scale_in, scale_out, pattern=None, offset_in=0.0):
    """The integer layer; with an HP ``pattern`` its weight also in the sparse stored form
    (a pruned weight quantizes to zero). An input ``q`` standing for ``q * scale_in +
    offset_in`` has the offset's product with the weights folded into the bias."""
    weight_scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127
    weight_q = np.clip(np.round(weight / weight_scale), -127, 127).astype(np.int8)
    acc_scale = scale_in * weight_scale
    folded = offset_in * weight_q.sum(axis=0, dtype=np.int64) / scale_in
    bias_q = np.round(bias / acc_scale + folded).astype(np.int64)
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


def quantize_block(block, heads, scale, index, scale_in, patterns=None, probability_shift=0,
                   gelu_offset=0.0):
    """Quantize float block ``index`` whose input tokens have scale ``scale_in``.

    ``scale(name)`` is the scale of the float activation ``name`` (``"3.fc1"``,
    :meth:`Calibration.scales`); the block's softmax gives probabilities of scale
    ``1 / (127 * 2**probability_shift)``; its GELU output ``q`` stands for
    ``q * scale("{index}.gelu") + gelu_offset`` (the offset folds into ``fc2``'s
    bias, :func:`~vitforge.sw.params.gelu.gelu_output_range`); ``patterns`` maps the
    block's HP-pruned layers (``"qkv"``, ``"proj"``, ``"fc1"``, ``"fc2"``) to their
    :class:`~vitforge.sw.gemm.sparse.HPPattern`, whose layers then carry their
    ``sparse`` form. Returns the integer block and the scale of its output.
    """
    patterns = patterns or {}

    def linear(name, scale_in, scale_out):
        return _linear(getattr(block, f"{name}_weight"), getattr(block, f"{name}_bias"),
                       scale_in, scale_out, patterns.get(name))

    dim = block.qkv_weight.shape[0]
    head_dim = dim // heads
    s_ln1, s_qkv, s_scores, s_context, s_proj, s_x1, s_ln2, s_fc1, s_gelu, s_fc2, s_x2 = (
        scale(f"{index}.{name}") for name in BLOCK_TENSORS)
    quantized = QuantizedEncoderBlock(
        dim=dim, heads=heads,
        ln1=layernorm_params(scale_in, block.ln1_gamma, block.ln1_beta, LAYERNORM_EPS, s_ln1),
        qkv=linear("qkv", s_ln1, s_qkv),
        score=_requant(s_qkv * s_qkv / math.sqrt(head_dim) / s_scores),
        softmax=exp_params(s_scores),
        context=_requant(s_qkv / (127 << probability_shift) / s_context),
        proj=linear("proj", s_context, s_proj),
        residual1=_residual(scale_in, s_proj, s_x1),
        ln2=layernorm_params(s_x1, block.ln2_gamma, block.ln2_beta, LAYERNORM_EPS, s_ln2),
        fc1=linear("fc1", s_ln2, s_fc1),
        gelu_table=gelu_table(s_fc1, s_gelu, gelu_offset),
        fc2=_linear(block.fc2_weight, block.fc2_bias, s_gelu, s_fc2, patterns.get("fc2"),
                    gelu_offset),
        residual2=_residual(s_x1, s_fc2, s_x2), probability_shift=probability_shift)
    return quantized, s_x2


def quantize_vit(vit, calibration_images, observer="auto", probability_shift="auto"):
    """Quantize a :class:`FloatVit` with its activations on ``calibration_images``.

    ``observer`` picks every activation's clip threshold: ``"auto"`` follows
    :func:`~.calibration.observer_rule` tensor by tensor, a name of
    :data:`~.observers.OBSERVERS` applies to all. ``probability_shift`` is each
    block's softmax output scale: ``"auto"`` (observed,
    :meth:`~.calibration.Calibration.probability_shift`) or 0 to 3 for all.
    Weights are symmetric max-abs per output channel. Returns a :class:`QuantizedVit` whose
    ``activation_scales`` are the scales chosen. The layers HP-pruned in
    ``vit.sparsity`` keep their zeros and carry their ``sparse`` form.

    Raises
    ------
    ValueError
        If a pattern of ``vit.sparsity`` does not fit its layer (naming it), or
        ``observer`` or ``probability_shift`` is unknown.
    """
    check_sparsity(vit)
    return quantize_calibrated(vit, Calibration.of(vit, calibration_images), observer,
                               probability_shift)


def quantize_calibrated(vit, calibration, observer="auto", probability_shift="auto",
                        gelu_offset=True):
    """:func:`quantize_vit` from a :class:`Calibration` of ``vit`` already collected.

    ``gelu_offset=False`` gives the GELU outputs a symmetric scale, as before issue 14
    (for measuring what the offset brings)."""
    from vitforge.sw.golden.encoder import linear as integer_linear

    from .quantized import QuantizedVit

    scales, offsets = calibration.scales(observer), {}
    for index in range(vit.shape.depth):
        name = f"{index}.gelu"
        scales[name], offsets[name] = (gelu_output_range(scales[name] * 127) if gelu_offset
                                       else (scales[name], 0.0))
    if probability_shift != "auto" and probability_shift not in range(
            1 << PROBABILITY_SHIFT_BITS):
        raise ConfigError(f"probability_shift must be 'auto' or 0 to "
                          f"{(1 << PROBABILITY_SHIFT_BITS) - 1}, not {probability_shift!r}")
    shape = vit.shape
    input_scale = scales["patches"]
    patch = _linear(vit.patch_weight, vit.patch_bias, input_scale, scales["embedded"])
    token_scale = scales["tokens"]
    position_scale = tensor_scale(vit.position)
    embed = _residual(scales["embedded"], position_scale, token_scale)
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
        shift = (calibration.probability_shift(index) if probability_shift == "auto"
                 else probability_shift)
        scales[f"{index}.probabilities"] = 1 / (127 << shift)
        quantized, scale = quantize_block(block, shape.heads, scales.__getitem__, index, scale,
                                          patterns, shift, offsets[f"{index}.gelu"])
        blocks.append(quantized)
    norm = layernorm_params(scale, vit.norm_gamma, vit.norm_beta, LAYERNORM_EPS, scales["norm"])
    head = _linear(vit.head_weight, vit.head_bias, scales["norm"], scales["logits"])
    return QuantizedVit(shape=shape, input_scale=input_scale, patch=patch, position=position,
                        embed=embed, blocks=tuple(blocks), norm=norm, head=head,
                        logit_scale=scales["logits"], activation_scales=scales,
                        activation_offsets=offsets)
