"""timm-format DeiT weights -> the float model."""

import numpy as np
import pytest

from vitforge.errors import ToolchainError
from vitforge.sw.model.timm_import import from_timm_state_dict, load_timm_checkpoint
from vitforge.sw.model.vit import PRESETS, forward, random_vit


def timm_state(vit):
    """The state_dict timm's VisionTransformer would have for ``vit`` (its key names)."""
    s = vit.shape
    state = {
        "patch_embed.proj.weight": vit.patch_weight.T.reshape(s.dim, s.in_channels,
                                                              s.patch_size, s.patch_size),
        "patch_embed.proj.bias": vit.patch_bias,
        "cls_token": vit.cls_token.reshape(1, 1, -1),
        "pos_embed": vit.position[None], "norm.weight": vit.norm_gamma,
        "norm.bias": vit.norm_beta, "head.weight": vit.head_weight.T,
        "head.bias": vit.head_bias,
    }
    for i, b in enumerate(vit.blocks):
        p = f"blocks.{i}"
        state.update({
            f"{p}.norm1.weight": b.ln1_gamma, f"{p}.norm1.bias": b.ln1_beta,
            f"{p}.attn.qkv.weight": b.qkv_weight.T, f"{p}.attn.qkv.bias": b.qkv_bias,
            f"{p}.attn.proj.weight": b.proj_weight.T, f"{p}.attn.proj.bias": b.proj_bias,
            f"{p}.norm2.weight": b.ln2_gamma, f"{p}.norm2.bias": b.ln2_beta,
            f"{p}.mlp.fc1.weight": b.fc1_weight.T, f"{p}.mlp.fc1.bias": b.fc1_bias,
            f"{p}.mlp.fc2.weight": b.fc2_weight.T, f"{p}.mlp.fc2.bias": b.fc2_bias})
    return state


def test_round_trip_through_timm_key_names():
    vit = random_vit(PRESETS["tiny"], np.random.default_rng(0))
    imported = from_timm_state_dict(timm_state(vit), heads=2)
    assert imported.shape == vit.shape
    images = np.random.default_rng(1).uniform(0, 1, (2, 1, 8, 8))
    np.testing.assert_allclose(forward(imported, images), forward(vit, images), rtol=1e-12)


def test_deit_tiny_shape_and_heads_are_inferred():
    vit = random_vit(PRESETS["deit-tiny"], np.random.default_rng(0))
    assert from_timm_state_dict(timm_state(vit)).shape == PRESETS["deit-tiny"]


def test_mismatched_or_missing_keys_are_named():
    vit = random_vit(PRESETS["tiny"], np.random.default_rng(0))
    state = timm_state(vit)
    state["blocks.1.mlp.fc2.weight"] = np.zeros((32, 64))
    with pytest.raises(ValueError, match=r"^state_dict key 'blocks\.1\.mlp\.fc2\.weight' has "
                                         r"shape \(32, 64\), expected \(32, 128\)$"):
        from_timm_state_dict(state, heads=2)
    del state["norm.bias"]
    state["blocks.1.mlp.fc2.weight"] = vit.blocks[1].fc2_weight.T
    with pytest.raises(ValueError, match=r"^state_dict has no key 'norm\.bias'$"):
        from_timm_state_dict(state, heads=2)
    with pytest.raises(ValueError, match=r"^heads must be given for dim 32"):
        from_timm_state_dict(timm_state(vit))


def hide_package(monkeypatch, package):
    """Make ``import package`` (and its submodules) fail, as on a machine without it."""
    import builtins
    real_import = builtins.__import__

    def without(name, *args, **kwargs):
        if name == package or name.startswith(f"{package}."):
            raise ImportError(f"no {package}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without)


def test_checkpoint_without_pytorch_says_how_to_get_it(monkeypatch, tmp_path):
    hide_package(monkeypatch, "torch")
    with pytest.raises(ToolchainError, match=r"^reading a PyTorch checkpoint needs PyTorch: "
                                             r"pip install -e '\.\[train\]'$"):
        load_timm_checkpoint(tmp_path / "x.pth")


def test_one_loader_for_every_float_model_file(monkeypatch, tmp_path):
    """``.npz`` is vitforge's own file; ``.safetensors`` without its reader says how to get it."""
    from vitforge.sw.model.timm_import import load_float_model
    from vitforge.sw.model.weights import load_vit, save_vit

    save_vit(tmp_path / "model.npz", random_vit(PRESETS["tiny"], np.random.default_rng(3)))
    images = np.random.default_rng(4).uniform(0, 1, (2, 1, 8, 8))
    np.testing.assert_array_equal(forward(load_float_model(tmp_path / "model.npz"), images),
                                  forward(load_vit(tmp_path / "model.npz")[0], images))

    hide_package(monkeypatch, "safetensors")
    with pytest.raises(ToolchainError, match=r"^reading a \.safetensors checkpoint needs "
                                             r"safetensors: pip install safetensors$"):
        load_float_model(tmp_path / "model.safetensors")
