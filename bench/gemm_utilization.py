"""PE utilization of a 16x16 engine on the DeiT-T GEMM shapes (issue 2 goal: >= 90%).

Runs the four GEMMs of a DeiT-T encoder block in one Verilator session,
checks each against the golden model bit for bit, and prints cycles, ideal
cycles (M*K*N / (rows*cols)) and utilization side by side, plus the Verilog
generation time, the Verilator build time and the simulation speed. Writes
``bench/results/gemm_utilization.json`` and, with matplotlib, a bar chart.

    python bench/gemm_utilization.py [--rows 16 --cols 16] [--seed 0]
"""

import argparse
import json
from pathlib import Path
import sys

import numpy as np

from vitforge.hw.gemm.config import GemmConfig
from vitforge.sim.gemm.cosim import simulate
from vitforge.sw.gemm.plan import plan_gemm
from vitforge.sw.gemm.problems import random_problem

DEIT_TINY_GEMMS = {          # name: (M, K, N) for N=197 tokens, C=192, MLP 768
    "qkv": (197, 192, 576),
    "proj": (197, 192, 192),
    "fc1": (197, 192, 768),
    "fc2": (197, 768, 192),
}
GOAL = 0.90


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--cols", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)

    config = GemmConfig(rows=args.rows, cols=args.cols)
    rng = np.random.default_rng(args.seed)
    # One GEMM at a time in the whole buffers: FC1's weights need more than half
    # of the default B buffer, so these shapes cannot be double-buffered.
    jobs = [plan_gemm(config, random_problem(rng, m, k, n))
            for m, k, n in DEIT_TINY_GEMMS.values()]
    report = simulate(config, jobs, log=lambda line: print(line, flush=True))

    rows = []
    print(f"\n{args.rows}x{args.cols} PE array, seed {args.seed}")
    print(f"{'GEMM':6} {'M x K x N':>16} {'cycles':>9} {'ideal':>9} {'util':>7} {'goal':>5} "
          f"{'bit-exact':>9}")
    for name, job in zip(DEIT_TINY_GEMMS, report.jobs):
        rows.append({"gemm": name, "m": job.m, "k": job.k, "n": job.n, "cycles": job.cycles,
                     "ideal_cycles": job.ideal_cycles, "utilization": job.utilization,
                     "match": job.match,
                     "sim_cycles_per_second": job.cycles / job.run_seconds})
        print(f"{name:6} {f'{job.m}x{job.k}x{job.n}':>16} {job.cycles:9d} "
              f"{job.ideal_cycles:9.0f} {job.utilization:7.1%} "
              f"{'met' if job.utilization >= GOAL else 'MISS':>5} {str(job.match):>9}")
    run_cycles = sum(job.cycles for job in report.jobs)
    run_seconds = sum(job.run_seconds for job in report.jobs)
    summary = {
        "rows": args.rows, "cols": args.cols, "seed": args.seed, "gemms": rows,
        "verilog_seconds": report.verilog_seconds,
        "build_seconds": report.build_seconds, "build_cached": report.build_cached,
        "sim_seconds_total": report.sim_seconds,
        "sim_cycles_per_second": run_cycles / run_seconds,
        "match": report.match,
    }
    print(f"\nVerilog generation {report.verilog_seconds:.1f} s"
          f"{' (cached)' if not report.verilog_seconds else ''}, Verilator build "
          f"{report.build_seconds:.1f} s{' (cached)' if report.build_cached else ''}, "
          f"simulation {report.sim_seconds:.1f} s in all "
          f"({summary['sim_cycles_per_second']:.0f} engine cycles/s while running)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gemm_utilization.json").write_text(json.dumps(summary, indent=2))
    _plot(rows, f"DeiT-T GEMMs on a {args.rows}x{args.cols} array", args.out / "gemm_utilization.png")
    return 0 if report.match else 1


def _plot(rows, title, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    figure, axis = plt.subplots(figsize=(6, 3.2))
    names = [row["gemm"] for row in rows]
    values = [100 * row["utilization"] for row in rows]
    axis.bar(names, values, color="#4c72b0")
    axis.axhline(100 * GOAL, color="#c44e52", linestyle="--", label="goal 90%")
    for x, value in enumerate(values):
        axis.text(x, value + 1, f"{value:.1f}%", ha="center")
    axis.set_ylim(0, 105)
    axis.set_ylabel("PE utilization (%)")
    axis.set_title(title)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
