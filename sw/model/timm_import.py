"""Import DeiT weights in timm's ``state_dict`` format.

Key names and shapes follow ``timm.models.vision_transformer`` (``patch_embed.proj``,
``cls_token``, ``pos_embed``, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``,
``norm``, ``head``). A checkpoint file (``torch.save``) needs PyTorch to read; a
mapping of NumPy arrays does not.
"""

from pathlib import Path

import numpy as np

from vitforge.errors import ConfigError, ToolchainError

from .vit import FloatBlock, FloatVit, VitShape

__all__ = ["from_timm_state_dict", "load_float_model", "load_float_model_meta",
           "load_timm_checkpoint", "DEFAULT_HEADS"]

#: Heads of the DeiT sizes (the weights do not say how many heads there are).
DEFAULT_HEADS = {192: 3, 384: 6, 768: 12}


def _get(state, key, shape=None):
    if key not in state:
        raise ConfigError(f"state_dict has no key {key!r}")
    value = np.asarray(state[key], dtype=np.float64)
    if shape is not None and value.shape != tuple(shape):
        raise ConfigError(f"state_dict key {key!r} has shape {value.shape}, expected "
                          f"{tuple(shape)}")
    return value


def from_timm_state_dict(state, heads=None):
    """A :class:`FloatVit` from a timm DeiT ``state_dict`` (a mapping of arrays).

    Raises
    ------
    vitforge.errors.ConfigError
        On a missing key, or a key whose shape disagrees with the others
        (naming the key and both shapes), or a distilled DeiT (``dist_token``).
    """
    state = {key: (value.detach().cpu().numpy() if hasattr(value, "detach") else value)
             for key, value in state.items()}
    distilled = sorted(key for key in state if key == "dist_token" or key.startswith("head_dist"))
    if distilled:
        raise ConfigError(f"state_dict is a distilled DeiT ({', '.join(distilled)}): its "
                          f"second token and head are not supported; use a DeiT without "
                          f"distillation (deit_*_patch16_224, not *_distilled_*)")
    proj = _get(state, "patch_embed.proj.weight")
    if proj.ndim != 4 or proj.shape[2] != proj.shape[3]:
        raise ConfigError(f"state_dict key 'patch_embed.proj.weight' has shape {proj.shape}, "
                          f"expected (dim, channels, patch, patch)")
    dim, channels, patch, _ = proj.shape
    position = _get(state, "pos_embed")
    tokens = position.shape[1] if position.ndim == 3 else 0
    grid = int(round((tokens - 1) ** 0.5))
    if position.shape != (1, grid * grid + 1, dim):
        raise ConfigError(f"state_dict key 'pos_embed' has shape {position.shape}, expected "
                          f"(1, grid*grid + 1, {dim})")
    depth = 1 + max((int(key.split(".")[1]) for key in state if key.startswith("blocks.")),
                    default=-1)
    heads = heads or DEFAULT_HEADS.get(dim)
    if heads is None:
        raise ConfigError(f"heads must be given for dim {dim} (not a DeiT size)")
    mlp = _get(state, "blocks.0.mlp.fc1.weight").shape[0] if depth else 4 * dim
    classes = _get(state, "head.weight").shape[0]
    shape = VitShape(image_size=grid * patch, patch_size=patch, in_channels=channels, dim=dim,
                     depth=depth, heads=heads, mlp=mlp, classes=classes)

    def linear(prefix, inputs, outputs):
        return (_get(state, f"{prefix}.weight", (outputs, inputs)).T.copy(),
                _get(state, f"{prefix}.bias", (outputs,)))

    blocks = []
    for index in range(depth):
        p = f"blocks.{index}"
        qkv_w, qkv_b = linear(f"{p}.attn.qkv", dim, 3 * dim)
        proj_w, proj_b = linear(f"{p}.attn.proj", dim, dim)
        fc1_w, fc1_b = linear(f"{p}.mlp.fc1", dim, mlp)
        fc2_w, fc2_b = linear(f"{p}.mlp.fc2", mlp, dim)
        blocks.append(FloatBlock(
            ln1_gamma=_get(state, f"{p}.norm1.weight", (dim,)),
            ln1_beta=_get(state, f"{p}.norm1.bias", (dim,)),
            qkv_weight=qkv_w, qkv_bias=qkv_b, proj_weight=proj_w, proj_bias=proj_b,
            ln2_gamma=_get(state, f"{p}.norm2.weight", (dim,)),
            ln2_beta=_get(state, f"{p}.norm2.bias", (dim,)),
            fc1_weight=fc1_w, fc1_bias=fc1_b, fc2_weight=fc2_w, fc2_bias=fc2_b))
    head_w, head_b = linear("head", dim, classes)
    return FloatVit(
        shape=shape, patch_weight=proj.reshape(dim, -1).T.copy(),
        patch_bias=_get(state, "patch_embed.proj.bias", (dim,)),
        cls_token=_get(state, "cls_token", (1, 1, dim)).reshape(dim),
        position=position.reshape(-1, dim), blocks=blocks,
        norm_gamma=_get(state, "norm.weight", (dim,)), norm_beta=_get(state, "norm.bias", (dim,)),
        head_weight=head_w, head_bias=head_b)


def load_float_model(path):
    """The float ViT in ``path``: timm's ``.safetensors`` or ``.pth``, or a vitforge ``.npz``.

    Raises
    ------
    vitforge.errors.ToolchainError
        If the format's reader (``safetensors``, PyTorch) is not installed.
    vitforge.errors.ConfigError
        If the file is not a model of that format.
    """
    return load_float_model_meta(path)[0]


def load_float_model_meta(path):
    """``(FloatVit, meta)`` of :func:`load_float_model`'s ``path``; ``meta`` is a vitforge
    file's (:func:`~vitforge.sw.model.weights.load_vit`), ``{}`` for a timm checkpoint."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise ToolchainError("reading a .safetensors checkpoint needs safetensors: "
                                 "pip install safetensors") from None
        try:
            state = load_file(str(path))
        except Exception as error:      # any failure to read the user's file, whatever its kind
            raise ConfigError(f"{path} is not a safetensors file ({error})") from None
        return from_timm_state_dict(state), {}
    if path.suffix in (".pth", ".pt"):
        return load_timm_checkpoint(path), {}
    from .weights import load_vit
    return load_vit(path)


def load_timm_checkpoint(path, heads=None):
    """:func:`from_timm_state_dict` of a ``torch.save``'d state_dict (or ``{"model": ...}``).

    Raises
    ------
    vitforge.errors.ToolchainError
        If PyTorch is not installed.
    vitforge.errors.ConfigError
        If the file cannot be read as a checkpoint of tensors, or its
        state_dict is not a DeiT's.
    """
    try:
        import torch
    except ImportError:
        raise ToolchainError("reading a PyTorch checkpoint needs PyTorch: "
                             "pip install -e '.[train]'") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:          # any failure to read the user's file, whatever its kind
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"{path} is not a PyTorch checkpoint of tensors ({reason})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ConfigError(f"{path} holds a {type(state).__name__}, not a state_dict")
    return from_timm_state_dict(state, heads)
