"""An exploration's results: the Pareto front, ``points.csv``/``.json``, ``best.json``, plots.

The front is over the points that are ``ok`` and fit the device: a point is on
it when no other point has at least its FPS (and its accuracy, where points
have one) with at most its DSPs, LUTs and BRAM36 and is better in one of them.
``best.json`` is the fastest point with routing headroom (LUT and BRAM36 at most
80% of the device), else the fastest that fits, written as ``vitforge generate
--config`` reads it.
"""

import csv
import io
import json

from vitforge.sw.files import write_atomic

from .evaluate import ROW_FIELDS

__all__ = ["pareto_front", "best_row", "write_results"]

#: Lower is better for these; FPS is higher-is-better.
_COSTS = ("dsp", "lut", "bram36")


def _dominates(a, b):
    gains = [("fps", a["fps"], b["fps"])]
    if a["accuracy"] is not None and b["accuracy"] is not None:
        gains.append(("accuracy", a["accuracy"], b["accuracy"]))
    no_worse = all(x >= y for _, x, y in gains) and all(a[key] <= b[key] for key in _COSTS)
    better = any(x > y for _, x, y in gains) or any(a[key] < b[key] for key in _COSTS)
    return no_worse and better


def pareto_front(rows):
    """The rows on the front, fastest first (see the module docstring)."""
    candidates = [row for row in rows if row["status"] == "ok" and row["fits"]]
    front = [row for row in candidates
             if not any(_dominates(other, row) for other in candidates)]
    return sorted(front, key=lambda row: (-row["fps"], row["lut"], row["index"]))


def best_row(rows):
    """The row ``best.json`` holds, or ``None`` when no point fits."""
    front = pareto_front(rows)
    roomy = [row for row in front if row["headroom"]]
    return (roomy or front or [None])[0]


def write_results(folder, rows, study, *, log=print):
    """Write ``points.csv``, ``points.json``, ``best.json`` (when a point fits) and
    ``pareto.png`` into ``folder``, each replaced atomically; returns the front."""
    from vitforge.boards.presets import config_hash

    from .evaluate import point_shell

    rows = sorted(rows, key=lambda row: row["index"])
    front = pareto_front(rows)
    on_front = {row["index"] for row in front}
    table = [{**{key: row.get(key) for key in ROW_FIELDS}, "pareto": row["index"] in on_front}
             for row in rows]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[*ROW_FIELDS, "pareto"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    write_atomic(folder / "points.csv", text.getvalue())
    write_atomic(folder / "points.json", json.dumps(table, indent=1) + "\n")
    best = best_row(rows)
    if best is not None:
        config = point_shell(study, json.loads(best["point"]))
        write_atomic(folder / "best.json", json.dumps(
            {"board": study.board, **config.to_dict(), "config_hash": config_hash(config)},
            indent=2, sort_keys=True) + "\n")
    elif (folder / "best.json").exists():
        (folder / "best.json").unlink()
    _plot(folder / "pareto.png", rows, front, log)
    return front


def _plot(path, rows, front, log):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("no pareto.png: plots need matplotlib (pip install matplotlib)")
        return
    from vitforge.sw.files import atomic_output

    ok = [row for row in rows if row["status"] == "ok"]
    accuracies = {row["accuracy"] for row in ok} - {None}
    panels = 4 if len(accuracies) > 1 else 3
    figure, axes = plt.subplots(1, panels, figsize=(4.7 * panels, 4.5))
    for axis, key, label in zip(axes, ("dsp", "lut", "bram36"),
                                ("DSP48E2", "LUT", "BRAM36")):
        for subset, style in (([r for r in ok if not r["fits"]],
                               dict(color="0.75", marker="x", label="does not fit")),
                              ([r for r in ok if r["fits"]],
                               dict(color="tab:blue", marker=".", label="fits"))):
            if subset:
                axis.scatter([100 * r[f"{key}_util"] for r in subset],
                             [r["fps"] for r in subset], s=14, **style)
        if front:
            points = sorted((100 * r[f"{key}_util"], r["fps"]) for r in front)
            axis.scatter(*zip(*points), s=30, color="tab:red", label="Pareto front", zorder=3)
        axis.axvline(100, color="k", linewidth=0.8)
        axis.axvline(80, color="k", linewidth=0.8, linestyle=":")
        axis.set_xlabel(f"{label} (% of XCZU9EG)")
        axis.set_ylabel("frames per second")
        axis.grid(alpha=0.3)
    if ok:                      # without a valid point there is nothing to label
        axes[0].legend(loc="best", fontsize=8)
    if panels == 4:
        _accuracy_panel(axes[3], ok, front)
    figure.suptitle(f"{len(ok)} design points, {len(front)} on the Pareto front "
                    f"(FPS against DSP, LUT and BRAM36; dotted: 80% headroom)")
    figure.tight_layout()
    with atomic_output(path) as out:
        figure.savefig(out, format="png", dpi=110)
    plt.close(figure)


def _accuracy_panel(axis, ok, front):
    """Accuracy against FPS, a colour per pruning setting (``keep`` and ``sparsity``)."""
    settings = dict.fromkeys((row["keep"], row["sparsity"]) for row in ok)
    for index, (keep, sparsity) in enumerate(settings):
        subset = [row for row in ok if (row["keep"], row["sparsity"]) == (keep, sparsity)
                  and row["fits"]]
        if subset:
            axis.scatter([row["fps"] for row in subset],
                         [100 * row["accuracy"] for row in subset], s=14,
                         color=f"C{index % 10}", label=f"keep {keep}, sparsity {sparsity}")
    if front:
        axis.scatter([row["fps"] for row in front], [100 * row["accuracy"] for row in front],
                     s=40, facecolors="none", edgecolors="tab:red", label="Pareto front")
    axis.set_xlabel("frames per second")
    axis.set_ylabel("int8 top-1 accuracy (%)")
    axis.grid(alpha=0.3)
    axis.legend(loc="best", fontsize=8)
