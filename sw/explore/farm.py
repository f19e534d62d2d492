"""A regression farm: co-verification over many seeds and configs, in parallel.

Each job is what ``vitforge verify --model M --seed S --config C --images N`` runs
(:func:`~vitforge.sim.model_run.run_model`, RTL against the golden model over
the whole memory, the cycle model against the hardware counters), so a failing
job's reproducer is that command. Jobs run on a backend of :mod:`.backends`;
the Verilator build of each config is made once and shared through the build
cache (its lock keeps workers from building one twice).
"""

from dataclasses import dataclass
import json
import shlex
import time
from pathlib import Path

from .backends import TaskFailed, run_tasks

__all__ = ["FarmJob", "verify_job", "run_farm", "parse_seeds", "MAX_SEEDS"]

#: The most seeds one farm may run.
MAX_SEEDS = 100_000


@dataclass(frozen=True)
class FarmJob:
    model: str
    seed: int
    config: object          # ShellConfig
    images: int
    data: object = None     # DataFiles or None
    observer: str = "auto"


def parse_seeds(text):
    """``"A..B"`` (inclusive) or ``"S"`` as a list of seeds.

    Raises
    ------
    vitforge.errors.ConfigError
        For another form, B < A, a negative seed or more than :data:`MAX_SEEDS`.
    """
    from vitforge.errors import ConfigError

    first, separator, last = str(text).partition("..")
    try:
        low, high = int(first), int(last if separator else first)
    except ValueError:
        raise ConfigError(f"seeds must be A..B or one seed, not {text!r}") from None
    if low < 0 or high < low:
        raise ConfigError(f"seeds must be A..B with 0 <= A <= B, not {text!r}")
    if high - low + 1 > MAX_SEEDS:
        raise ConfigError(f"seeds must be at most {MAX_SEEDS} in all, not {high - low + 1}")
    return list(range(low, high + 1))


def verify_job(job, waves_to=None):
    """Run ``job``: ``{"seed", "config_hash", "status", "cycles", "mismatch", "seconds"}``;
    status ``pass``, ``mismatch`` (RTL != golden, an error status, or the cycle model
    wrong) or ``no-fit`` (the model does not fit the config)."""
    from vitforge.boards.presets import config_hash
    from vitforge.errors import ConfigError
    from vitforge.sim.model_run import run_model

    started = time.monotonic()
    result = {"seed": job.seed, "config_hash": config_hash(job.config), "cycles": None,
              "mismatch": ""}
    try:
        run = run_model(job.model, images=job.images, array=job.config.accelerator,
                        seed=job.seed, compare_float=False, data=job.data,
                        observer=job.observer, waves_to=waves_to)
    except ConfigError as error:
        return {**result, "status": "no-fit", "mismatch": str(error),
                "seconds": round(time.monotonic() - started, 2)}
    wrong = run.mismatch or (f"error status {run.error}" if run.error else "") or (
        f"cycle model: {run.cycle_model_mismatch}" if run.cycle_model_mismatch else "")
    return {**result, "status": "pass" if run.bit_exact and not wrong else "mismatch",
            "cycles": sum(run.cycles) // len(run.cycles), "mismatch": wrong,
            "seconds": round(time.monotonic() - started, 2)}


def run_farm(jobs, out, *, backend="local", workers=None, address=None, progress=None,
             log=print):
    """Run ``jobs`` (:class:`FarmJob`) and write ``out/results.json``; returns the summary.

    The first mismatch (lowest seed, then config order) is run again here with a VCD
    (``out/mismatch.vcd``), its config written to ``out/config-<hash>.json`` and its
    reproducer command put in the summary. ``out`` must be new, empty or a folder vitforge
    wrote (:func:`~vitforge.sw.files.check_replaceable`); a previous farm's files in it are
    removed first.
    """
    from vitforge.boards.presets import config_hash
    from vitforge.sw.files import FOLDER_MARKER, check_replaceable, write_atomic

    out = Path(out)
    check_replaceable(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / FOLDER_MARKER).write_text("a vitforge regression farm's results\n")
    for stale in [out / "results.json", out / "mismatch.vcd", *out.glob("config-*.json")]:
        stale.unlink(missing_ok=True)
    results = [None] * len(jobs)
    if progress:
        progress(0, len(jobs), "jobs co-verified")
    for count, (position, result) in enumerate(
            run_tasks(verify_job, [(job,) for job in jobs], backend=backend, workers=workers,
                      address=address), start=1):
        if isinstance(result, TaskFailed):
            job = jobs[position]
            result = {"seed": job.seed, "status": "mismatch", "cycles": None,
                      "mismatch": f"the job failed: {result.reason}", "seconds": None,
                      "config_hash": config_hash(job.config)}
        results[position] = result
        if progress:
            progress(count, len(jobs), "jobs co-verified")
    counts = {status: sum(result["status"] == status for result in results)
              for status in ("pass", "mismatch", "no-fit")}
    summary = {"jobs": len(jobs), **counts, "results": results, "first_mismatch": None}
    failing = [(job, result) for job, result in zip(jobs, results)
               if result["status"] == "mismatch"]
    if failing:
        job, result = min(failing, key=lambda pair: pair[0].seed)
        summary["first_mismatch"] = _reproduce(job, result, out, log)
    write_atomic(out / "results.json", json.dumps(summary, indent=1) + "\n")
    return summary


def _reproduce(job, result, out, log):
    """Write the failing job's config, run it again with a VCD, and say how to reproduce it."""
    from vitforge.sw.files import write_atomic

    config_path = out / f"config-{result['config_hash']}.json"
    write_atomic(config_path, json.dumps(job.config.to_dict(), indent=2, sort_keys=True) + "\n")
    vcd = out / "mismatch.vcd"
    log(f"seed {job.seed} failed ({result['mismatch']}); running it again for {vcd}")
    verify_job(job, waves_to=str(vcd))
    command = ["vitforge", "verify", "--model", job.model, "--seed", str(job.seed),
               "--config", str(config_path), "--images", str(job.images),
               "--observer", job.observer, "--waves", str(vcd)]
    if job.data is not None:
        for option in ("data", "calibration", "mean", "std"):
            value = getattr(job.data, "path" if option == "data" else option)
            if value is not None:
                command += [f"--{option}", value]
    return {**result, "reproducer": shlex.join(command),
            "vcd": str(vcd) if vcd.exists() else None}
