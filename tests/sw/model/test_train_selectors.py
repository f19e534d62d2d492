"""The PyTorch selector training mirrors the NumPy float reference (needs the `train` extra)."""

import json

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="training the token selectors needs PyTorch (pip install -e '.[train]')")

from vitforge.sw.model.selector import (  # noqa: E402
    SelectorConfig, forward_pruned, keep_probabilities, load_selectors, random_selectors,
    save_selectors)
from vitforge.sw.model.train_selectors import (  # noqa: E402
    DEIT_DIGITS_SELECTORS, EMBEDDED_SELECTORS, digits_inputs, export_selector, import_selector,
    pruned_logits, torch_backbone, torch_selector)
from vitforge.sw.model.vit import PRESETS, VitShape, patchify, random_vit  # noqa: E402

DEEP = VitShape(image_size=8, patch_size=2, in_channels=1, dim=32, depth=4, heads=2, mlp=64,
                classes=10)
FOUR_HEADS = VitShape(image_size=8, patch_size=2, in_channels=1, dim=32, depth=2, heads=4,
                      mlp=64, classes=10)


def _torch_selectors(selectors, shape):
    return [import_selector(torch_selector(shape.dim, shape.heads).double(), s)
            for s in selectors]


@pytest.mark.parametrize("shape", [PRESETS["tiny"], FOUR_HEADS], ids=["2-heads", "4-heads"])
def test_keep_probabilities_match_numpy(shape):
    rng = np.random.default_rng(0)
    config = SelectorConfig(blocks=(1,), ratios=(0.7,))
    selector = random_selectors(shape, config, rng, scale=1.0)[0]
    x = rng.normal(0, 1, (3, 9, shape.dim))
    # row 0 the class token, rows 1-6 alive patches, rows 7-8 dropped or package tokens
    scored = np.zeros((3, 9))
    scored[:, 1:7] = 1
    module = _torch_selectors([selector], shape)[0]
    with torch.no_grad():
        got = module(torch.tensor(x), torch.tensor(scored)).numpy()
    for image in range(3):
        want = keep_probabilities(selector, x[image, 1:7], shape.heads)
        np.testing.assert_allclose(got[image, 1:7], want, rtol=0, atol=1e-12)


def _calibrated(vit, config, images, rng):
    """Random selectors whose threshold sits at each stage's median score (mixed decisions)."""
    selectors = random_selectors(vit.shape, config, rng, scale=1.0)
    for stage, selector in enumerate(selectors):
        record = {}
        forward_pruned(vit, images, selectors, config, record=record)
        scores = np.concatenate([s.reshape(-1, 2) for s in record[f"select.{stage}.scores"]])
        selector.out_bias = selector.out_bias - [0, np.median(scores[:, 1] - scores[:, 0])]
    return selectors


@pytest.mark.parametrize("seed", [2, 3])
@pytest.mark.parametrize("mode", ["threshold", "topk"])
@pytest.mark.parametrize("shape,blocks,ratios", [
    (PRESETS["tiny"], (1,), (0.7,)),
    (DEEP, (1, 2, 3), (0.7, 0.49, 0.343)),
], ids=["tiny", "depth4-3-stages"])
def test_pruned_forward_matches_numpy(shape, blocks, ratios, mode, seed):
    # seed 3: images that keep all, some and none of their patches; seed 2: mixed counts
    rng = np.random.default_rng(seed)
    vit = random_vit(shape, rng, scale=0.3)
    config = SelectorConfig(blocks=blocks, ratios=ratios, mode=mode)
    images = rng.uniform(0, 1, (6, 1, 8, 8))
    selectors = _calibrated(vit, SelectorConfig(blocks=blocks, ratios=ratios), images, rng)
    want, kept = forward_pruned(vit, images, selectors, config)
    model = torch_backbone(vit).double()
    with torch.no_grad():
        got, counts = pruned_logits(model, _torch_selectors(selectors, shape),
                                    torch.tensor(patchify(images, shape)), blocks=blocks,
                                    ratios=ratios, mode=mode)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-10)
    for stage, count in enumerate(counts):
        assert count.numpy().astype(int).tolist() == [len(k[stage]) for k in kept]
    if mode == "threshold":   # the random selectors drop some tokens and keep others
        assert 0 < sum(len(k[0]) for k in kept) < len(images) * shape.patches


def test_dense_mode_is_the_dense_model():
    rng = np.random.default_rng(2)
    shape = PRESETS["tiny"]
    vit = random_vit(shape, rng, scale=0.3)
    model = torch_backbone(vit).double()
    patches = torch.tensor(patchify(rng.uniform(0, 1, (4, 1, 8, 8)), shape))
    with torch.no_grad():
        dense, kept = pruned_logits(model, [], patches, blocks=(), ratios=(), mode="dense")
        np.testing.assert_allclose(dense.numpy(), model(patches).numpy(), atol=1e-12)
    assert kept == []


def test_export_round_trips_through_the_selector_file(tmp_path):
    shape = PRESETS["tiny"]
    torch.manual_seed(0)
    module = torch_selector(shape.dim, shape.heads).double()
    config = SelectorConfig(blocks=(1,), ratios=(0.7,))
    save_selectors(tmp_path / "s.npz", [export_selector(module)], config, shape)
    loaded, loaded_config = load_selectors(tmp_path / "s.npz", shape)
    assert loaded_config == config
    again = import_selector(torch_selector(shape.dim, shape.heads).double(), loaded[0])
    for a, b in zip(module.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_shipped_selectors_load_for_the_embedded_model():
    selectors, config = load_selectors(EMBEDDED_SELECTORS, PRESETS["tiny"])
    assert (config.blocks, config.ratios, config.mode) == ((1,), (0.7,), "threshold")
    assert len(selectors) == 1


def test_one_epoch_trains_and_writes_a_selector_file(tmp_path):
    from vitforge.sw.model.train_selectors import main

    out, report = tmp_path / "s.npz", tmp_path / "s.json"
    assert main(["--epochs", "1", "--device", "cpu", "--out", str(out),
                 "--json", str(report)]) == 0
    selectors, config = load_selectors(out, PRESETS["tiny"])
    assert config.blocks == (1,) and config.mode == "threshold"
    metrics = json.loads(report.read_text())["test_accuracy"]
    assert set(metrics) == {"dense", "threshold", "topk"}
    assert metrics["topk"]["kept_ratio"] == [12 / 16]


DEIT_DIGITS = VitShape(image_size=224, patch_size=16, in_channels=1, dim=192, depth=12, heads=3,
                       mlp=768, classes=10)


def test_shipped_deit_selectors_load_for_the_timm_digits_model():
    selectors, config = load_selectors(DEIT_DIGITS_SELECTORS, DEIT_DIGITS)
    assert (config.blocks, config.ratios, config.mode) == \
        ((3, 6, 9), (0.7, 0.49, 0.343), "threshold")
    assert len(selectors) == 3


def test_digits_inputs_repeat_each_pixel():
    images = np.arange(2 * 64, dtype=float).reshape(2, 1, 8, 8)
    assert digits_inputs(images, PRESETS["tiny"]) is images
    big = digits_inputs(images, DEIT_DIGITS)
    assert big.shape == (2, 1, 224, 224)
    np.testing.assert_array_equal(big[:, :, ::28, ::28], images)
    np.testing.assert_array_equal(big[:, :, 27::28, 27::28], images)


def test_model_option_trains_the_default_stages_of_another_model(tmp_path):
    from vitforge.sw.model.train_selectors import main
    from vitforge.sw.model.weights import save_vit

    shape = VitShape(image_size=16, patch_size=4, in_channels=1, dim=32, depth=4, heads=2,
                     mlp=64, classes=10)
    save_vit(tmp_path / "m.npz", random_vit(shape, np.random.default_rng(0)))
    with pytest.raises(SystemExit):     # --model needs --out
        main(["--model", str(tmp_path / "m.npz")])
    out, report = tmp_path / "s.npz", tmp_path / "s.json"
    assert main(["--model", str(tmp_path / "m.npz"), "--epochs", "1", "--device", "cpu",
                 "--out", str(out), "--json", str(report)]) == 0
    selectors, config = load_selectors(out, shape)
    assert (config.blocks, config.ratios) == ((1, 2, 3), (0.7, 0.49, 0.343))
    training = json.loads(report.read_text())
    assert training["model"] == "m.npz"
    assert training["test_accuracy"]["topk"]["kept_ratio"] == [12 / 16, 8 / 16, 6 / 16]
