"""A DeiT-T-shaped encoder block on the programmable accelerator (issue 4 goals).

Compiles one random-weight integer block (197 tokens, C = 192, 3 heads, MLP 768),
runs it on the RTL in Verilator and on the golden interpreter, compares the whole
external memory, and reports cycles against the MAC-bound ideal (block MACs /
PEs) with the per-class breakdown, the simulation time and the golden
interpreter's time. Writes ``bench/results/accel_block.json`` and a bar chart.

    python bench/accel_block.py [--array 16] [--seed 0]
"""

import argparse
import json
from pathlib import Path
import sys
import time

import numpy as np

from vitforge.sim.accel.cosim import coverify
from vitforge.sw.accel.compiler import compile_blocks, config_for
from vitforge.sw.golden.accel.interpreter import Machine, run_program
from vitforge.sw.golden.encoder import encoder_block
from vitforge.sw.model.random_block import random_block, random_tokens

GOAL_RATIO = 1.25
GOAL_SIM_SECONDS = 60
GOAL_GOLDEN_SECONDS = 0.2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--array", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=197)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    x = random_tokens(rng, args.tokens, 192)
    block = random_block(rng, dim=192, heads=3, hidden=768, calibration=x)
    config = config_for([block], args.tokens, args.array)
    program = compile_blocks(config, [block], x)

    timings = []
    for _ in range(5):
        machine = Machine(config, program.image)
        started = time.perf_counter()
        run_program(machine, program.program_addr)
        timings.append(time.perf_counter() - started)
    golden_seconds = min(timings)
    reference_ok = np.array_equal(program.read_output(machine.dram), encoder_block(x, block))

    report = coverify(program, log=lambda line: print(line, flush=True))
    ideal = program.macs / args.array ** 2
    ratio = report.cycles / ideal
    print(f"\nDeiT-T block, {args.tokens} tokens, {args.array}x{args.array} array, seed "
          f"{args.seed}, {len(program.instructions)} instructions")
    print(f"  RTL == golden (whole external memory): {report.match}; golden == direct "
          f"reference: {reference_ok}; error status {report.error}")
    print(f"  cycles {report.cycles}, ideal {ideal:.0f} ({program.macs} MACs / "
          f"{args.array ** 2} PEs): {ratio:.3f} x ideal (goal <= {GOAL_RATIO}) "
          f"{'met' if ratio <= GOAL_RATIO else 'MISSED'}")
    for name, cycles in report.class_cycles.items():
        print(f"    {name:12} {cycles:9d}  {cycles / report.cycles:6.1%}")
    print(f"  simulation {report.sim_seconds:.1f} s ({report.cycles / report.sim_seconds:.0f} "
          f"cycles/s including loading the image and reading it back; goal <= "
          f"{GOAL_SIM_SECONDS} s); build {report.build_seconds:.1f} s, Verilog "
          f"{report.verilog_seconds:.1f} s (0 = cached)")
    print(f"  golden interpreter {golden_seconds * 1000:.1f} ms (goal <= "
          f"{GOAL_GOLDEN_SECONDS * 1000:.0f} ms)")
    summary = {"array": args.array, "tokens": args.tokens, "seed": args.seed,
               "match": report.match, "reference_match": reference_ok, "cycles": report.cycles,
               "ideal_cycles": ideal, "ratio": ratio, "class_cycles": report.class_cycles,
               "macs": program.macs, "instructions": len(program.instructions),
               "sim_seconds": report.sim_seconds, "build_seconds": report.build_seconds,
               "verilog_seconds": report.verilog_seconds, "golden_seconds": golden_seconds}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accel_block.json").write_text(json.dumps(summary, indent=2))
    _plot(report.class_cycles, ideal, args.out / "accel_block.png")
    return 0 if report.match and reference_ok else 1


def _plot(class_cycles, ideal, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    figure, axis = plt.subplots(figsize=(7, 3.2))
    names = list(class_cycles)
    values = [class_cycles[name] / 1000 for name in names]
    axis.barh(names, values, color="#4c72b0")
    axis.axvline(ideal / 1000, color="#c44e52", linestyle="--", label="ideal (all cycles)")
    for y, value in enumerate(values):
        axis.text(value, y, f" {value:.1f}k", va="center")
    axis.set_xlabel("cycles (thousands)")
    axis.set_title("DeiT-T encoder block: cycles per instruction class")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
