"""An integer ViT encoder block: every parameter the hardware needs, nothing in float."""

from dataclasses import dataclass

import numpy as np

from vitforge.hw.numerics import PROBABILITY_SHIFT_BITS
from vitforge.sw.gemm.sparse import HPSparseWeight
from vitforge.sw.golden.gemm.requantize import check_requant_params
from vitforge.sw.params.layernorm import LayerNormParams
from vitforge.sw.params.softmax import ExpParams

__all__ = ["QuantizedLinear", "Requant", "ResidualParams", "QuantizedEncoderBlock",
           "QuantizedVit"]


@dataclass(frozen=True)
class QuantizedLinear:
    """``y = requantize(x @ weight, bias, multiplier, shift)``; weight int8 ``(in, out)``.

    ``sparse``, when given, is the same weight HP-pruned in its stored form
    (:class:`~vitforge.sw.gemm.sparse.HPSparseWeight`, ``weight`` is its
    :meth:`~vitforge.sw.gemm.sparse.HPSparseWeight.dense`): the compiler then
    runs the layer as ``GEMM_SPARSE``.
    """

    weight: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    sparse: HPSparseWeight = None

    def __post_init__(self):
        if self.weight.dtype != np.int8 or self.weight.ndim != 2:
            raise ValueError(f"weight must be a 2-D int8 matrix, not {self.weight.dtype} of "
                             f"shape {self.weight.shape}")
        for name in ("bias", "multiplier", "shift"):
            if np.shape(getattr(self, name)) != (self.weight.shape[1],):
                raise ValueError(f"{name} must have shape ({self.weight.shape[1]},), not "
                                 f"{np.shape(getattr(self, name))}")
        check_requant_params(self.bias, self.multiplier, self.shift)
        if self.sparse is not None:
            if not isinstance(self.sparse, HPSparseWeight):
                raise TypeError(f"sparse must be an HPSparseWeight or None, not "
                                f"{type(self.sparse).__name__}")
            if not np.array_equal(self.sparse.dense(), self.weight):
                raise ValueError("sparse must hold the same weights as weight")


@dataclass(frozen=True)
class Requant:
    """Per-tensor requantization without bias (attention scores and context)."""

    multiplier: int
    shift: int


@dataclass(frozen=True)
class ResidualParams:
    """``clip((x * x_multiplier + y * y_multiplier + round) >> shift)``."""

    x_multiplier: int
    y_multiplier: int
    shift: int


@dataclass(frozen=True)
class QuantizedEncoderBlock:
    """Pre-norm encoder block: ``x + Attn(LN1(x))``, then ``x + MLP(LN2(x))``.

    Attention of head ``h``: ``S = requant(Q_h K_h^T, score)``,
    ``P = softmax(S)`` (int8 probabilities, scale ``1 / (127 * 2**probability_shift)``,
    saturating), ``O_h = requant(P V_h, context)``; ``Q, K, V`` are columns
    ``[0, C)``, ``[C, 2C)``, ``[2C, 3C)`` of ``qkv(LN1(x))``.
    """

    dim: int
    heads: int
    ln1: LayerNormParams
    qkv: QuantizedLinear
    score: Requant
    softmax: ExpParams
    context: Requant
    proj: QuantizedLinear
    residual1: ResidualParams
    ln2: LayerNormParams
    fc1: QuantizedLinear
    gelu_table: np.ndarray
    fc2: QuantizedLinear
    residual2: ResidualParams
    probability_shift: int = 0

    def __post_init__(self):
        if self.dim % self.heads:
            raise ValueError(f"dim must be a multiple of heads={self.heads}, not {self.dim}")
        if not isinstance(self.probability_shift, (int, np.integer)) or not (
                0 <= self.probability_shift < 1 << PROBABILITY_SHIFT_BITS):
            raise ValueError(f"probability_shift must be an integer in [0, "
                             f"{(1 << PROBABILITY_SHIFT_BITS) - 1}], not "
                             f"{self.probability_shift!r}")
        shapes = {"qkv": (self.dim, 3 * self.dim), "proj": (self.dim, self.dim),
                  "fc1": (self.dim, self.hidden), "fc2": (self.hidden, self.dim)}
        for name, shape in shapes.items():
            if getattr(self, name).weight.shape != shape:
                raise ValueError(f"{name} weight must have shape {shape}, not "
                                 f"{getattr(self, name).weight.shape}")

    @property
    def head_dim(self):
        return self.dim // self.heads

    @property
    def hidden(self):
        return self.fc1.weight.shape[1]


@dataclass(frozen=True)
class QuantizedVit:
    """A whole integer ViT.

    Token order inside the accelerator is ``[class token, patches...]``, as in
    timm: the class token is row 0 and patch ``i`` is row ``i + 1``; the
    position table follows the same order. The patch embedding GEMM runs over
    all rows, the class token's with zero features, and ``position[0]`` is
    chosen so that the embedding ADD turns that row into the quantized class
    token plus its position embedding.
    """

    shape: object                 # VitShape
    input_scale: float            # of the patch features
    patch: QuantizedLinear
    position: np.ndarray          # int8 (tokens, dim), token order as above
    embed: ResidualParams         # patch embedding + position table -> tokens
    blocks: tuple
    norm: LayerNormParams
    head: QuantizedLinear
    logit_scale: float
    #: The real scale of each int8 activation (name -> scale, the names of
    #: :class:`~vitforge.sw.model.calibration.Calibration`), as quantization chose them;
    #: ``None`` where unknown (files written before they were stored).
    activation_scales: dict = None
    #: Name -> offset of the activations whose int8 ``q`` stands for ``q * scale + offset``
    #: (the GELU outputs); the others have none.
    activation_offsets: dict = None
