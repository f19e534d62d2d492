"""Testbench logic for the GEMM engine, shared by both simulators.

A *session* loads placed jobs (:class:`~vitforge.sw.gemm.plan.GemmJob`) into
the engine's buffers, runs their commands and reads back each result region
and the engine's cycle counters. A sparse job (``plan_sparse_gemm``) also loads
its index words through ``i_load``, at the addresses of its B words. With
``overlap`` the next job's operands are loaded while the current job computes
(the jobs must use different buffer halves), which is how double buffering
hides load time.
"""

from dataclasses import dataclass
import json
import time

import numpy as np
from amaranth.lib import data

from vitforge.hw.gemm.config import GemmConfig
from vitforge.hw.gemm.descriptor import GemmDescriptor
from vitforge.hw.gemm.requantize import RequantParams
from vitforge.sw.gemm.plan import GemmJob, GemmProblem, command_cycles

from ..words import pack_fields, pack_int8, unpack_int8

__all__ = ["JobResult", "run_session", "save_session", "load_session",
           "save_results", "load_results"]

#: A command may take this many times its expected cycles before the watchdog fires.
WATCHDOG_FACTOR = 4
WATCHDOG_MARGIN = 1000


@dataclass
class JobResult:
    """What the hardware left for one job."""

    c_words: np.ndarray      # int8, (c_word_count, rows)
    busy_cycles: int
    mac_cycles: int
    run_seconds: float       # wall time of the autonomous run (command to idle)


def _check_overlap(current, following):
    spans = (("A", "a_addr", "a_words"), ("B", "b_addr", "b_words"))
    for buffer, address, words in spans:
        start_1 = getattr(current.descriptor, address)
        start_2 = getattr(following.descriptor, address)
        end_1 = start_1 + len(getattr(current, words))
        end_2 = start_2 + len(getattr(following, words))
        if start_1 < end_2 and start_2 < end_1:
            raise ValueError(f"overlapped jobs must use different {buffer}-buffer regions, "
                             f"not {start_1}..{end_1 - 1} and {start_2}..{end_2 - 1}")
    p_1, p_2 = current.descriptor.p_addr, following.descriptor.p_addr
    if p_1 < p_2 + following.problem.n and p_2 < p_1 + current.problem.n:
        raise ValueError("overlapped jobs must use different parameter-buffer regions")


async def _load(pins, job):
    d = job.descriptor
    layout = data.Layout.cast(RequantParams)
    params = [pack_fields(layout, {"bias": b, "multiplier": m, "shift": s})
              for b, m, s in zip(job.problem.bias, job.problem.multiplier, job.problem.shift)]
    streams = (("a_load", d.a_addr, [pack_int8(w) for w in job.a_words]),
               ("b_load", d.b_addr, [pack_int8(w) for w in job.b_words]),
               ("p_load", d.p_addr, params))
    if job.i_words is not None:
        streams += (("i_load", d.b_addr, [int(row) for row in job.i_words]),)
    for index in range(max(len(values) for _, _, values in streams)):
        for port, base, values in streams:
            active = index < len(values)
            pins.set(f"{port}.en", int(active))
            if active:
                pins.set(f"{port}.addr", base + index)
                pins.set(f"{port}.data", values[index])
        await pins.tick()
    for port, _, _ in streams:
        pins.set(f"{port}.en", 0)


async def _submit(pins, config, job):
    pins.set("cmd.payload", job.descriptor.encode(config))
    pins.set("cmd.valid", 1)
    await pins.wait_until("cmd.ready", 1, command_cycles(config, job.descriptor))
    await pins.tick()
    pins.set("cmd.valid", 0)


async def _read_results(pins, config, job):
    base, count = job.descriptor.c_addr, job.c_word_count
    words = np.empty((count, config.rows), dtype=np.int8)
    for index in range(count):
        pins.set("c_read.addr", base + index)
        await pins.tick()
        words[index] = unpack_int8(pins.get("c_read.data"), config.rows)
    return words


async def run_session(pins, config, jobs, *, overlap=False, watchdog_cycles=None):
    """Run ``jobs`` on the engine behind ``pins``; return a :class:`JobResult` each.

    Parameters
    ----------
    watchdog_cycles : int or None
        Cycle budget of each command; by default ``WATCHDOG_FACTOR`` times its
        expected cycles plus ``WATCHDOG_MARGIN``.

    Raises
    ------
    WatchdogError
        If a command does not finish within its budget.
    ValueError
        If ``overlap`` is set and consecutive jobs share buffer regions.
    """
    if overlap:
        for current, following in zip(jobs, jobs[1:]):
            _check_overlap(current, following)
    pins.set("c_read.en", 1)
    results = []
    if jobs:
        await _load(pins, jobs[0])
    for index, job in enumerate(jobs):
        busy_before, macs_before = pins.get("busy_cycles"), pins.get("mac_cycles")
        started = time.perf_counter()
        await _submit(pins, config, job)
        following = jobs[index + 1] if index + 1 < len(jobs) else None
        if overlap and following is not None:
            await _load(pins, following)
        budget = watchdog_cycles or (WATCHDOG_FACTOR * command_cycles(config, job.descriptor)
                                     + WATCHDOG_MARGIN)
        await pins.wait_until("busy", 0, budget)
        run_seconds = time.perf_counter() - started
        wrap = 1 << 32
        results.append(JobResult(
            c_words=await _read_results(pins, config, job),
            busy_cycles=(pins.get("busy_cycles") - busy_before) % wrap,
            mac_cycles=(pins.get("mac_cycles") - macs_before) % wrap,
            run_seconds=run_seconds,
        ))
        if not overlap and following is not None:
            await _load(pins, following)
    return results


def save_session(path, config, jobs, *, overlap=False, watchdog_cycles=None):
    """Write a session to ``path`` (``.npz``) for a testbench in another process."""
    arrays = {}
    meta = {"config": config.to_dict(), "overlap": overlap, "watchdog_cycles": watchdog_cycles,
            "jobs": []}
    for index, job in enumerate(jobs):
        meta["jobs"].append(vars(job.descriptor))
        for name in ("a", "b", "bias", "multiplier", "shift"):
            arrays[f"job{index}_{name}"] = getattr(job.problem, name)
        arrays[f"job{index}_a_words"] = job.a_words
        arrays[f"job{index}_b_words"] = job.b_words
        if job.i_words is not None:
            arrays[f"job{index}_i_words"] = job.i_words
    np.savez(path, meta=json.dumps(meta), **arrays)


def load_session(path):
    """Inverse of :func:`save_session`: ``(config, jobs, options)``.

    ``options`` are the keyword arguments of :func:`run_session`.
    """
    with np.load(path) as archive:
        meta = json.loads(str(archive["meta"]))
        jobs = []
        for index, descriptor in enumerate(meta["jobs"]):
            def array(name):
                return archive[f"job{index}_{name}"]
            problem = GemmProblem(a=array("a"), b=array("b"), bias=array("bias"),
                                  multiplier=array("multiplier"), shift=array("shift"))
            i_words = array("i_words") if f"job{index}_i_words" in archive else None
            jobs.append(GemmJob(problem=problem, descriptor=GemmDescriptor(**descriptor),
                                a_words=array("a_words"), b_words=array("b_words"),
                                i_words=i_words))
    options = {"overlap": meta["overlap"], "watchdog_cycles": meta["watchdog_cycles"]}
    return GemmConfig.from_dict(meta["config"]), jobs, options


def save_results(path, results):
    arrays = {}
    for index, result in enumerate(results):
        arrays[f"job{index}_c_words"] = result.c_words
        arrays[f"job{index}_cycles"] = np.array([result.busy_cycles, result.mac_cycles])
        arrays[f"job{index}_seconds"] = np.array(result.run_seconds)
    np.savez(path, count=len(results), **arrays)


def load_results(path):
    with np.load(path) as archive:
        return [JobResult(c_words=archive[f"job{index}_c_words"],
                          busy_cycles=int(archive[f"job{index}_cycles"][0]),
                          mac_cycles=int(archive[f"job{index}_cycles"][1]),
                          run_seconds=float(archive[f"job{index}_seconds"]))
                for index in range(int(archive["count"]))]
