"""Token selection on the embedded tiny digits model: float against int8 (issue 11).

Uses the shipped selectors (``sw/model/data/digits_selectors.npz``) in both
modes on the held-out split, calibrated on the first 200 training images as
``vitforge simulate --model tiny`` is. Prints the table of
``docs/token-selection.md`` and writes ``bench/results/selector_accuracy.json``.

    python bench/selector_accuracy.py
"""

import json
from pathlib import Path

import numpy as np

from vitforge.sim.model_run import load_model
from vitforge.sw.golden.encoder import pruned_vit_logits, vit_logits
from vitforge.sw.model.quantize import quantize_tensor, quantize_vit
from vitforge.sw.model.quantized_selector import quantize_selectors
from vitforge.sw.model.selector import SelectorConfig, forward_pruned, load_selectors
from vitforge.sw.model.vit import forward, patchify

SELECTORS = Path(__file__).parents[1] / "sw" / "model" / "data" / "digits_selectors.npz"
RESULTS = Path(__file__).parent / "results" / "selector_accuracy.json"


def main():
    vit, calibration, images, labels = load_model("tiny")
    selectors, config = load_selectors(SELECTORS, vit.shape)
    model = quantize_vit(vit, calibration)
    patches = quantize_tensor(patchify(images, vit.shape), model.input_scale)
    count = vit.shape.patches
    results = {"images": len(labels),
               "dense_float": float((forward(vit, images).argmax(1) == labels).mean()),
               "dense_int8": float((np.array([vit_logits(model, p) for p in patches])
                                    .argmax(1) == labels).mean())}
    for mode in ("threshold", "topk"):
        mode_config = SelectorConfig(blocks=config.blocks, ratios=config.ratios, mode=mode)
        float_logits, float_kept = forward_pruned(vit, images, selectors, mode_config)
        quantized = quantize_selectors(vit, selectors, mode_config, calibration, model)
        runs = [pruned_vit_logits(model, p, quantized) for p in patches]
        int_logits = np.array([logits for logits, _ in runs])
        masks = [(np.isin(np.arange(count), kept[-1]), np.isin(np.arange(count), reference[-1]))
                 for (_, kept), reference in zip(runs, float_kept)]
        results[mode] = {
            "float_accuracy": float((float_logits.argmax(1) == labels).mean()),
            "int8_accuracy": float((int_logits.argmax(1) == labels).mean()),
            "float_kept_fraction": float(np.mean([b.mean() for _, b in masks])),
            "int8_kept_fraction": float(np.mean([a.mean() for a, _ in masks])),
            "decision_agreement": float(np.mean([(a == b).mean() for a, b in masks])),
            "same_kept_set": float(np.mean([(a == b).all() for a, b in masks])),
            "prediction_agreement": float((int_logits.argmax(1)
                                           == float_logits.argmax(1)).mean())}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
