"""A float Vision Transformer in NumPy: the model vitforge quantizes and compiles.

Pre-norm encoder blocks as in DeiT: patch embedding, a class token, learned
position embeddings, ``depth`` blocks, a final LayerNorm and a linear head on
the class token. float64 throughout; this is the reference the integer model's
accuracy is measured against.
"""

from dataclasses import dataclass, field, fields
import math

import numpy as np

from vitforge.errors import ConfigError
from vitforge.hw.checks import check_positive_int
from vitforge.sw.params import reference

__all__ = ["VitShape", "PRESETS", "FloatBlock", "FloatVit", "random_vit", "patchify",
           "forward", "LAYERNORM_EPS"]

LAYERNORM_EPS = 1e-6


@dataclass(frozen=True, kw_only=True)
class VitShape:
    """Sizes of a ViT; the token count is ``(image_size / patch_size)**2 + 1``."""

    image_size: int
    patch_size: int
    in_channels: int
    dim: int
    depth: int
    heads: int
    mlp: int
    classes: int

    def __post_init__(self):
        for item in fields(self):
            check_positive_int(item.name, getattr(self, item.name))
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size must be a multiple of patch_size={self.patch_size}, "
                              f"not {self.image_size}")
        if self.dim % self.heads:
            raise ConfigError(f"dim must be a multiple of heads={self.heads}, not {self.dim}")

    @property
    def patches(self):
        return (self.image_size // self.patch_size) ** 2

    @property
    def tokens(self):
        return self.patches + 1

    @property
    def patch_features(self):
        return self.patch_size ** 2 * self.in_channels


#: Shapes by name. ``tiny`` is the embedded digits model (8x8 grey images).
PRESETS = {
    "tiny": VitShape(image_size=8, patch_size=2, in_channels=1, dim=32, depth=2, heads=2,
                     mlp=128, classes=10),
    "deit-tiny": VitShape(image_size=224, patch_size=16, in_channels=3, dim=192, depth=12,
                          heads=3, mlp=768, classes=1000),
    "deit-small": VitShape(image_size=224, patch_size=16, in_channels=3, dim=384, depth=12,
                           heads=6, mlp=1536, classes=1000),
    "deit-base": VitShape(image_size=224, patch_size=16, in_channels=3, dim=768, depth=12,
                          heads=12, mlp=3072, classes=1000),
}


@dataclass
class FloatBlock:
    ln1_gamma: np.ndarray
    ln1_beta: np.ndarray
    qkv_weight: np.ndarray      # (dim, 3 dim), columns q | k | v
    qkv_bias: np.ndarray
    proj_weight: np.ndarray
    proj_bias: np.ndarray
    ln2_gamma: np.ndarray
    ln2_beta: np.ndarray
    fc1_weight: np.ndarray
    fc1_bias: np.ndarray
    fc2_weight: np.ndarray
    fc2_bias: np.ndarray


@dataclass
class FloatVit:
    """A float ViT; ``sparsity`` maps each HP-pruned encoder layer (``"blocks.3.fc1"``) to its
    :class:`~vitforge.sw.gemm.sparse.HPPattern` (:func:`vitforge.sw.model.hp_prune.prune_vit`);
    its weights are zero outside the pattern."""

    shape: VitShape
    patch_weight: np.ndarray    # (patch_features, dim)
    patch_bias: np.ndarray
    cls_token: np.ndarray       # (dim,)
    position: np.ndarray        # (tokens, dim)
    blocks: list = field(default_factory=list)
    norm_gamma: np.ndarray = None
    norm_beta: np.ndarray = None
    head_weight: np.ndarray = None   # (dim, classes)
    head_bias: np.ndarray = None
    sparsity: dict = field(default_factory=dict)


def random_vit(shape, rng, scale=0.02):
    """A ViT with truncated-normal-like random weights (as timm initializes DeiT)."""
    def weight(*size):
        return np.clip(rng.normal(0, scale, size), -2 * scale, 2 * scale)

    dim, mlp = shape.dim, shape.mlp
    blocks = [FloatBlock(
        ln1_gamma=np.ones(dim), ln1_beta=np.zeros(dim),
        qkv_weight=weight(dim, 3 * dim), qkv_bias=np.zeros(3 * dim),
        proj_weight=weight(dim, dim), proj_bias=np.zeros(dim),
        ln2_gamma=np.ones(dim), ln2_beta=np.zeros(dim),
        fc1_weight=weight(dim, mlp), fc1_bias=np.zeros(mlp),
        fc2_weight=weight(mlp, dim), fc2_bias=np.zeros(dim)) for _ in range(shape.depth)]
    return FloatVit(shape=shape, patch_weight=weight(shape.patch_features, dim),
                    patch_bias=np.zeros(dim), cls_token=weight(dim),
                    position=weight(shape.tokens, dim), blocks=blocks,
                    norm_gamma=np.ones(dim), norm_beta=np.zeros(dim),
                    head_weight=weight(dim, shape.classes), head_bias=np.zeros(shape.classes))


def patchify(images, shape):
    """``(batch, patches, patch_features)`` from ``(batch, channels, size, size)`` images.

    Features are ordered channel, row, column within a patch (as a flattened
    PyTorch ``Conv2d`` weight), patches row-major.
    """
    images = np.asarray(images, dtype=np.float64)
    expected = (shape.in_channels, shape.image_size, shape.image_size)
    if images.ndim != 4 or images.shape[1:] != expected:
        raise ValueError(f"images must have shape (batch, {', '.join(map(str, expected))}), "
                         f"not {images.shape}")
    batch, p = images.shape[0], shape.patch_size
    grid = shape.image_size // p
    blocks = images.reshape(batch, shape.in_channels, grid, p, grid, p)
    return blocks.transpose(0, 2, 4, 1, 3, 5).reshape(batch, grid * grid, -1)


def _attention(x, block, heads, keep, prefix):
    tokens, dim = x.shape
    head_dim = dim // heads
    qkv = keep(f"{prefix}.qkv", x @ block.qkv_weight + block.qkv_bias)
    outputs, scores, probabilities = [], [], []
    for head in range(heads):
        columns = slice(head * head_dim, (head + 1) * head_dim)
        q, k, v = qkv[:, columns], qkv[:, dim:][:, columns], qkv[:, 2 * dim:][:, columns]
        scores.append(q @ k.T / math.sqrt(head_dim))
        probabilities.append(reference.softmax(scores[-1]))
        outputs.append(probabilities[-1] @ v)
    keep(f"{prefix}.scores", np.stack(scores))
    keep(f"{prefix}.probabilities", np.stack(probabilities))
    context = keep(f"{prefix}.context", np.concatenate(outputs, axis=1))
    return keep(f"{prefix}.proj", context @ block.proj_weight + block.proj_bias)


def _recorder(record):
    """A ``keep(name, value)`` that returns ``value`` after appending it to ``record[name]``
    (a dict) or calling ``record(name, value)`` (a callable)."""
    def keep(name, value):
        if callable(record):
            record(name, value)
        elif record is not None:
            record.setdefault(name, []).append(value)
        return value
    return keep


def _embed(vit, image_patches, keep):
    """Tokens ``(tokens, dim)`` of one image's patches: class token row 0, positions added."""
    keep("patches", image_patches)
    x = np.concatenate([vit.cls_token[None, :],
                        image_patches @ vit.patch_weight + vit.patch_bias]) + vit.position
    return keep("tokens", x)


def _block(x, block, index, heads, keep):
    """One pre-norm encoder block on tokens ``x`` (any token count)."""
    h = keep(f"{index}.ln1", reference.layernorm(x, block.ln1_gamma, block.ln1_beta,
                                                   LAYERNORM_EPS))
    x = keep(f"{index}.x1", x + _attention(h, block, heads, keep, str(index)))
    h = keep(f"{index}.ln2", reference.layernorm(x, block.ln2_gamma, block.ln2_beta,
                                                   LAYERNORM_EPS))
    hidden = keep(f"{index}.gelu", reference.gelu(
        keep(f"{index}.fc1", h @ block.fc1_weight + block.fc1_bias)))
    return keep(f"{index}.x2", x + keep(f"{index}.fc2", hidden @ block.fc2_weight
                                                         + block.fc2_bias))


def _logits(vit, x):
    """The head's logits from the class token (row 0) of the last block's output."""
    cls = reference.layernorm(x[0], vit.norm_gamma, vit.norm_beta, LAYERNORM_EPS)
    return cls @ vit.head_weight + vit.head_bias


def forward(vit, images, *, record=None, selectors=None, config=None):
    """Logits ``(batch, classes)`` of float images.

    ``record``, a dict, receives the activations every quantized tensor sees
    (for calibration): key -> list of arrays, one per image; a callable
    ``record(key, array)`` is called with each instead.

    ``selectors`` (a list of :class:`vitforge.sw.model.selector.FloatSelector`)
    and ``config`` (its :class:`~vitforge.sw.model.selector.SelectorConfig`)
    prune tokens at run time (``docs/token-selection.md``); give both or
    neither. :func:`vitforge.sw.model.selector.forward_pruned` also returns the
    kept patches.
    """
    if selectors is not None or config is not None:
        from .selector import forward_pruned
        return forward_pruned(vit, images, selectors, config, record=record)[0]
    shape = vit.shape
    patches = patchify(images, shape)
    logits = []
    for image_patches in patches:
        keep = _recorder(record)
        x = _embed(vit, image_patches, keep)
        for index, block in enumerate(vit.blocks):
            x = _block(x, block, index, shape.heads, keep)
        logits.append(_logits(vit, x))
    return np.array(logits)
