"""Programs on the simulated accelerator system, one after another in one simulation."""

import json

import numpy as np

from .. import runner
from ..jobs import run_job
from .cosim import TOPLEVEL, memory_words_for, system_verilog

__all__ = ["run_batch", "run_programs", "load_job", "save_results"]

TEST_MODULE = "vitforge.sim.tb.accel_tb"


def run_programs(config, images, *, max_cycles, program_addr=0, instructions=0,
                 reset_after_hang=True, waves_to=None, log=None):
    """Run the program at ``program_addr`` of each of ``images`` on the RTL of ``config``,
    in one simulation: one build, one simulator start.

    Scratchpads keep what the previous program left, so each program must write what it
    reads (the fuzzer's prologue loads every scratchpad).

    Parameters
    ----------
    max_cycles : int
        The watchdog of each program.
    instructions : int
        How many instructions' retirement cycles to read back after each program.
    reset_after_hang : bool
        A program that does not finish within ``max_cycles`` is recorded as hung and the
        design reset before the next; with ``False`` the simulation fails instead, with the
        watchdog's message (a :exc:`~vitforge.errors.SimulationError`, its log kept).
    waves_to : path or None
        Where to write the VCD trace (a waves build).

    Returns
    -------
    results : list of dict
        Per image: ``dram`` (the image's words afterwards), ``done``, ``error``,
        ``error_pc``, ``cycles``, ``class_cycles``, ``side_cycles``, ``retired_at`` and
        ``hung``.
    sim_seconds : float
    build : runner.Build
    verilog : GeneratedVerilog
    """
    images = [bytes(image) for image in images]
    memory_words = max(memory_words_for(image) for image in images)
    verilog = system_verilog(config, memory_words, log=log)
    built = runner.build(verilog.text, TOPLEVEL, waves=waves_to is not None, log=log)
    if log:
        what = "the program" if len(images) == 1 else f"{len(images)} programs"
        log(f"simulating {what}" + (f", waves to {waves_to}" if waves_to else ""))

    def write_job(path):
        meta = {"program_addr": program_addr, "max_cycles": max_cycles,
                "memory_words": memory_words, "instructions": instructions,
                "reset_after_hang": reset_after_hang, "count": len(images)}
        np.savez(path, meta=json.dumps(meta),
                 **{f"image_{index}": np.frombuffer(image, np.uint8)
                    for index, image in enumerate(images)})

    results, seconds = run_job(built, TEST_MODULE, write_job, _load_results,
                               waves_to=waves_to)
    return results, seconds, built, verilog


def run_batch(config, images, *, max_cycles, program_addr=0, log=None):
    """:func:`run_programs`' results alone, hung programs recorded (the fuzzer's use)."""
    return run_programs(config, images, max_cycles=max_cycles, program_addr=program_addr,
                        log=log)[0]


def load_job(path):
    with np.load(path) as archive:
        job = json.loads(str(archive["meta"]))
        job["images"] = [archive[f"image_{index}"].tobytes() for index in range(job["count"])]
    return job


def save_results(path, results):
    drams = {f"dram_{index}": np.frombuffer(result.pop("dram"), np.uint8)
             for index, result in enumerate(results)}
    np.savez(path, meta=json.dumps(results), **drams)


def _load_results(path):
    with np.load(path) as archive:
        results = json.loads(str(archive["meta"]))
        for index, result in enumerate(results):
            result["dram"] = archive[f"dram_{index}"].tobytes()
    return results
