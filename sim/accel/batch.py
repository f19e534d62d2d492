"""Many programs on one simulated accelerator, one after another (differential fuzzing)."""

import json

import numpy as np

from .. import runner
from ..jobs import run_job
from .cosim import TOPLEVEL, memory_words_for, system_verilog

__all__ = ["run_batch", "load_job", "save_results"]

TEST_MODULE = "vitforge.sim.tb.batch_tb"


def run_batch(config, images, *, max_cycles, program_addr=0, log=None):
    """Run the program at ``program_addr`` of each of ``images`` on the RTL of ``config``,
    in one simulation: one build, one simulator start.

    Scratchpads keep what the previous program left, so each program must write what it
    reads (the fuzzer's prologue loads every scratchpad). A program that does not finish
    within ``max_cycles`` is recorded as hung and the design is reset before the next.

    Returns
    -------
    list of dict
        Per image: ``dram`` (the image's words afterwards), ``done``, ``error``,
        ``error_pc``, ``cycles`` and ``hung``.
    """
    images = [bytes(image) for image in images]
    memory_words = max(memory_words_for(image) for image in images)
    verilog = system_verilog(config, memory_words, log=log)
    built = runner.build(verilog.text, TOPLEVEL, log=log)

    def write_job(path):
        meta = {"program_addr": program_addr, "max_cycles": max_cycles,
                "memory_words": memory_words, "count": len(images)}
        np.savez(path, meta=json.dumps(meta),
                 **{f"image_{index}": np.frombuffer(image, np.uint8)
                    for index, image in enumerate(images)})

    results, _ = run_job(built, TEST_MODULE, write_job, _load_results)
    return results


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
