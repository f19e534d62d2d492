"""The cost models of ``vitforge explore`` against the real thing, and explore's own speed.

1. **Cycles**: the cycle model (``sw/accel/cycles.py``) against cycle-accurate Verilator
   co-simulation on sampled points: models (the digits ViT, its HP-sparse version, token
   pruning, random weights, a whole DeiT-T), arrays (entries of one and two external words),
   one and two ACT read ports, packed PEs. Goal: within 2% on >= 10 points.
2. **Resources**: the resource model (``sw/explore/resource_model.json``, fitted by
   ``bench/resource_samples.py --fit``) against the Yosys per-module estimate of the held-out
   configs of ``bench/results/resource_samples.json``. Goal: within 5% on >= 5 configs.
3. **Explore**: a 504-point space each for DeiT-T and DeiT-S on the ZCU102 with ``--fidelity
   model`` (goal <= 5 minutes on 2 cores), and the local backend with 1 and 2 workers on
   the co-verification of 20 points (what ``--fidelity sim`` runs per Pareto point; the
   digits ViT on the ``small`` preset with one and two ACT read ports and ten keep ratios,
   two Verilator builds, made by a first ``--fidelity sim`` run), with a projection to a
   64-core cluster from the per-point costs.

Writes ``bench/results/cost_models.json`` and ``explore_deit.png``.

    python bench/cost_models.py [--skip cycles,resources,explore,scaling]
"""

import argparse
import json
from pathlib import Path
import shutil
import tempfile
import time

RESULTS = Path(__file__).parent / "results"
SIZED = ("act_depth", "wgt_depth", "prm_depth", "lnp_depth", "k_max")
#: (label, model, array, overrides of the model-sized config, prune)
CYCLE_POINTS = [
    ("digits ViT, 4x4", "tiny", 4, {}, "none"),
    ("digits ViT, 8x8, one ACT read port", "tiny", 8, {"act_read_ports": 1}, "none"),
    ("digits ViT, 12x12, packed PEs", "tiny", 12, {"macs_per_dsp": 2}, "none"),
    ("digits ViT, 20x20 (two words per entry)", "tiny", 20, {}, "none"),
    ("HP-sparse digits ViT, 4x4", "tiny-hp50", 4, {"act_read_ports": 1}, "none"),
    ("HP-sparse digits ViT, 8x8, token pruning", "tiny-hp50", 8, {}, "default"),
    ("digits ViT, 6x6, token pruning", "tiny", 6, {}, "default"),
    ("random tiny ViT seed 3, 10x10", "tiny-random", 10, {}, "none"),
    ("random tiny ViT seed 3, 16x16, pruning", "tiny-random", 16, {}, "default"),
    ("DeiT-T (random weights), 16x16", "deit-tiny", 16, {"act_read_ports": 1}, "none"),
]
#: 14 arrays x 9 clocks x 2 ACT read ports x 2 MACs per DSP, scratchpads sized to the model.
EXPLORE_SPACE = {"array": list(range(8, 61, 4)), "clock_mhz": list(range(100, 301, 25)),
                 "act_read_ports": [1, 2], "macs_per_dsp": [1, 2],
                 **{key: ["model"] for key in SIZED}}
#: 2 ACT read ports x 10 token-pruning settings on the ``small`` preset: 20 points, 2 builds.
SCALING_SPACE = {"act_read_ports": [1, 2],
                 "keep": ["none", *([ratio / 10] for ratio in range(9, 0, -1))]}


def cycles():
    """Predicted against simulated cycles on every point of :data:`CYCLE_POINTS`."""
    from dataclasses import replace

    from vitforge.sim.accel.cosim import coverify
    from vitforge.sim.model_run import load_model, load_pruning
    from vitforge.sw.accel.compiler import compile_model, config_for_model
    from vitforge.sw.accel.cycles import predict
    from vitforge.sw.model.quantize import quantize_vit, quantized_patches
    from vitforge.sw.model.quantized_selector import quantize_selectors

    rows = []
    for label, name, array, overrides, prune in CYCLE_POINTS:
        seed = 3 if name == "tiny-random" else 0
        vit, calibration, test, _ = load_model(name, seed)
        model = quantize_vit(vit, calibration)
        pruning = load_pruning(prune, None, name, vit, seed)
        selectors = None if pruning is None else quantize_selectors(vit, *pruning, calibration,
                                                                     model)
        config = replace(config_for_model(model, array, selectors=selectors), **overrides)
        program = compile_model(config, model, selectors=selectors).with_input(
            quantized_patches(model, test[:1])[0])
        started = time.monotonic()
        predicted = predict(program)
        predict_seconds = time.monotonic() - started
        report = coverify(program)
        error = (predicted.cycles - report.cycles) / report.cycles
        rows.append({"point": label, "model": name, "array": array, **overrides,
                     "prune": prune, "instructions": len(program.instructions),
                     "predicted": predicted.cycles, "simulated": report.cycles,
                     "error": error, "classes_exact": predicted.class_cycles ==
                     report.class_cycles, "rtl_equals_golden": report.match,
                     "predict_seconds": round(predict_seconds, 4),
                     "simulate_seconds": round(report.sim_seconds, 1),
                     "build_seconds": round(report.build_seconds, 1)})
        print(f"{label}: predicted {predicted.cycles}, simulated {report.cycles} "
              f"({error:+.4%}), classes exact {rows[-1]['classes_exact']}, "
              f"{report.sim_seconds:.1f} s simulated", flush=True)
    return {"points": rows, "max_abs_error": max(abs(row["error"]) for row in rows),
            "goal": 0.02}


def resources():
    """The shipped resource model on the held-out samples."""
    from resource_samples import HELD_OUT, load_samples, shell_config

    from vitforge.sw.explore.resource_model import RESOURCES, ResourceModel

    model = ResourceModel.load()
    samples = load_samples()

    def compare(name, config, measured):
        predicted = model.predict(config)
        errors = {key: (predicted[key] - measured[key]) / measured[key] for key in RESOURCES}
        print(f"{name}: " + ", ".join(f"{key} {predicted[key]} vs {measured[key]} "
                                      f"({errors[key]:+.1%})" for key in RESOURCES))
        return {"config": name, "yosys": measured, "model": predicted, "error": errors}

    rows = [compare(name, shell_config(samples[name]["config"]).accelerator,
                    samples[name]["resources"]) for name in HELD_OUT if name in samples]
    worst = max((abs(value) for row in rows for value in row["error"].values()), default=None)
    return {"fitted_on": list(model.fitted_on), "held_out": rows, "max_abs_error": worst,
            "goal": 0.05}


def _explore(model, space, out, preset="zcu102", **options):
    from vitforge.boards.presets import PRESETS
    from vitforge.sw.explore.run import explore
    from vitforge.sw.explore.workload import Study, accuracy

    study = Study(model=model, board="zcu102", base=PRESETS[preset])
    started = time.monotonic()
    accuracy(study)
    result = explore(study, space, out, log=lambda line: None, **options)
    return result, time.monotonic() - started


def explore_speed(scratch):
    """The 504-point spaces of DeiT-T and DeiT-S, each timed from scratch."""
    from vitforge.sw.explore.results import best_row

    rows = {}
    for model in ("deit-tiny", "deit-small"):
        out = scratch / model
        result, seconds = _explore(model, EXPLORE_SPACE, out, workers=2)
        best = best_row(result.rows)            # what best.json holds
        rows[model] = {"points": len(result.rows), "seconds": round(seconds, 1),
                       "ok": result.count("ok"), "no_fit": result.count("no-fit"),
                       "invalid": result.count("invalid"), "front": len(result.front),
                       "fits": sum(bool(row["fits"]) for row in result.rows),
                       "headroom": sum(bool(row["fits"] and row["headroom"])
                                       for row in result.rows),
                       "best": None if best is None else {
                           key: best[key] for key in ("array", "clock_mhz", "act_read_ports",
                                                      "macs_per_dsp", "fps", "lut_util",
                                                      "dsp_util", "bram36_util")}}
        shutil.copy(out / "pareto.png", RESULTS / f"explore_{model.replace('-', '_')}.png")
        print(f"{model}: {len(result.rows)} points in {seconds:.1f} s, front "
              f"{len(result.front)}, best {rows[model]['best']}", flush=True)
    return {"space": EXPLORE_SPACE, "models": rows, "goal_seconds": 300}


def scaling(scratch):
    """Co-verification of 20 points with 1 and 2 local workers, builds cached by a first
    ``--fidelity sim`` run of the same space."""
    from vitforge.boards.presets import PRESETS
    from vitforge.sw.explore.backends import run_tasks
    from vitforge.sw.explore.evaluate import simulate_point
    from vitforge.sw.explore.workload import Study

    warm, cold_seconds = _explore("tiny", SCALING_SPACE, scratch / "warm", preset="small",
                                  fidelity="sim", workers=2)
    rows = {"points": len(warm.rows), "front": len(warm.front),
            "first_run_seconds": round(cold_seconds, 1)}
    study = Study(model="tiny", board="zcu102", base=PRESETS["small"])
    for workers in (1, 2):
        started = time.monotonic()
        results = dict(run_tasks(simulate_point, [(study, row) for row in warm.rows],
                                 workers=workers))
        seconds = time.monotonic() - started
        exact = all(row["simulated_cycles"] == row["cycles"] and row["bit_exact"]
                    for row in results.values())
        rows[f"{workers}_workers_seconds"] = round(seconds, 1)
        rows[f"{workers}_workers_exact"] = exact
        print(f"{workers} worker(s): 20 points co-verified in {seconds:.1f} s; simulated == "
              f"predicted and RTL == golden on all: {exact}", flush=True)
    per_point = rows["1_workers_seconds"] / rows["points"]
    rows["speedup"] = round(rows["1_workers_seconds"] / rows["2_workers_seconds"], 2)
    rows["projection_64_cores"] = {
        "assumption": "points independent, each as long as measured with one worker (build "
                      "cached); 64 workers, no shared bottleneck",
        "seconds_per_point": round(per_point, 2),
        "points_per_hour": round(64 * 3600 / per_point)}
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", default="", help="comma-separated parts to skip")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    path = RESULTS / "cost_models.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vitforge-bench-") as scratch:
        scratch = Path(scratch)
        for name, part in (("cycles", cycles), ("resources", resources),
                           ("explore", lambda: explore_speed(scratch)),
                           ("scaling", lambda: scaling(scratch))):
            if name not in skip:
                result[name] = part()
                path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
