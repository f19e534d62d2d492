"""The accelerator shell in Verilator, driven by the runtime driver through AXI models."""

from dataclasses import dataclass
import json

import numpy as np

from .. import runner
from ..jobs import run_job
from ..verilog_cache import cached_verilog

__all__ = ["ShellRun", "run_on_shell", "shell_verilog", "load_job", "save_results"]

TOPLEVEL = "vitforge_accelerator"
TEST_MODULE = "vitforge.sim.tb.shell_tb"


@dataclass
class ShellRun:
    runs: list               # per program: image, cycles, class_cycles, retired_at, driver_error
    registers: dict          # what the testbench read from the register block
    guards_damaged: list     # (buffer address, side) of overwritten guard bands
    bursts: dict             # "read" / "write": the length of every burst
    sim_seconds: float


def shell_verilog(config, log=None):
    """Verilog of the :class:`AcceleratorShell` of a :class:`ShellConfig` (cached)."""
    array = config.accelerator.array
    return cached_verilog(TOPLEVEL, json.dumps(config.to_dict(), sort_keys=True),
                          config.shell, log=log,
                          what=f"the accelerator shell ({array}x{array} array)")


def run_on_shell(config, programs, *, back_pressure=False, seed=0, use_interrupt=True,
                 max_cycles=1_000_000, faults=None, log=None):
    """Run ``programs`` one after another on the shell.

    ``config`` is a :class:`ShellConfig`; a program is ``(image, program_addr)``
    or ``(image, program_addr, instructions)``, the last being how many
    retirement cycles to read back. Each goes through
    :class:`AcceleratorDriver` over :class:`AxiSimTransport` into a fresh
    buffer of an ``AxiRam``.

    ``faults``, one per program (``None``: none), disturbs that run:
    ``{"kind": "read" or "write", "response": "SLVERR" or "DECERR",
    "after_beats": n}`` answers beat ``n`` of that direction with the error
    (:class:`FaultInjector`); ``{"kind": "watchdog", "max_cycles": n}`` gives the
    driver's wait ``n`` cycles; ``{"kind": "reset", "after_cycles": n}``
    resets the whole shell (and the memory model's state machines) ``n``
    cycles into the run, abandoning it (its run records ``reset_while_busy``).
    """
    faults = list(faults or [None] * len(programs))
    if len(faults) != len(programs):
        raise ValueError(f"faults must have one entry per program ({len(programs)}), "
                         f"not {len(faults)}")
    verilog = shell_verilog(config, log)
    built = runner.build(verilog.text, TOPLEVEL, log=log)
    programs = [(*program, 0) if len(program) == 2 else tuple(program) for program in programs]
    memory_bytes = 0x1000 + sum(len(image) + 1024 for image, _, _ in programs)
    memory_bytes = 1 << (memory_bytes - 1).bit_length()

    def write_job(path):
        arrays = {f"image_{index}": np.frombuffer(bytes(image), np.uint8)
                  for index, (image, _, _) in enumerate(programs)}
        meta = {"program_addrs": [addr for _, addr, _ in programs],
                "instructions": [count for _, _, count in programs],
                "memory_bytes": memory_bytes,
                "max_cycles": max_cycles, "back_pressure": back_pressure, "seed": seed,
                "use_interrupt": use_interrupt, "faults": faults}
        np.savez(path, meta=json.dumps(meta), **arrays)

    results, seconds = run_job(built, TEST_MODULE, write_job, _load_results)
    return ShellRun(sim_seconds=seconds, **results)


def load_job(path):
    with np.load(path) as archive:
        job = json.loads(str(archive["meta"]))
        job["programs"] = [(archive[f"image_{index}"].tobytes(), addr, count)
                           for index, (addr, count) in enumerate(zip(job.pop("program_addrs"),
                                                                     job.pop("instructions")))]
    return job


def save_results(path, results):
    arrays = {}
    runs = []
    for index, run in enumerate(results["runs"]):
        run = dict(run)
        if "image" in run:
            arrays[f"image_{index}"] = np.frombuffer(run.pop("image"), np.uint8)
        runs.append(run)
    np.savez(path, meta=json.dumps({**results, "runs": runs}), **arrays)


def _load_results(path):
    with np.load(path) as archive:
        results = json.loads(str(archive["meta"]))
        for index, run in enumerate(results["runs"]):
            if f"image_{index}" in archive:
                run["image"] = archive[f"image_{index}"].tobytes()
    results["guards_damaged"] = [tuple(item) for item in results["guards_damaged"]]
    return results
