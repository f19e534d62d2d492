"""HP sparse weights (issue 12 goals), sparse and dense side by side in one run.

1. Sweep: sparsity 0 to 90 % on DeiT-T's four GEMM shapes (197 tokens; QKV 192x576, proj
   192x192, fc1 192x768, fc2 768x192), HP-pruned by magnitude (blocks of 32 rows) for a 16x16
   array and for the ``zcu102`` preset's 32x32 array: GEMM cycles (the engine's exact
   ``command_cycles``) and stored bytes (values, index records and their padding) against
   dense. Goals (P6): at 50 %, cycles <= 0.55 x dense and bytes <= 0.55 x dense on every
   shape and both arrays; at 75 %, cycles <= 0.30 x dense.
2. RTL: the same four shapes at 50 % and 75 % on the 16x16 GEMM engine in Verilator, RTL ==
   golden bit for bit and the measured busy cycles against the formula and against dense.
3. Models: DeiT-T (random weights, one image) on a 16x16 accelerator, dense, 50 % HP sparse,
   token pruning (default top-k) and both, each co-verified bit for bit on the RTL.
4. Accuracy: the shipped 50 % HP ``tiny`` digits model against the dense one, float and int8
   on the held-out split, RTL == golden on simulated images.
5. Resources: Yosys estimates of the sparse-weight additions (the DMA's index expander, the
   IDX scratchpad) against the whole ``zcu102`` shell.

Writes ``bench/results/sparsity.json``, ``sparsity_sweep.png`` and the format picture
``docs/images/hp_format.png``.

    python bench/sparsity.py [--skip-rtl] [--skip-models] [--skip-accuracy] [--skip-resources]
"""

import argparse
import json
from pathlib import Path
import time

from amaranth import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import Out
import numpy as np

from vitforge.boards.presets import PRESETS
from vitforge.hw.gemm.config import GemmConfig
from vitforge.hw.gemm.descriptor import GemmDescriptor
from vitforge.sw.gemm.plan import command_cycles
from vitforge.sw.gemm.sparse import DEFAULT_BLOCK_ROWS, HPSparseWeight
from vitforge.sw.model.hp_prune import hp_pattern

TOKENS = 197
SHAPES = {"qkv": (192, 576), "proj": (192, 192), "fc1": (192, 768), "fc2": (768, 192)}
SWEEP = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9)
GOAL_50 = 0.55
GOAL_75_CYCLES = 0.30


def sparse_weight(rng, k, n, sparsity, cols):
    """A random int8 ``k x n`` weight HP-pruned by magnitude to ``sparsity`` for ``cols``."""
    weight = rng.normal(0, 0.02, (k, n))
    pattern = hp_pattern(weight, sparsity, cols=cols, block_rows=DEFAULT_BLOCK_ROWS)
    scale = np.abs(weight).max(axis=0) / 127
    quantized = np.clip(np.round(weight / scale), -127, 127).astype(np.int8) * pattern.mask()
    return HPSparseWeight.encode(quantized.astype(np.int8), pattern)


def _descriptor(k, n, entries, array, sparse):
    return GemmDescriptor(a_addr=0, a_stride=k, b_addr=0, b_stride=entries, c_addr=0,
                          c_stride=n, p_addr=0, k=entries, m_tiles=-(-TOKENS // array), n=n,
                          sparse=sparse)


def sweep():
    """Cycles and bytes against dense for every shape, sparsity and array."""
    rows = []
    for array in (16, PRESETS["zcu102"].accelerator.array):
        config = GemmConfig(rows=array, cols=array, k_max=2048)
        for name, (k, n) in SHAPES.items():
            dense = command_cycles(config, _descriptor(k, n, k, array, 0))
            for sparsity in SWEEP:
                weight = sparse_weight(np.random.default_rng(0), k, n, sparsity, array)
                entries = max(weight.pattern.length, 1)
                cycles = command_cycles(config, _descriptor(k, n, entries, array, 1))
                rows.append({"array": array, "layer": name, "k": k, "n": n,
                             "sparsity": sparsity,
                             "pruned": round(float(weight.pattern.sparsity), 4),
                             "blocks": weight.pattern.kept_blocks,
                             "kept_rows": weight.pattern.kept_rows,
                             "cycles": cycles, "dense_cycles": dense,
                             "cycle_ratio": round(cycles / dense, 4),
                             "bytes": weight.storage_bytes(),
                             "dense_bytes": weight.dense_bytes(),
                             "byte_ratio": round(weight.storage_bytes()
                                                 / weight.dense_bytes(), 4)})
    return rows


def goals(rows):
    """The P6 and 75 % goals over every shape and array."""
    def worst(sparsity, key):
        return max(row[key] for row in rows if row["sparsity"] == sparsity)

    result = {"cycles_50": worst(0.5, "cycle_ratio"), "bytes_50": worst(0.5, "byte_ratio"),
              "cycles_75": worst(0.75, "cycle_ratio")}
    result["p6_met"] = result["cycles_50"] <= GOAL_50 and result["bytes_50"] <= GOAL_50
    result["goal_75_met"] = result["cycles_75"] <= GOAL_75_CYCLES
    return result


def rtl_gemms():
    """The four shapes at 50 % and 75 % on the 16x16 engine in Verilator."""
    from vitforge.sim.gemm.cosim import simulate
    from vitforge.sw.gemm.plan import GemmProblem, plan_gemm, plan_sparse_gemm

    config = GemmConfig(rows=16, cols=16, k_max=768)
    rng = np.random.default_rng(1)
    jobs, labels = [], []
    for name, (k, n) in SHAPES.items():
        a = rng.integers(-128, 128, (TOKENS, k), dtype=np.int8)
        params = dict(bias=rng.integers(-2 ** 12, 2 ** 12, n),
                      multiplier=rng.integers(1 << 14, 1 << 15, n), shift=np.full(n, 20))
        for sparsity in (0.0, 0.5, 0.75):
            weight = sparse_weight(rng, k, n, sparsity, 16)
            problem = GemmProblem(a=a, b=weight.dense(), **params)
            jobs.append(plan_gemm(config, problem) if sparsity == 0
                        else plan_sparse_gemm(config, problem, weight))
            labels.append((name, sparsity))
    report = simulate(config, jobs, log=lambda line: print(f"  {line}", flush=True))
    rows, dense = [], {}
    for (name, sparsity), job, result in zip(labels, jobs, report.jobs):
        if sparsity == 0:
            dense[name] = result.cycles
        rows.append({"layer": name, "sparsity": sparsity, "bit_exact": result.match,
                     "cycles": result.cycles,
                     "formula": command_cycles(config, job.descriptor),
                     "cycle_ratio": round(result.cycles / dense[name], 4)})
        print(f"RTL {name} {sparsity:.0%}: {rows[-1]}", flush=True)
    return rows


def models():
    """DeiT-T dense, HP 50 %, token pruning and both, co-verified on a 16x16 accelerator."""
    from vitforge.sim.accel.cosim import coverify
    from vitforge.sim.model_run import load_model
    from vitforge.sw.accel.compiler import compile_model, config_for_model
    from vitforge.sw.model.hp_prune import prune_vit
    from vitforge.sw.model.quantize import quantize_tensor, quantize_vit
    from vitforge.sw.model.quantized_selector import quantize_selectors
    from vitforge.sw.model.selector import default_stages, random_selectors
    from vitforge.sw.model.vit import patchify

    vit, calibration, images, _ = load_model("deit-tiny")
    stages = default_stages(vit.shape.depth, "topk")
    selectors = random_selectors(vit.shape, stages, np.random.default_rng(1))
    variants = {"dense": vit, "hp50": prune_vit(vit, 0.5, cols=16)}
    rows = {}
    for label, model_vit in variants.items():
        model = quantize_vit(model_vit, calibration)
        patches = quantize_tensor(patchify(images[:1], vit.shape)[0], model.input_scale)
        quantized = quantize_selectors(model_vit, selectors, stages, calibration, model)
        config = config_for_model(model, 16, selectors=quantized)
        for pruning, chosen in (("", None), ("+tokens", quantized)):
            started = time.monotonic()
            program = compile_model(config, model, patches, selectors=chosen)
            report = coverify(program, log=lambda line: print(f"  {line}", flush=True))
            rows[label + pruning] = {"bit_exact": report.match and not report.error,
                                     "cycles": report.cycles, "macs": program.macs,
                                     "class_cycles": report.class_cycles,
                                     "seconds": round(time.monotonic() - started, 1)}
            print(f"DeiT-T {label + pruning}: {rows[label + pruning]}", flush=True)
    for row in rows.values():
        row["cycle_ratio"] = round(row["cycles"] / rows["dense"]["cycles"], 4)
    return rows


def accuracy():
    """The shipped 50 % HP tiny model against the dense one (golden model, held-out split),
    RTL == golden on simulated images."""
    from vitforge.sim.model_run import run_model

    rows = {}
    for name in ("tiny", "tiny-hp50"):
        run = run_model(name, images=8, array=16)
        rows[name] = {"float": run.float_accuracy, "int8": run.int8_accuracy,
                      "bit_exact": run.bit_exact and not run.error, "images": run.images,
                      "cycles": sum(run.cycles) / len(run.cycles)}
        print(f"{name}: {rows[name]}", flush=True)
    rows["int8_loss_vs_dense_float"] = round(rows["tiny"]["float"]
                                             - rows["tiny-hp50"]["int8"], 4)
    return rows


def resources():
    """Yosys estimates of what sparse weights add to the ``zcu102`` shell: the DMA's index
    expander and the IDX scratchpad, each alone."""
    from vitforge.boards.vivado import CORE
    from vitforge.hw.accel.ports import scratchpad_entries
    from vitforge.hw.accel.sparse_loader import IndexExpander
    from vitforge.sw.resources import cost_in_shell

    preset = PRESETS["zcu102"]
    config = preset.accelerator
    shape, depth = scratchpad_entries(config)["idx"]
    return cost_in_shell({"index_expander": IndexExpander(config.gemm.index_bits),
                          "idx_scratchpad": _Scratchpad(shape, depth)},
                         preset.shell(), CORE, log=lambda line: print(line, flush=True))


class _Scratchpad(wiring.Component):
    """One memory with a read and a write port, as the accelerator's scratchpads are."""

    def __init__(self, shape, depth):
        self._shape, self._depth = shape, depth
        bits = (depth - 1).bit_length()
        super().__init__({
            "read": Out(memory.ReadPort.Signature(addr_width=bits, shape=shape)),
            "write": Out(memory.WritePort.Signature(addr_width=bits, shape=shape))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.store = store = memory.Memory(shape=self._shape, depth=self._depth,
                                                   init=[])
        wiring.connect(m, wiring.flipped(self.read), store.read_port())
        wiring.connect(m, wiring.flipped(self.write), store.write_port())
        return m


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrays = sorted({row["array"] for row in rows})
    figure, axes = plt.subplots(1, len(arrays), figsize=(5.5 * len(arrays), 4), sharey=True)
    for axis, array in zip(np.atleast_1d(axes), arrays):
        for name in SHAPES:
            chosen = [row for row in rows if row["array"] == array and row["layer"] == name]
            x = [row["sparsity"] for row in chosen]
            line, = axis.plot(x, [row["cycle_ratio"] for row in chosen], marker="o",
                              label=f"{name} cycles")
            axis.plot(x, [row["byte_ratio"] for row in chosen], marker="s", linestyle="--",
                      color=line.get_color(), label=f"{name} bytes")
        axis.plot([0, 0.9], [1, 0.1], color="grey", linewidth=0.8, label="1 - sparsity")
        axis.scatter([0.5, 0.5, 0.75], [GOAL_50, GOAL_50, GOAL_75_CYCLES], marker="*",
                     s=120, color="black", zorder=5, label="goals")
        axis.set_title(f"DeiT-T GEMMs, {array}x{array} array, 197 tokens", fontsize=10)
        axis.set_xlabel("HP sparsity (blocks of 32 rows)")
        axis.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("sparse / dense")
    np.atleast_1d(axes)[-1].legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def draw_format(path):
    """The format on a small example: which weights a pattern keeps, and the stored form."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(3)
    rows, columns, cols, block_rows = 56, 32, 16, 16
    # Rows of each group scaled apart, so that the groups keep different blocks and rows.
    scales = np.repeat(rng.uniform(0.1, 1.5, (rows, columns // cols)) ** 2, cols, axis=1)
    weight = rng.normal(0, 1, (rows, columns)) * scales
    pattern = hp_pattern(weight, 0.6, cols=cols, block_rows=block_rows)
    stored = HPSparseWeight.encode(np.where(pattern.mask(), 1, 0).astype(np.int8), pattern)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.6),
                                         gridspec_kw={"width_ratios": [1, 1.25]})
    shown = np.where(pattern.mask(), np.abs(weight), np.nan)
    left.imshow(shown, cmap="viridis", aspect="auto", interpolation="nearest")
    for edge in range(block_rows, rows, block_rows):
        left.axhline(edge - 0.5, color="black", linewidth=1)
    for edge in range(cols, columns, cols):
        left.axvline(edge - 0.5, color="red", linewidth=2)
    left.set_title(f"W ({rows}x{columns}) at {pattern.sparsity:.0%} HP sparsity: kept "
                   f"weights coloured\ngroups of {cols} columns (red), blocks of {block_rows} "
                   f"rows (black; the last is short)", fontsize=9)
    left.set_xlabel("output channel (GEMM column)")
    left.set_ylabel("input channel k (GEMM step)")
    right.axis("off")
    lines = [f"every group keeps b = {pattern.kept_blocks} blocks x r = {pattern.kept_rows} "
             f"rows: L = {pattern.length} GEMM steps instead of {rows}", ""]
    for group, record in enumerate(stored.index_bytes()):
        body = record[:pattern.kept_blocks * (1 + pattern.kept_rows)].reshape(
            pattern.kept_blocks, -1)
        lines.append(f"group {group}: values {pattern.length} words x {cols} int8")
        lines += [f"  block {blk[0]}: offsets {' '.join(map(str, blk[1:]))}" for blk in body]
        lines.append(f"  index record {record.size} bytes (1 + r per block, padded to 16)")
        lines.append(f"  rows read from A: {' '.join(map(str, pattern.row_index()[group]))}")
        lines.append("")
    lines.append(f"stored {stored.storage_bytes()} bytes, dense {stored.dense_bytes()} bytes")
    right.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=7.5,
               wrap=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for part in ("rtl", "models", "accuracy", "resources"):
        parser.add_argument(f"--skip-{part}", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = sweep()
    results = {"sweep": rows, "goals": goals(rows)}
    print(f"goals: {results['goals']}", flush=True)
    plot(rows, out / "sparsity_sweep.png")
    draw_format(Path(__file__).parents[1] / "docs" / "images" / "hp_format.png")
    path = out / "sparsity.json"
    for part, run in (("rtl", rtl_gemms), ("models", models), ("accuracy", accuracy),
                      ("resources", resources)):
        if not getattr(args, f"skip_{part}"):
            results[part] = run()
            path.write_text(json.dumps(results, indent=1) + "\n")      # after every part
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
