"""The demo's report folder: a Markdown summary, JSON and plots, written atomically."""

import json
from pathlib import Path

import numpy as np

__all__ = ["write_demo_report", "accelerator_text", "before_blocks", "mean_kept_tokens",
           "shade_dropped"]


def before_blocks(blocks):
    """``"before block 1"`` or ``"before blocks 3, 6, 9"``: where selector stages run."""
    return f"before block{'s' if len(blocks) > 1 else ''} {', '.join(map(str, blocks))}"


def mean_kept_tokens(summary):
    """``"13.2, 9.5"``: a pruned run summary's tokens after each stage, mean over its images."""
    return ", ".join(f"{sum(counts) / len(counts):.1f}"
                     for counts in zip(*summary["kept_tokens"]))


def shade_dropped(axis, image, kept, patch_size):
    """Draw the 2-D ``image`` on ``axis``, the patches not among ``kept`` (row-major patch
    indices) shaded red."""
    grid = image.shape[0] // patch_size
    mask = np.zeros(grid * grid, bool)
    mask[kept] = True
    dropped = np.kron(~mask.reshape(grid, grid), np.ones((patch_size, patch_size)))
    axis.imshow(image, cmap="gray_r")
    axis.imshow(np.ma.masked_where(dropped == 0, dropped), cmap="Reds", alpha=0.55, vmin=0,
                vmax=1)


def accelerator_text(summary):
    """Which accelerator a model summary ran on, its config hash and the clock, in words."""
    source = summary["clock_source"]
    return (f"{summary['config_source']}, config hash {summary['config_hash']}, "
            f"{summary['clock_mhz']} MHz"
            + ("" if source == summary["config_source"] else f" (clock from {source})"))


def write_demo_report(folder, run, summary, force=False):
    """Write ``report.md``, ``summary.json`` and plots into ``folder`` (replaced whole;
    ``force``: even if vitforge did not write it)."""
    from vitforge.sw.files import atomic_folder

    with atomic_folder(folder, force) as staging:
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        plots = _plots(staging, run, summary)
        (staging / "report.md").write_text(_markdown(summary, plots))
    return Path(folder)


def _markdown(summary, plots):
    lines = [
        "# vitforge demo: the embedded digits ViT", "",
        f"- model: {summary['model']} ({summary['images']} test images simulated on a "
        f"{summary['array']}x{summary['array']} array)",
        f"- accelerator: {accelerator_text(summary)}",
        f"- RTL == golden model, bit for bit: **{'yes' if summary['bit_exact'] else 'NO'}**",
        f"- cycles per image: {summary['cycles']:.0f} ({summary['latency_ms']:.3f} ms, "
        f"{summary['fps']:.0f} images/s at {summary['clock_mhz']} MHz)",
        f"- PE utilization: {summary['utilization']:.1%}",
        f"- float accuracy {summary['float_accuracy']:.2%}, int8 accuracy "
        f"{summary['int8_accuracy']:.2%}, top-1 agreement {summary['top1_agreement']:.2%} "
        f"(held-out digits, golden model)",
        *_pruning_lines(summary), "",
    ]
    dense = summary.get("dense_per_layer", {})
    if dense:
        lines += ["| layer | cycles per image | share | dense | pruned / dense |",
                  "| --- | ---: | ---: | ---: | ---: |"]
    else:
        lines += ["| layer | cycles per image | share |", "| --- | ---: | ---: |"]
    for name, cycles in summary["per_layer"].items():
        row = f"| {name} | {cycles:.0f} | {cycles / summary['cycles']:.1%} |"
        if dense:
            row += (f" {dense[name]:.0f} | {cycles / dense[name]:.2f} |" if name in dense
                    else " - | - |")
        lines.append(row)
    lines += ["", "| instruction class | cycles per image | share | beside a GEMM (hidden) |",
              "| --- | ---: | ---: | ---: |"]
    beside = summary["per_class_beside"]
    for name, cycles in summary["per_class"].items():
        lines.append(f"| {name} | {cycles:.0f} | {cycles / summary['cycles']:.1%} | "
                     f"{beside.get(name, 0):.0f} |")
    lines.append("")
    lines += [f"![{name}]({name}.png)" for name in plots]
    return "\n".join(lines) + "\n"


def _pruning_lines(summary):
    if summary["prune"] == "none":
        return []
    return [
        f"- token selection ({summary['prune_mode']} mode) "
        f"{before_blocks(summary['stage_blocks'])}: tokens after each stage "
        f"{mean_kept_tokens(summary)} (mean over the simulated images)",
        f"- the same images dense: {summary['dense_cycles']:.0f} cycles; pruned is "
        f"**{summary['speedup']:.2f}x** faster, selectors included",
        f"- dense accuracy: float {summary['dense_float_accuracy']:.2%}, int8 "
        f"{summary['dense_int8_accuracy']:.2%}",
    ]


def _plots(folder, run, summary):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    for axis, key, title in ((axes[0], "per_layer", "Cycles per layer"),
                             (axes[1], "per_class", "Cycles per instruction class")):
        names = list(summary[key])[::-1]
        axis.barh(names, [summary[key][n] for n in names], color="#4c72b0")
        if key == "per_class":
            beside = summary["per_class_beside"]
            axis.barh(names, [beside.get(n, 0) for n in names],
                      left=[summary[key][n] for n in names], color="#c7d4e8", hatch="//",
                      label="beside a GEMM (hidden)")
            axis.legend(fontsize=8, loc="lower right")
        axis.set_xlabel("cycles per image")
        axis.set_title(f"{title} (utilization {summary['utilization']:.0%})", fontsize=10)
    figure.tight_layout()
    figure.savefig(folder / "cycles.png", dpi=110)
    plt.close(figure)

    from vitforge.sw.model.digits import digits_split
    (_, _), (images, _) = digits_split()
    count = len(run.predictions)
    figure, axes = plt.subplots(1, count, figsize=(1.6 * count, 2.1))
    for axis, image, (rtl, golden, floating, label) in zip(np.atleast_1d(axes), images,
                                                           run.predictions):
        axis.imshow(image[0], cmap="gray_r")
        axis.set_title(f"RTL {rtl} | float {floating}\nlabel {label}", fontsize=8,
                       color="black" if rtl == label else "red")
        axis.axis("off")
    figure.suptitle("Held-out digits: RTL prediction, float prediction, label", fontsize=9)
    figure.tight_layout()
    figure.savefig(folder / "digits.png", dpi=110)
    plt.close(figure)
    if not run.stage_blocks:
        return ["cycles", "digits"]
    _pruning_plots(plt, folder, run, summary, images)
    return ["cycles", "digits", "pruned_cycles", "kept_patches"]


def _pruning_plots(plt, folder, run, summary, images):
    """Cycles per layer dense against pruned, and each image's kept patches per stage."""
    dense, pruned = summary["dense_per_layer"], summary["per_layer"]
    names = list(dict.fromkeys([*pruned, *dense]))[::-1]        # program order, top down
    positions = np.arange(len(names))
    figure, axis = plt.subplots(figsize=(7, 0.32 * len(names) + 1.2))
    axis.barh(positions + 0.2, [dense.get(name, 0) for name in names], 0.4, label="dense",
              color="#8c8c8c")
    axis.barh(positions - 0.2, [pruned.get(name, 0) for name in names], 0.4, label="pruned",
              color="#4c72b0")
    axis.set_yticks(positions, names, fontsize=8)
    axis.set_xlabel("cycles per image")
    axis.set_title(f"Cycles per layer: pruned {summary['speedup']:.2f}x faster than dense",
                   fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(folder / "pruned_cycles.png", dpi=110)
    plt.close(figure)

    from vitforge.sw.model.weights import EMBEDDED_WEIGHTS, load_vit
    shape = load_vit(EMBEDDED_WEIGHTS)[0].shape
    stages = len(run.stage_blocks)
    count = len(run.kept_patches)
    figure, axes = plt.subplots(stages + 1, count, figsize=(1.5 * count, 1.9 * (stages + 1)),
                                squeeze=False)
    for column, (image, kept) in enumerate(zip(images, run.kept_patches)):
        for row in range(stages + 1):
            axis = axes[row][column]
            if row:
                shade_dropped(axis, image[0], kept[row - 1], shape.patch_size)
                axis.set_title(f"block {run.stage_blocks[row - 1]}: "
                               f"{len(kept[row - 1])}/{shape.patches}", fontsize=7)
            else:
                axis.imshow(image[0], cmap="gray_r")
                axis.set_title(f"image {column}", fontsize=7)
            axis.axis("off")
    figure.suptitle("Kept patches before each selected block (dropped shaded red)", fontsize=9)
    figure.tight_layout()
    figure.savefig(folder / "kept_patches.png", dpi=110)
    plt.close(figure)
