"""Co-simulation of the GEMM engine: RTL in Verilator next to the golden model."""

from dataclasses import dataclass
import hashlib
import os
from pathlib import Path
import shutil
import tempfile
import time

import numpy as np

from vitforge.hw.gemm.config import GemmConfig
from vitforge.sw.gemm.plan import ideal_cycles
from vitforge.sw.golden.gemm.run import run_jobs

from .. import runner
from .session import load_results, save_session

__all__ = ["GemmVerilog", "engine_verilog", "simulate", "JobReport", "first_mismatch"]

TOPLEVEL = "gemm_engine"


@dataclass(frozen=True)
class GemmVerilog:
    text: str
    seconds: float      # generation time now; 0.0 when cached
    cached: bool


def _hw_source_digest():
    """Digest of the generator sources, so edited hardware is never served from cache."""
    import amaranth
    from vitforge import hw

    digest = hashlib.sha256(amaranth.__version__.encode())
    root = Path(hw.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def engine_verilog(config, log=None):
    """Verilog of ``GemmEngine(config)``, generated once per config and generator version."""
    from vitforge.hw.gemm.engine import GemmEngine
    from vitforge.hw.verilog import to_verilog

    key = hashlib.sha256((config.to_json() + _hw_source_digest()).encode()).hexdigest()[:20]
    path = runner.cache_root() / "verilog" / f"{TOPLEVEL}-{key}.v"
    if path.exists():
        return GemmVerilog(text=path.read_text(), seconds=0.0, cached=True)
    if log:
        log(f"generating Verilog for a {config.rows}x{config.cols} engine")
    started = time.monotonic()
    text = to_verilog(GemmEngine(config), TOPLEVEL)
    seconds = time.monotonic() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as out:
        out.write(text)
    os.replace(out.name, path)
    return GemmVerilog(text=text, seconds=seconds, cached=False)


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
    ideal_cycles: float
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

    Returns a :class:`SimulationReport`; raises
    :class:`~vitforge.sim.runner.SimulationError` if the simulation fails or
    its watchdog fires, :class:`~vitforge.sim.runner.ToolchainError` if
    Verilator is missing.
    """
    if not isinstance(config, GemmConfig):
        raise TypeError(f"config must be a GemmConfig, not {config!r}")
    verilog = engine_verilog(config, log=log)
    built = runner.build(verilog.text, TOPLEVEL, log=log)
    # Kept on failure, so the simulation log named in the error stays readable.
    scratch = Path(tempfile.mkdtemp(prefix="vitforge-gemm-"))
    session_path = scratch / "session.npz"
    results_path = scratch / "results.npz"
    save_session(session_path, config, jobs, overlap=overlap, watchdog_cycles=watchdog_cycles)
    if log:
        log(f"simulating {len(jobs)} GEMM command(s)")
    started = time.monotonic()
    runner.run_test(built, "vitforge.sim.tb.gemm_tb",
                    env={"VITFORGE_SESSION": str(session_path),
                         "VITFORGE_RESULTS": str(results_path)},
                    keep_dir=scratch / "run")
    sim_seconds = time.monotonic() - started
    results = load_results(results_path)
    shutil.rmtree(scratch, ignore_errors=True)
    golden = run_jobs(config, jobs)
    reports = []
    for job, result, golden_words in zip(jobs, results, golden):
        p = job.problem
        reports.append(JobReport(
            m=p.m, k=p.k, n=p.n,
            rtl=job.result(result.c_words), golden=job.result(golden_words),
            match=bool(np.array_equal(result.c_words, golden_words)),
            cycles=result.busy_cycles, mac_cycles=result.mac_cycles,
            ideal_cycles=ideal_cycles(config, p.m, p.k, p.n),
            run_seconds=result.run_seconds))
    return SimulationReport(jobs=reports, verilog_seconds=verilog.seconds,
                            build_seconds=built.seconds, build_cached=built.cached,
                            sim_seconds=sim_seconds)
