"""The integer token selector: its parameters and their post-training quantization.

A :class:`QuantizedSelector` holds every integer parameter of one stage's
predictor (``docs/numerics.md``, Token selector); the golden model
(:mod:`vitforge.sw.golden.selector`) computes with it. :func:`quantize_selectors`
derives them from float selectors with the observers of
:mod:`vitforge.sw.model.quantize`: activations symmetric max-abs per tensor over
the calibration images, weights symmetric per output channel.
"""

from dataclasses import dataclass

import numpy as np

from vitforge.errors import ConfigError, ConfigTypeError
from vitforge.hw.numerics import GELU_TABLE_DEPTH
from vitforge.sw.params.gelu import gelu_table
from vitforge.sw.params.layernorm import LayerNormParams, layernorm_params
from vitforge.sw.params.sigmoid import sigmoid_table

from .quantize import _linear, tensor_scale
from .quantized import QuantizedLinear
from .selector import SelectorConfig, _check_selectors, forward_pruned
from .vit import LAYERNORM_EPS

__all__ = ["QuantizedSelector", "QuantizedSelectors", "quantize_selectors",
           "check_selectors_fit", "random_pruned_vit"]

_TABLES = ("input_gelu", "fc1_gelu", "fc2_gelu", "head_gelu", "keep_table", "weight_table")


@dataclass(frozen=True)
class QuantizedSelector:
    """One stage's integer predictor for heads of ``d`` channels (``H`` heads, ``g`` hidden).

    ``fc1`` reads the local half of ``z`` and the global half replaced by its
    mean over the alive tokens, broadcast. ``difference`` is the float ``out`` layer folded
    into one column, keep minus drop (``softmax(s)[1] = sigmoid(s_keep -
    s_drop)``); ``keep_table`` maps its int8 output to a Q0.15 probability, and
    ``weight_table`` maps
    ``head_fc2``'s int8 output to a Q0.15 head weight; the ``*_gelu`` entries
    are GELU tables.
    """

    ln: LayerNormParams             # d channels, shared by the heads
    input: QuantizedLinear          # (d, d)
    input_gelu: np.ndarray          # int8 (256,)
    fc1: QuantizedLinear            # (d, d/2)
    fc1_gelu: np.ndarray
    fc2: QuantizedLinear            # (d/2, d/4)
    fc2_gelu: np.ndarray
    difference: QuantizedLinear     # (d/4, 1): keep - drop
    keep_table: np.ndarray          # uint16 (256,), Q0.15
    head_fc1: QuantizedLinear       # (H, g)
    head_gelu: np.ndarray
    head_fc2: QuantizedLinear       # (g, H)
    weight_table: np.ndarray        # uint16 (256,), Q0.15

    def __post_init__(self):
        d = self.ln.gamma.size
        heads, hidden = self.head_fc1.weight.shape
        shapes = {"input": (d, d), "fc1": (d, d // 2), "fc2": (d // 2, d // 4),
                  "difference": (d // 4, 1), "head_fc1": (heads, hidden),
                  "head_fc2": (hidden, heads)}
        if d % 4:
            raise ConfigError(f"ln must have a multiple of 4 channels (the head dim), not {d}")
        for name, shape in shapes.items():
            if getattr(self, name).weight.shape != shape:
                raise ConfigError(f"{name} weight must have shape {shape} for head dim {d} "
                                  f"and {heads} heads, not {getattr(self, name).weight.shape}")
        for name in _TABLES:
            table = np.asarray(getattr(self, name))
            dtype = np.int8 if name.endswith("gelu") else np.uint16
            if table.shape != (GELU_TABLE_DEPTH,) or table.dtype != dtype:
                raise ConfigError(f"{name} must be {GELU_TABLE_DEPTH} {np.dtype(dtype).name} "
                                  f"entries, not {table.dtype} of shape {table.shape}")

    @property
    def head_dim(self):
        return self.ln.gamma.size

    @property
    def heads(self):
        return self.head_fc1.weight.shape[0]


@dataclass(frozen=True)
class QuantizedSelectors:
    """The integer selectors of a model: one :class:`QuantizedSelector` per stage of ``config``."""

    config: SelectorConfig
    stages: tuple

    def __post_init__(self):
        if not isinstance(self.config, SelectorConfig):
            raise ConfigTypeError(f"config must be a SelectorConfig, not {self.config!r}")
        if len(self.stages) != len(self.config.blocks):
            raise ConfigError(f"stages must have one selector per stage "
                              f"({len(self.config.blocks)}), not {len(self.stages)}")
        for stage, selector in enumerate(self.stages):
            if not isinstance(selector, QuantizedSelector):
                raise ConfigTypeError(f"stages must hold QuantizedSelector, not {selector!r} "
                                      f"at stage {stage}")
        object.__setattr__(self, "stages", tuple(self.stages))


def check_selectors_fit(selectors, shape):
    """Raise :exc:`~vitforge.errors.ConfigError` unless ``selectors`` (QuantizedSelectors)
    fit a model of ``shape``: stages within its depth, its heads and head dim."""
    selectors.config.check_depth(shape.depth)
    for stage, selector in enumerate(selectors.stages):
        if (selector.heads, selector.head_dim) != (shape.heads, shape.dim // shape.heads):
            raise ConfigError(f"selectors stage {stage} must have heads={shape.heads} of "
                              f"{shape.dim // shape.heads} channels, not heads="
                              f"{selector.heads} of {selector.head_dim}")


def _block_input_scales(model):
    """The scale of each block's input in ``model`` (a QuantizedVit), as quantized."""
    scales = model.activation_scales
    if scales is None:
        raise ConfigError("model must carry the activation scales it was quantized with "
                          "(quantize_vit's result or a file that stores them), not None")
    return [scales["tokens"]] + [scales[f"{index}.x2"] for index in range(model.shape.depth - 1)]


def quantize_selectors(vit, selectors, config, calibration_images, model):
    """Quantize float ``selectors`` of ``config`` to run on the integer ``model`` (of ``vit``).

    A selector reads its block's int8 input tokens, whose scale is the one
    :func:`~vitforge.sw.model.quantize.quantize_vit` chose for ``model``
    (``model.activation_scales``). Every intermediate scale is observed
    on the float pruned forward (:func:`~vitforge.sw.model.selector.forward_pruned`,
    ``record=``) of those images; the score difference ``keep - drop`` has its
    own scale, observed on the float scores.

    Returns
    -------
    QuantizedSelectors

    Raises
    ------
    vitforge.errors.ConfigError
        If the selectors do not fit ``vit`` or ``config`` (see
        :func:`~vitforge.sw.model.selector.forward_pruned`), ``model`` is not
        of ``vit``'s shape, or no calibration image reaches a stage with a patch
        token alive.
    """
    _check_selectors(vit, selectors, config)
    if model.shape != vit.shape:
        raise ConfigError(f"model must have the float model's shape {vit.shape}, not "
                          f"{model.shape}")
    input_scales = _block_input_scales(model)
    record = {}

    def keep_selector_activations(name, value):
        if name.startswith("select."):
            record.setdefault(name, []).append(value)

    forward_pruned(vit, calibration_images, selectors, config, record=keep_selector_activations)
    stages = []
    for stage, (selector, block) in enumerate(zip(selectors, config.blocks)):
        def scale(name):
            seen = [value for value in record.get(f"select.{stage}.{name}", [])
                    if np.size(value)]
            if not seen:
                raise ConfigError(f"calibration_images must leave a patch token alive at "
                                  f"stage {stage} (before block {block}); none did")
            return tensor_scale(seen)

        s_x = input_scales[block]
        s_ln, s_in, s_z = scale("ln"), scale("in"), scale("in_gelu")
        s_fc1, s_h1, s_fc2, s_h2 = (scale(n) for n in ("fc1", "gelu1", "fc2", "gelu2"))
        s_hfc1, s_hgelu = scale("head_fc1"), scale("head_gelu")
        s_t = tensor_scale([np.diff(scores, axis=-1)
                            for scores in record[f"select.{stage}.scores"] if np.size(scores)])
        s_hfc2 = scale("head_fc2")
        stages.append(QuantizedSelector(
            ln=layernorm_params(s_x, selector.ln_gamma, selector.ln_beta, LAYERNORM_EPS, s_ln),
            input=_linear(selector.in_weight, selector.in_bias, s_ln, s_in),
            input_gelu=gelu_table(s_in, s_z),
            fc1=_linear(selector.fc1_weight, selector.fc1_bias, s_z, s_fc1),
            fc1_gelu=gelu_table(s_fc1, s_h1),
            fc2=_linear(selector.fc2_weight, selector.fc2_bias, s_h1, s_fc2),
            fc2_gelu=gelu_table(s_fc2, s_h2),
            difference=_linear(np.diff(selector.out_weight, axis=1),
                               np.diff(selector.out_bias), s_h2, s_t),
            keep_table=sigmoid_table(s_t),
            head_fc1=_linear(selector.head_fc1_weight, selector.head_fc1_bias, s_x, s_hfc1),
            head_gelu=gelu_table(s_hfc1, s_hgelu),
            head_fc2=_linear(selector.head_fc2_weight, selector.head_fc2_bias, s_hgelu, s_hfc2),
            weight_table=sigmoid_table(s_hfc2)))
    return QuantizedSelectors(config=config, stages=tuple(stages))


def random_pruned_vit(shape, config, seed, images=4):
    """A random integer model of ``shape`` with random selectors of ``config``, for tests.

    The float model and selectors have random weights (scale 0.3 and 0.5, so
    every stage drops a varying number of patches in ``threshold`` mode); both
    are quantized on 8 random calibration images.

    Returns
    -------
    (QuantizedVit, QuantizedSelectors, numpy.ndarray)
        And the int8 patch features of ``images`` more random images.
    """
    from .quantize import quantize_tensor, quantize_vit
    from .selector import random_selectors
    from .vit import patchify, random_vit

    rng = np.random.default_rng(seed)
    vit = random_vit(shape, rng, scale=0.3)
    pictures = rng.uniform(-1, 1, (8 + images, shape.in_channels, shape.image_size,
                                   shape.image_size))
    selectors = random_selectors(shape, config, np.random.default_rng(seed + 1), scale=0.5)
    model = quantize_vit(vit, pictures[:8])
    quantized = quantize_selectors(vit, selectors, config, pictures[:8], model)
    return model, quantized, quantize_tensor(patchify(pictures[8:], shape), model.input_scale)
