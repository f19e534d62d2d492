"""Yosys per-module estimates of sample configs: the resource model's fit and held-out sets.

Each sample is the shell of an :class:`AcceleratorConfig` as ``vitforge generate`` builds
it, estimated as ``generate`` does (parts cached by content, so a rerun costs seconds).
Results go to ``bench/results/resource_samples.json`` one sample at a time, so an
interrupted run keeps what it finished and the next run goes on from there.
``--fit`` then fits :class:`~vitforge.sw.explore.resource_model.ResourceModel` on the fit
set and writes it to ``sw/explore/resource_model.json``; ``bench/cost_models.py`` reports
its error on the held-out set.

    python bench/resource_samples.py [--names A,B]      # measure (all, or those)
    python bench/resource_samples.py --fit              # then fit
"""

import argparse
import json
import os
from pathlib import Path
import time

RESULTS = Path(__file__).parent / "results" / "resource_samples.json"

_BASE = dict(prm_depth=1024, lnp_depth=256)
#: name -> AcceleratorConfig fields. Arrays, depths, ports, k_max and packing all vary.
FIT = {
    "a4-small": dict(array=4, act_depth=4096, wgt_depth=2048, prm_depth=512, lnp_depth=64,
                     k_max=128),
    "a6-packed": dict(_BASE, array=6, act_depth=2048, wgt_depth=2048, k_max=64,
                      act_read_ports=1, macs_per_dsp=2),
    "a8-one-port": dict(_BASE, array=8, act_depth=8192, wgt_depth=4096, k_max=256,
                        act_read_ports=1),
    "a10-packed": dict(_BASE, array=10, act_depth=4096, wgt_depth=4096, k_max=512,
                       macs_per_dsp=2),
    "a12-packed": dict(_BASE, array=12, act_depth=4096, wgt_depth=8192, k_max=512,
                       macs_per_dsp=2),
    "a16-one-port": dict(_BASE, array=16, act_depth=16384, wgt_depth=8192, prm_depth=2048,
                         lnp_depth=512, k_max=1024, act_read_ports=1),
    "a16-packed": dict(_BASE, array=16, act_depth=8192, wgt_depth=16384, prm_depth=4096,
                       lnp_depth=1024, k_max=2048, macs_per_dsp=2),
    # The zcu102 preset: without it the model, fitted up to 16x16, is 6.5% low on LUTs at
    # 40x40 (docs/performance.md); explorations reach 64x64.
    "zcu102": dict(array=40, act_depth=17408, wgt_depth=30720, prm_depth=4096, lnp_depth=1024,
                   k_max=2048, act_read_ports=1),
    # The DSP48E2 cascade array (k_per_cycle 2 and 4), up to the zcu102 preset that uses it.
    "a4-k2": dict(array=4, act_depth=4096, wgt_depth=2048, prm_depth=512, lnp_depth=64,
                  k_max=128, macs_per_dsp=2, k_per_cycle=2),
    "a8-k4": dict(_BASE, array=8, act_depth=8192, wgt_depth=4096, k_max=256,
                  act_read_ports=1, macs_per_dsp=2, k_per_cycle=4),
    "a6-k4": dict(_BASE, array=6, act_depth=4096, wgt_depth=2048, k_max=512,
                  macs_per_dsp=2, k_per_cycle=4),
    "zcu102-k2": dict(array=40, act_depth=20480, wgt_depth=30720, prm_depth=4096,
                      lnp_depth=1024, k_max=2048, act_read_ports=1, act_banks=2,
                      macs_per_dsp=2, k_per_cycle=2),
}
HELD_OUT = {
    "a8-packed": dict(_BASE, array=8, act_depth=16384, wgt_depth=4096, k_max=2048,
                      macs_per_dsp=2),
    "a12-one-port": dict(_BASE, array=12, act_depth=6144, wgt_depth=6144, k_max=256,
                         act_read_ports=1),
    "a14-one-port": dict(_BASE, array=14, act_depth=12288, wgt_depth=6144, k_max=512,
                         act_read_ports=1),
    "a18-two-ports": dict(_BASE, array=18, act_depth=4096, wgt_depth=8192, prm_depth=2048,
                          k_max=1024),
    "a6-two-ports": dict(_BASE, array=6, act_depth=8192, wgt_depth=2048, k_max=128),
    "a10-k2": dict(_BASE, array=10, act_depth=4096, wgt_depth=4096, k_max=1024,
                   act_read_ports=1, macs_per_dsp=2, k_per_cycle=2),
}


def shell_config(fields):
    from vitforge.boards.presets import ShellConfig
    from vitforge.hw.accel.config import AcceleratorConfig

    return ShellConfig(accelerator=AcceleratorConfig(**fields))


def load_samples():
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def measure(names):
    """Estimate every sample of ``names`` not yet in the results file."""
    from vitforge.sw.explore.resource_model import yosys_estimate

    for name in names:
        known = load_samples().get(name, {})
        if "estimate" in known:
            continue
        fields = {**FIT, **HELD_OUT}[name]
        started = time.monotonic()
        estimate = yosys_estimate(shell_config(fields))
        # A sample measured before the PE part was recorded keeps its first (uncached) time.
        seconds = known.get("seconds", round(time.monotonic() - started, 1))
        print(f"{name}: {estimate['total']} ({seconds} s)", flush=True)
        samples = load_samples()            # another run may have added samples meanwhile
        samples[name] = {"config": fields, "resources": estimate["total"],
                         "estimate": estimate, "seconds": seconds}
        staging = RESULTS.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(json.dumps(samples, indent=1, sort_keys=True) + "\n")
        staging.replace(RESULTS)
    return load_samples()


def fit_model(samples):
    from vitforge.sw.explore.resource_model import DEFAULT_MODEL, fit

    model = fit([(name, shell_config(samples[name]["config"]).accelerator,
                  samples[name]["estimate"]) for name in FIT])
    model.save(DEFAULT_MODEL)
    print(f"fitted on {len(FIT)} samples -> {DEFAULT_MODEL}")
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true",
                        help="only fit and save the model on the fit samples measured")
    parser.add_argument("--names", help="comma-separated samples to measure (default all; "
                                        "runs with different names may run at once)")
    args = parser.parse_args()
    if args.fit:
        fit_model(load_samples())
    else:
        measure(args.names.split(",") if args.names else [*FIT, *HELD_OUT])


if __name__ == "__main__":
    main()
