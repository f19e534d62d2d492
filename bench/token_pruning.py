"""Token pruning on the accelerator (issue 11 goals), dense and pruned side by side in one run.

1. P5, pruning efficiency: DeiT-T (random weights, one 224x224 image), top-k at 0.7, 0.49,
   0.343 before blocks 4, 7, 10, on a 16x16 array and on the ``zcu102-32x32`` preset (the
   ``zcu102`` preset when issue 11 was done), dense
   and pruned co-verified bit for bit on the RTL (ideal one-cycle memory). Goal: (cycles saved / dense cycles) >= 0.9 x (MACs
   saved / dense MACs), the selectors' own cycles counted as cost; selector cycles <= 5 % of
   the pruned model's.
2. DeiT-S on the ``zcu102-32x32`` preset, dense, default top-k and an aggressive top-k (0.5, 0.25,
   0.125): cycles and FPS at the preset's clock. Goal: default pruned FPS >= 1.45x dense.
3. Accuracy of the timm-trained DeiT-T digits model (``../shared/models``) with its shipped
   selectors, float and int8 (golden model), dense, threshold, default top-k and aggressive
   top-k, on the 359 held-out digits; and a picture of one digit's kept patches per stage.
4. The selector's resources: Yosys estimates of the token selector unit and the live-count
   logic of the ``zcu102`` preset, against the per-module estimate of the whole shell (HeatViT
   reports +8 to 11% DSP and +5 to 8% LUT for its selector).

Writes ``bench/results/token_pruning.json``, ``token_pruning_cycles.png`` and
``kept_patches_deit.png``.

    python bench/token_pruning.py [--skip-rtl] [--skip-accuracy] [--skip-resources]
"""

import argparse
from dataclasses import replace
import json
from pathlib import Path
import time

import numpy as np

from vitforge.boards.presets import PRESETS
from vitforge.sw.model.selector import default_stages

GOAL_EFFICIENCY = 0.9
GOAL_FPS_RATIO = 1.45
GOAL_SELECTOR_SHARE = 0.05
AGGRESSIVE_RATIOS = (0.5, 0.25, 0.125)
MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
DIGITS_MODEL = MODELS / "deit_tiny_digits224_seed1.safetensors"


def _stages(depth, mode="topk", ratios=None):
    stages = default_stages(depth, mode)
    return stages if ratios is None else replace(stages, ratios=ratios)


def _rtl_runs(name, settings, preset, array=None):
    """Co-verify one image of random-weight model ``name`` dense and under each of
    ``settings`` (label -> SelectorConfig) on ``preset``'s accelerator, or on the smallest
    ``array x array`` one that holds them (FPS then at the preset's clock too)."""
    from vitforge.sim.accel.cosim import coverify
    from vitforge.sim.model_run import load_model
    from vitforge.sw.accel.compiler import compile_model, config_for_model
    from vitforge.sw.accel.selection import select_stages
    from vitforge.sw.golden.encoder import pruned_vit_logits
    from vitforge.sw.model.quantize import quantize_tensor, quantize_vit
    from vitforge.sw.model.quantized_selector import quantize_selectors
    from vitforge.sw.model.selector import random_selectors
    from vitforge.sw.model.vit import patchify

    vit, calibration, test_images, _ = load_model(name)
    model = quantize_vit(vit, calibration)
    patches = quantize_tensor(patchify(test_images[:1], vit.shape)[0], model.input_scale)
    quantized = {label: quantize_selectors(
        vit, random_selectors(vit.shape, stages, np.random.default_rng(1)), stages, calibration,
        model) for label, stages in settings.items()}
    config = preset.accelerator
    if array is not None:
        config = config_for_model(model, array, selectors=next(iter(quantized.values())))
    rows = {}
    for label, selectors in {"dense": None, **quantized}.items():
        started = time.monotonic()
        program = compile_model(config, model, patches, selectors=selectors)
        report = coverify(program, log=lambda line: print(f"  {line}", flush=True))
        row = {"bit_exact": report.match, "cycles": report.cycles, "macs": program.macs,
               "fps": round(preset.clock_mhz * 1e6 / report.cycles, 1),
               "class_cycles": report.class_cycles, "section_cycles": report.section_cycles,
               "seconds": round(time.monotonic() - started, 1)}
        if selectors is not None:
            _, counts = select_stages(selectors, vit.shape)
            # The blocks' MACs at the pruned counts, without the selectors' own.
            row["block_macs"] = compile_model(config, model, patches, block_tokens=counts).macs
            row["kept_patches"] = [len(k) for k in pruned_vit_logits(model, patches,
                                                                     selectors)[1]]
            row["selector_cycles"] = sum(cycles for section, cycles
                                         in report.section_cycles.items()
                                         if section.startswith("select"))
        else:
            row["block_macs"] = program.macs
        rows[label] = row
        print(f"{name} {label}: {report.cycles} cycles, {row['fps']} FPS, bit-exact "
              f"{report.match} ({row['seconds']} s); per class {report.class_cycles}",
              flush=True)
    dense = rows["dense"]
    for label in settings:
        row = rows[label]
        cycles_saved = 1 - row["cycles"] / dense["cycles"]
        macs_saved = 1 - row["block_macs"] / dense["macs"]
        row.update(cycles_saved=round(cycles_saved, 4), macs_saved=round(macs_saved, 4),
                   efficiency=round(cycles_saved / macs_saved, 4),
                   fps_ratio=round(dense["cycles"] / row["cycles"], 4),
                   selector_share=round(row["selector_cycles"] / row["cycles"], 4))
        print(f"  {label}: cycles saved {cycles_saved:.1%}, MACs saved {macs_saved:.1%}, "
              f"efficiency {row['efficiency']:.3f}, {row['fps_ratio']:.2f}x FPS, selectors "
              f"{row['selector_share']:.1%} of the pruned cycles", flush=True)
    return rows


def accuracy(out):
    """The trained DeiT-T digits model: dense, threshold and top-k, float and int8."""
    from vitforge.sw.golden.encoder import pruned_vit_logits, vit_logits
    from vitforge.sw.model.digits import digits_split
    from vitforge.sw.model.quantize import quantize_tensor, quantize_vit
    from vitforge.sw.model.quantized_selector import quantize_selectors
    from vitforge.sw.model.selector import forward_pruned, load_selectors
    from vitforge.sw.model.timm_import import load_float_model
    from vitforge.sw.model.vit import forward, patchify
    from vitforge.sw.model.weights import DEIT_DIGITS_SELECTORS

    vit = load_float_model(DIGITS_MODEL)
    (train, _), (test, labels) = digits_split()

    def upsample(images):
        return np.repeat(np.repeat(images, 28, axis=2), 28, axis=3)

    calibration, test = upsample(train[:16]), upsample(test)
    selectors, trained = load_selectors(DEIT_DIGITS_SELECTORS, vit.shape)
    model = quantize_vit(vit, calibration)
    patches = quantize_tensor(patchify(test, vit.shape), model.input_scale)
    rows = {"dense": {"float": float((forward(vit, test).argmax(1) == labels).mean()),
                      "int8": float((np.array([vit_logits(model, p) for p in patches])
                                     .argmax(1) == labels).mean()), "kept": [1.0] * 3}}
    print(f"digits DeiT-T dense: {rows['dense']}", flush=True)
    settings = {"threshold": replace(trained, mode="threshold"),
                "topk": replace(trained, mode="topk"),
                "topk_aggressive": replace(trained, mode="topk", ratios=AGGRESSIVE_RATIOS)}
    picture = None
    for label, stages in settings.items():
        floats, kept_float = forward_pruned(vit, test, selectors, stages)
        quantized = quantize_selectors(vit, selectors, stages, calibration, model)
        runs = [pruned_vit_logits(model, p, quantized) for p in patches]
        logits = np.array([logits for logits, _ in runs])
        kept = np.array([[len(k) for k in stage_kept] for _, stage_kept in runs])
        rows[label] = {"float": float((floats.argmax(1) == labels).mean()),
                       "int8": float((logits.argmax(1) == labels).mean()),
                       "kept": (kept.mean(axis=0) / vit.shape.patches).round(4).tolist()}
        print(f"digits DeiT-T {label}: {rows[label]}", flush=True)
        if label == "threshold":
            picture = (test[0, 0], runs[0][1])
    _plot_kept(out / "kept_patches_deit.png", *picture, vit.shape, trained.blocks)
    return rows


def _plot_kept(path, image, kept, shape, blocks):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vitforge.sim.report import shade_dropped

    figure, axes = plt.subplots(1, len(kept) + 1, figsize=(2.4 * (len(kept) + 1), 2.7))
    axes[0].imshow(image, cmap="gray_r")
    axes[0].set_title("input", fontsize=9)
    for axis, indices, block in zip(axes[1:], kept, blocks):
        shade_dropped(axis, image, indices, shape.patch_size)
        axis.set_title(f"before block {block + 1}: {len(indices)}/{shape.patches}", fontsize=9)
    for axis in axes:
        axis.axis("off")
    figure.suptitle("DeiT-T digits, int8 threshold selectors: kept patches (dropped in red)",
                    fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def selector_resources():
    """Yosys estimates of the token selector unit and the live-count logic alone (flat), for
    the ``zcu102`` preset's array, against the per-module estimate of the whole shell."""
    from vitforge.boards.vivado import CORE
    from vitforge.hw.accel.live import LiveFields
    from vitforge.hw.accel.token_selector import TokenSelector
    from vitforge.sw.resources import cost_in_shell

    preset = PRESETS["zcu102"]
    return cost_in_shell({"token_selector": TokenSelector(preset.accelerator),
                          "live_fields": LiveFields()}, preset.shell(), CORE,
                         log=lambda line: print(line, flush=True))


def _plot_cycles(path, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.2))
    labels, cycles = [], []
    for model, rows in results.items():
        for label, row in rows.items():
            labels.append(f"{model}\n{label}")
            cycles.append(row["cycles"] / 1e6)
    bars = axis.bar(labels, cycles, color=["#8c8c8c" if "dense" in label else "#4c72b0"
                                           for label in labels])
    for bar, label in zip(bars, labels):
        model, setting = label.split("\n")
        fps = results[model][setting]["fps"]
        axis.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{fps:g} FPS",
                  ha="center", va="bottom", fontsize=8)
    axis.set_ylabel("Mcycles per image")
    axis.set_title("Dense against token-pruned: RTL cycles (bit-exact), FPS at 250 MHz "
                   "(32x32: the zcu102-32x32 preset)", fontsize=9)
    axis.tick_params(axis="x", labelsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-rtl", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-resources", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "token_pruning.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["goals"] = {"efficiency": GOAL_EFFICIENCY, "fps_ratio": GOAL_FPS_RATIO,
                        "selector_share": GOAL_SELECTOR_SHARE}
    preset = PRESETS["zcu102-32x32"]
    if not args.skip_rtl:
        results["rtl"] = {
            "deit-tiny 16x16": _rtl_runs("deit-tiny", {"topk": _stages(12)}, preset, array=16),
            "deit-tiny 32x32": _rtl_runs("deit-tiny", {"topk": _stages(12)}, preset),
            "deit-small 32x32": _rtl_runs("deit-small", {
                "topk": _stages(12), "topk_aggressive": _stages(12, ratios=AGGRESSIVE_RATIOS)},
                preset),
        }
        _plot_cycles(args.out / "token_pruning_cycles.png", results["rtl"])
    if not args.skip_accuracy:
        results["accuracy"] = accuracy(args.out)
    if not args.skip_resources:
        results["resources"] = selector_resources()
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
