"""RTL in Verilator (through cocotb) against the golden model, bit for bit.

One session per array shape runs many GEMMs in a single simulation, so each
shape costs one Verilator build (cached by content across runs).
"""

import numpy as np
import pytest

from vitforge.errors import SimulationError
from vitforge.hw.gemm.config import GemmConfig
from vitforge.sim.gemm.cosim import simulate
from vitforge.sw.gemm.plan import command_cycles, plan_gemm, plan_sparse_gemm
from vitforge.sw.gemm.problems import PATTERNS, random_problem
from vitforge.sw.gemm.sparse_problems import random_pattern, random_sparse_problem

pytestmark = pytest.mark.verilator

SEED = 2024

#: Square, non-square and single-row arrays. The square one keeps the default
#: buffers and k_max=768, so it also serves the CLI tests from the same build.
ARRAYS = {
    "4x4": GemmConfig(rows=4, cols=4),
    "3x5": GemmConfig(rows=3, cols=5, k_max=96, a_depth=1024, b_depth=1024, c_depth=512,
                      param_depth=128),
    "1x8": GemmConfig(rows=1, cols=8, k_max=64, a_depth=512, b_depth=256, c_depth=256,
                      param_depth=64),
    # Four steps of K per cycle on DSP48E2 cascades, A and B in four banks.
    "2x6 k4": GemmConfig(rows=2, cols=6, macs_per_dsp=2, k_per_cycle=4, k_max=96,
                         a_depth=1024, b_depth=1024, c_depth=1024, param_depth=128),
}

#: (M, K, N, pattern) per array; shapes that are not multiples of the array
#: included, and the int8 extremes.
CASES = {
    "4x4": [(37, 48, 29, "random"), (4, 768, 8, "random"), (9, 768, 5, "min"),
            (16, 16, 16, "random"), (1, 1, 1, "random"), (5, 3, 7, "random"),
            *[(6, 33, 10, pattern) for pattern in PATTERNS if pattern != "random"]],
    "3x5": [(37, 48, 29, "random"), (7, 96, 11, "max"), (3, 5, 5, "random"),
            (10, 2, 13, "alternating"), (4, 9, 1, "zeros")],
    "1x8": [(1, 64, 8, "random"), (3, 17, 19, "random"), (2, 64, 9, "min"),
            (5, 7, 30, "alternating")],
    "2x6 k4": [(37, 48, 29, "random"), (5, 96, 13, "min"), (3, 1, 7, "random"),
               (4, 23, 6, "alternating"), (7, 30, 12, "max")],
}


def _jobs(name):
    config = ARRAYS[name]
    rng = np.random.default_rng(SEED)
    return [plan_gemm(config, random_problem(rng, m, k, n, pattern=pattern))
            for m, k, n, pattern in CASES[name]]


@pytest.fixture(scope="module", params=sorted(ARRAYS))
def session(request):
    name = request.param
    jobs = _jobs(name)
    return name, jobs, simulate(ARRAYS[name], jobs)


def test_rtl_equals_golden_bit_for_bit(session):
    name, jobs, report = session
    assert len(report.jobs) == len(CASES[name])
    for case, result in zip(CASES[name], report.jobs):
        np.testing.assert_array_equal(
            result.rtl, result.golden,
            err_msg=f"{name} array, case {case}, seed {SEED}: RTL vs golden")
        assert result.match, f"{name} array, case {case}: padding lanes differ"


def test_golden_equals_the_plain_reference(session):
    name, jobs, report = session
    for job, result in zip(jobs, report.jobs):
        np.testing.assert_array_equal(result.golden, job.problem.reference())


def test_cycle_counters_follow_the_tile_schedule(session):
    name, jobs, report = session
    config = ARRAYS[name]
    for job, result in zip(jobs, report.jobs):
        d = job.descriptor
        tiles = d.m_tiles * d.n_tiles(config)
        assert result.mac_cycles == tiles * -(-d.k // config.k_per_cycle)
        assert result.cycles == command_cycles(config, d), (name, job.problem.a.shape)


def test_double_buffered_jobs_load_while_computing():
    config = ARRAYS["3x5"]
    rng = np.random.default_rng(SEED + 1)
    jobs = [plan_gemm(config, random_problem(rng, 12, 60, 20), slot=index % 2)
            for index in range(4)]
    report = simulate(config, jobs, overlap=True)
    for index, result in enumerate(report.jobs):
        np.testing.assert_array_equal(result.rtl, result.golden,
                                      err_msg=f"seed {SEED + 1}, overlapped job {index}")
        assert result.match


@pytest.mark.parametrize("name", ["3x5", "2x6 k4"])
def test_sparse_job_matches_golden_in_the_cycles_of_its_depth(name):
    """About half the rows kept, K = 37 not a multiple of block_rows = 8 (fillers), then a
    dense job in the other slot, overlapped."""
    config = ARRAYS[name]
    seed = SEED + 2
    rng = np.random.default_rng(seed)
    pattern = random_pattern(rng, 37, 13, cols=config.cols, block_rows=8, kept_blocks=4,
                             kept_rows=4)
    problem, weight = random_sparse_problem(rng, 8, pattern)
    jobs = [plan_sparse_gemm(config, problem, weight, slot=0),
            plan_gemm(config, random_problem(rng, 7, 20, 9), slot=1)]
    report = simulate(config, jobs, overlap=True)
    for index, (job, result) in enumerate(zip(jobs, report.jobs)):
        np.testing.assert_array_equal(result.rtl, result.golden,
                                      err_msg=f"seed {seed}, job {index}: RTL vs golden")
        assert result.match
        assert result.cycles == command_cycles(config, job.descriptor), (seed, index)
    np.testing.assert_array_equal(report.jobs[0].golden, problem.reference(),
                                  err_msg=f"seed {seed}: golden vs plain reference")


def test_watchdog_stops_a_hung_simulation():
    config = ARRAYS["3x5"]
    rng = np.random.default_rng(SEED)
    jobs = [plan_gemm(config, random_problem(rng, 30, 96, 30))]
    with pytest.raises(SimulationError, match=r"busy did not become 0 within 50 cycles"):
        simulate(config, jobs, watchdog_cycles=50)
