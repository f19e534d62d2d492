"""timm's own DeiT-T output (``../shared/models``, written by timm) against vitforge's float model.

The checkpoints are not part of the repository: the tests look in
``$VITFORGE_REFERENCE_MODELS``, else in ``shared/models`` beside the checkout, and skip
naming the folder when neither has them.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from vitforge.errors import ConfigError
from vitforge.sw.model.timm_import import from_timm_state_dict, load_float_model
from vitforge.sw.model.vit import forward

FOLDER = Path(os.environ.get("VITFORGE_REFERENCE_MODELS")
              or Path(__file__).resolve().parents[4] / "shared" / "models")
RANDOM_INIT = FOLDER / "deit_tiny_timm_random_init"
pytestmark = pytest.mark.skipif(not RANDOM_INIT.with_suffix(".safetensors").exists(),
                                reason=f"timm's reference checkpoints are not in {FOLDER} "
                                       f"(set VITFORGE_REFERENCE_MODELS)")


def check_logits(suffix):
    vit = load_float_model(RANDOM_INIT.with_suffix(suffix))
    reference = np.load(f"{RANDOM_INIT}_io.npz")
    logits = forward(vit, reference["images"])
    error = np.abs(logits - reference["logits"]).max()
    assert error <= 1e-4, f"{suffix}: max abs logit error {error:.3g} against timm"


def test_safetensors_reproduce_timms_logits_without_pytorch():
    check_logits(".safetensors")


def test_pth_reproduces_timms_logits():
    pytest.importorskip("torch", reason="reading .pth needs PyTorch (pip install -e '.[train]')")
    check_logits(".pth")


def test_a_distilled_deit_is_refused():
    from safetensors.numpy import load_file

    state = load_file(str(RANDOM_INIT.with_suffix(".safetensors")))
    state["dist_token"] = state["cls_token"]
    state["head_dist.weight"] = state["head.weight"]
    with pytest.raises(ConfigError, match=r"^state_dict is a distilled DeiT \(dist_token, "
                                          r"head_dist\.weight\): its second token and head are "
                                          r"not supported"):
        from_timm_state_dict(state)
