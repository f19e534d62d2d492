"""The whole engine in Amaranth's simulator: tiny arrays, exact against the golden model.

The same session logic drives the Verilator runs (tests/sim); here it runs
without a build, so corner cases of the controller are cheap to cover.
"""

import numpy as np
import pytest

from vitforge.errors import WatchdogError
from vitforge.hw.gemm.config import GemmConfig
from vitforge.hw.gemm.engine import GemmEngine
from vitforge.sim.gemm.session import run_session
from vitforge.sim.pins import run_in_amaranth
from vitforge.sw.gemm.plan import GemmProblem, command_cycles, plan_gemm
from vitforge.sw.gemm.problems import random_problem
from vitforge.sw.golden.gemm.run import run_jobs

SMALL = dict(k_max=40, a_depth=512, b_depth=512, c_depth=256, param_depth=64)


def simulate(config, jobs, **options):
    return run_in_amaranth(GemmEngine(config),
                           lambda pins: run_session(pins, config, jobs, **options))


def assert_matches_golden(config, jobs, results, seed):
    for index, (job, result, golden) in enumerate(zip(jobs, results, run_jobs(config, jobs))):
        np.testing.assert_array_equal(
            result.c_words, golden,
            err_msg=f"seed {seed}, job {index} ({job.problem.m}x{job.problem.k}x"
                    f"{job.problem.n}): RTL C words vs golden")


@pytest.mark.parametrize("rows, cols", [(2, 3), (3, 2), (1, 4), (4, 1), (2, 2)])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_shapes_match_golden(rows, cols, seed):
    config = GemmConfig(rows=rows, cols=cols, **SMALL)
    rng = np.random.default_rng(seed)
    shapes = [(5, 7, 6), (1, 1, 1), (rows, 2, cols), (3, 40, 5), (7, 1, 9)]
    jobs = [plan_gemm(config, random_problem(rng, *shape), slot=i % 2)
            for i, shape in enumerate(shapes)]
    results = simulate(config, jobs, overlap=True)
    assert_matches_golden(config, jobs, results, seed)
    for job, result in zip(jobs, results):
        d = job.descriptor
        assert result.mac_cycles == d.m_tiles * d.n_tiles(config) * d.k
        assert result.busy_cycles == command_cycles(config, d)


@pytest.mark.parametrize("cols, macs_per_dsp", [(3, 1), (4, 2)])
@pytest.mark.parametrize("pattern", ["min", "max", "alternating", "zeros"])
def test_extreme_operands_match_golden(pattern, cols, macs_per_dsp):
    config = GemmConfig(rows=2, cols=cols, macs_per_dsp=macs_per_dsp, **SMALL)
    rng = np.random.default_rng(5)
    jobs = [plan_gemm(config, random_problem(rng, 3, 40, 4, pattern=pattern))]
    assert_matches_golden(config, jobs, simulate(config, jobs), seed=5)


def test_busy_cycles_are_the_tile_schedule():
    # k >= cols: tiles follow back to back; k < cols: each tile waits for the drain.
    config = GemmConfig(rows=2, cols=4, **SMALL)
    rng = np.random.default_rng(2)
    jobs = [plan_gemm(config, random_problem(rng, 4, 9, 8)),
            plan_gemm(config, random_problem(rng, 4, 2, 8))]
    results = simulate(config, jobs)
    assert_matches_golden(config, jobs, results, seed=2)
    # m_tiles * n_tiles * max(k, cols) - idle end + 10 + valid columns of the last tile
    assert [r.busy_cycles for r in results] == [2 * 2 * 9 + 10 + 4, 2 * 2 * 4 - 2 + 10 + 4]
    for result, job in zip(results, jobs):
        assert result.busy_cycles == command_cycles(config, job.descriptor)


def test_results_stay_in_place_when_jobs_share_a_slot():
    # Without overlap, a second job may reuse the buffers of the first.
    config = GemmConfig(rows=2, cols=2, **SMALL)
    rng = np.random.default_rng(11)
    jobs = [plan_gemm(config, random_problem(rng, 3, 5, 3)) for _ in range(3)]
    assert_matches_golden(config, jobs, simulate(config, jobs), seed=11)


def test_overlapped_jobs_must_not_share_buffer_regions():
    config = GemmConfig(rows=2, cols=2, **SMALL)
    rng = np.random.default_rng(0)
    jobs = [plan_gemm(config, random_problem(rng, 2, 2, 2)) for _ in range(2)]
    with pytest.raises(ValueError, match=r"^overlapped jobs must use different A-buffer "
                                         r"regions, not 0\.\.1 and 0\.\.1$"):
        simulate(config, jobs, overlap=True)


def test_watchdog_fires_when_the_engine_never_finishes():
    config = GemmConfig(rows=2, cols=2, **SMALL)
    rng = np.random.default_rng(0)
    jobs = [plan_gemm(config, random_problem(rng, 8, 40, 8))]
    with pytest.raises(WatchdogError, match=r"^busy did not become 0 within 10 cycles$"):
        simulate(config, jobs, watchdog_cycles=10)


def test_golden_result_equals_the_plain_reference():
    config = GemmConfig(rows=3, cols=5, **SMALL)
    rng = np.random.default_rng(4)
    problem = random_problem(rng, 7, 11, 12)
    job = plan_gemm(config, problem)
    (words,) = run_jobs(config, [job])
    np.testing.assert_array_equal(job.result(words), problem.reference())


def test_problem_rejects_mismatched_shapes():
    a = np.zeros((2, 3), np.int8)
    with pytest.raises(ValueError, match=r"^a columns must equal b rows, not 3 and 4$"):
        GemmProblem(a=a, b=np.zeros((4, 2), np.int8), bias=np.zeros(2, int),
                    multiplier=np.ones(2, int), shift=np.zeros(2, int))
    with pytest.raises(TypeError, match=r"^b must have dtype int8, not int16$"):
        GemmProblem(a=a, b=np.zeros((3, 2), np.int16), bias=np.zeros(2, int),
                    multiplier=np.ones(2, int), shift=np.zeros(2, int))
    with pytest.raises(ValueError, match=r"^bias must have shape \(2,\), not \(3,\)$"):
        GemmProblem(a=a, b=np.zeros((3, 2), np.int8), bias=np.zeros(3, int),
                    multiplier=np.ones(2, int), shift=np.zeros(2, int))


def test_columns_past_a_full_parameter_buffer_are_dropped():
    # n = param_depth = 7 on 3 columns: the last tile's columns 7 and 8 lie past
    # the end; their index must not wrap around onto columns 0 and 1.
    config = GemmConfig(rows=2, cols=3, k_max=8, a_depth=16, b_depth=16, c_depth=16,
                        param_depth=7)
    rng = np.random.default_rng(9)
    jobs = [plan_gemm(config, random_problem(rng, 2, 4, 7))]
    assert_matches_golden(config, jobs, simulate(config, jobs), seed=9)
