"""The demo's report folder: a Markdown summary, JSON and plots, written atomically."""

import json
from pathlib import Path

import numpy as np

__all__ = ["write_demo_report"]


def write_demo_report(folder, run, summary):
    """Write ``report.md``, ``summary.json`` and plots into ``folder`` (replaced whole)."""
    from vitforge.sw.files import atomic_folder

    with atomic_folder(folder) as staging:
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        plots = _plots(staging, run, summary)
        (staging / "report.md").write_text(_markdown(summary, plots))
    return Path(folder)


def _markdown(summary, plots):
    lines = [
        "# vitforge demo: the embedded digits ViT", "",
        f"- model: {summary['model']} ({summary['images']} test images simulated on a "
        f"{summary['array']}x{summary['array']} array)",
        f"- RTL == golden model, bit for bit: **{'yes' if summary['bit_exact'] else 'NO'}**",
        f"- cycles per image: {summary['cycles']:.0f} ({summary['latency_ms']:.3f} ms, "
        f"{summary['fps']:.0f} images/s at {summary['clock_mhz']} MHz)",
        f"- PE utilization: {summary['utilization']:.1%}",
        f"- float accuracy {summary['float_accuracy']:.2%}, int8 accuracy "
        f"{summary['int8_accuracy']:.2%}, top-1 agreement {summary['top1_agreement']:.2%} "
        f"(held-out digits, golden model)", "",
        "| layer | cycles per image | share |", "| --- | ---: | ---: |",
    ]
    for name, cycles in summary["per_layer"].items():
        lines.append(f"| {name} | {cycles:.0f} | {cycles / summary['cycles']:.1%} |")
    lines += ["", "| instruction class | cycles per image | share |", "| --- | ---: | ---: |"]
    for name, cycles in summary["per_class"].items():
        lines.append(f"| {name} | {cycles:.0f} | {cycles / summary['cycles']:.1%} |")
    lines.append("")
    lines += [f"![{name}]({name}.png)" for name in plots]
    return "\n".join(lines) + "\n"


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
    return ["cycles", "digits"]
