"""Differential fuzzing, the long budget: random legal programs (``vitforge.sim.fuzz``) on
the golden interpreter, and on the RTL of several small configurations in Verilator and of
CI's in Icarus Verilog.

Goals (issue 16): >= 10,000 programs against the golden interpreter and >= 300 on the RTL,
0 mismatches (the whole external memory bit for bit, and cycles equal to the cycle model's).
A failure stops with the shrunk program's ``vitforge replay`` command.

Writes ``bench/results/fuzz.json``.

    python bench/fuzz.py [--golden 10000] [--scale 1.0]
"""

import argparse
from dataclasses import replace
import json
import os
from pathlib import Path
import time

from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.sim import fuzz
from vitforge.sim.runner import cache_root

RESULTS = Path(__file__).parent / "results"
#: (label, config, programs, simulator)
RTL_RUNS = [
    ("4x4, two ACT read ports (CI's config)", fuzz.FUZZ_CONFIG, 1000, "verilator"),
    ("4x4, one ACT read port", replace(fuzz.FUZZ_CONFIG, act_read_ports=1), 300, "verilator"),
    ("4x4, two MACs per DSP", replace(fuzz.FUZZ_CONFIG, macs_per_dsp=2), 300, "verilator"),
    ("4x4, scratchpads as small as the window (their last words in reach)",
     AcceleratorConfig(array=4, k_max=32, **fuzz.WINDOW), 300, "verilator"),
    ("17x17, two external words per entry",
     replace(fuzz.FUZZ_CONFIG, array=17, k_max=64), 300, "verilator"),
    ("4x4, two ACT read ports, Icarus Verilog", fuzz.FUZZ_CONFIG, 100, "icarus"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--golden", type=int, default=10_000)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the RTL program counts (default 1)")
    args = parser.parse_args()
    replays = cache_root() / "replays"
    started = time.monotonic()
    seen = fuzz.fuzz_golden(args.golden, replay_folder=replays)
    golden_seconds = time.monotonic() - started
    print(f"golden: {args.golden} programs, 0 failures, {golden_seconds:.0f} s", flush=True)
    runs = []
    for label, config, count, simulator in RTL_RUNS:
        count = max(1, round(count * args.scale))
        os.environ["VITFORGE_SIMULATOR"] = simulator
        started = time.monotonic()
        ran = fuzz.fuzz_rtl(count, replay_folder=replays, config=config)
        seconds = time.monotonic() - started
        print(f"{label}: {ran} programs, 0 mismatches, {seconds:.0f} s (build included)",
              flush=True)
        runs.append({"label": label, "config": config.to_dict(), "simulator": simulator,
                     "programs": ran, "mismatches": 0, "seconds": round(seconds, 1)})
    summary = {"golden": {"config": fuzz.FUZZ_CONFIG.to_dict(), "programs": args.golden,
                          "failures": 0, "seconds": round(golden_seconds, 1),
                          "instructions_after_prologue": dict(sorted(seen.items()))},
               "rtl": runs, "rtl_programs": sum(run["programs"] for run in runs)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fuzz.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
