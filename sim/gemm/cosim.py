"""Co-simulation of the GEMM engine: RTL in Verilator next to the golden model."""

from dataclasses import dataclass

import numpy as np

from vitforge.hw.gemm.config import GemmConfig
from vitforge.sw.gemm.plan import ideal_cycles
from vitforge.sw.golden.gemm.run import run_jobs

from .. import runner
from ..jobs import run_job
from ..verilog_cache import cached_verilog
from .session import load_results, save_session

__all__ = ["engine_verilog", "simulate", "JobReport", "first_mismatch"]

TOPLEVEL = "gemm_engine"


def engine_verilog(config, log=None):
    """Verilog of ``GemmEngine(config)``, generated once per config and generator version."""
    from vitforge.hw.gemm.engine import GemmEngine

    return cached_verilog(TOPLEVEL, config.to_json(), lambda: GemmEngine(config), log=log,
                          what=f"a {config.rows}x{config.cols} GEMM engine")


@dataclass
class JobReport:
    """One GEMM of a co-simulation."""

    m: int
    k: int
    n: int
    rtl: np.ndarray            # M x N int8 result read from the RTL's C buffer
    golden: np.ndarray         # the same from the golden model
    match: bool                # every word of the C region equal (padding lanes included)
    cycles: int
    mac_cycles: int
    ideal_cycles: float        # MAC-bound cycles of the steps issued (depth L if sparse)
    run_seconds: float         # wall time of the autonomous run in Verilator

    @property
    def utilization(self):
        return self.ideal_cycles / self.cycles


@dataclass
class SimulationReport:
    jobs: list
    verilog_seconds: float
    build_seconds: float
    build_cached: bool
    sim_seconds: float

    @property
    def match(self):
        return all(job.match for job in self.jobs)

    @property
    def simulated_cycles(self):
        return sum(job.cycles for job in self.jobs)


def first_mismatch(rtl, golden):
    """``(row, col, rtl, golden)`` of the first differing element, or ``None``."""
    where = np.argwhere(rtl != golden)
    if not len(where):
        return None
    row, col = (int(x) for x in where[0])
    return row, col, int(rtl[row, col]), int(golden[row, col])


def simulate(config, jobs, *, overlap=False, watchdog_cycles=None, log=None):
    """Run ``jobs`` on the RTL (Verilator) and on the golden model.

    Jobs may be dense (``plan_gemm``) or sparse (``plan_sparse_gemm``); both
    sides load a sparse job's index words with its B words.

    Returns a :class:`SimulationReport`; raises
    :class:`~vitforge.errors.SimulationError` if the simulation fails or
    its watchdog fires, :class:`~vitforge.errors.ToolchainError` if
    Verilator is missing.
    """
    if not isinstance(config, GemmConfig):
        raise TypeError(f"config must be a GemmConfig, not {config!r}")
    verilog = engine_verilog(config, log=log)
    built = runner.build(verilog.text, TOPLEVEL, log=log)
    if log:
        log(f"simulating {len(jobs)} GEMM command(s)")
    results, sim_seconds = run_job(
        built, "vitforge.sim.tb.gemm_tb",
        lambda path: save_session(path, config, jobs, overlap=overlap,
                                  watchdog_cycles=watchdog_cycles),
        load_results)
    golden = run_jobs(config, jobs)
    reports = []
    for job, result, golden_words in zip(jobs, results, golden):
        p = job.problem
        reports.append(JobReport(
            m=p.m, k=p.k, n=p.n,
            rtl=job.result(result.c_words), golden=job.result(golden_words),
            match=bool(np.array_equal(result.c_words, golden_words)),
            cycles=result.busy_cycles, mac_cycles=result.mac_cycles,
            ideal_cycles=ideal_cycles(config, p.m, job.descriptor.k, p.n),
            run_seconds=result.run_seconds))
    return SimulationReport(jobs=reports, verilog_seconds=verilog.seconds,
                            build_seconds=built.seconds, build_cached=built.cached,
                            sim_seconds=sim_seconds)
