"""Sparse (HP-pruned) commands on the whole engine in Amaranth's simulator, against golden.

A sparse command must match the golden model exactly and take exactly the
cycles of a dense command of depth ``L`` (``command_cycles``).
"""

import numpy as np
import pytest

from vitforge.hw.gemm.config import GemmConfig
from vitforge.hw.gemm.engine import GemmEngine
from vitforge.sim.gemm.session import run_session
from vitforge.sim.pins import run_in_amaranth
from vitforge.sw.gemm.plan import command_cycles, plan_gemm, plan_sparse_gemm
from vitforge.sw.gemm.problems import random_problem
from vitforge.sw.gemm.sparse import HPPattern
from vitforge.sw.gemm.sparse_problems import random_pattern, random_sparse_problem
from vitforge.sw.golden.gemm.run import run_jobs

CONFIG = GemmConfig(rows=4, cols=4, k_max=40, a_depth=512, b_depth=512, c_depth=256,
                    param_depth=64)

#: name: (K, N, block_rows, kept_blocks, kept_rows)
PATTERNS = {
    "dense-equivalent": (16, 8, 4, 4, 4),
    "25%": (32, 8, 8, 4, 6),
    "50%": (32, 10, 8, 2, 8),
    "75%": (32, 8, 8, 2, 4),
    "fillers": (21, 6, 8, 3, 6),          # K not a multiple of block_rows
    "single-row": (24, 5, 8, 1, 1),      # L = 1
}


def simulate_and_check(jobs, seed):
    results = run_in_amaranth(GemmEngine(CONFIG),
                              lambda pins: run_session(pins, CONFIG, jobs))
    golden = run_jobs(CONFIG, jobs)
    for index, (job, result, words) in enumerate(zip(jobs, results, golden)):
        what = f"seed {seed}, job {index} (sparse={job.descriptor.sparse})"
        np.testing.assert_array_equal(result.c_words, words, err_msg=f"{what}: RTL vs golden")
        assert result.busy_cycles == command_cycles(CONFIG, job.descriptor), what
    return golden


@pytest.mark.parametrize("name", list(PATTERNS))
def test_sparse_patterns_match_golden_in_dense_cycles(name):
    rows, columns, block_rows, kept_blocks, kept_rows = PATTERNS[name]
    seed = 30 + list(PATTERNS).index(name)
    rng = np.random.default_rng(seed)
    pattern = random_pattern(rng, rows, columns, cols=CONFIG.cols, block_rows=block_rows,
                             kept_blocks=kept_blocks, kept_rows=kept_rows)
    problem, weight = random_sparse_problem(rng, 7, pattern)
    job = plan_sparse_gemm(CONFIG, problem, weight)
    assert job.descriptor.k == pattern.length
    (words,) = simulate_and_check([job], seed)
    np.testing.assert_array_equal(job.result(words), problem.reference(),
                                  err_msg=f"seed {seed}: golden vs plain reference")


def test_indices_at_block_edges_and_a_wider_pattern():
    """Offsets 0 and block_rows - 1 of first and last blocks; groups of 8 re-tiled to 4."""
    seed = 40
    pattern = HPPattern(rows=16, columns=8, cols=8, block_rows=4, kept_rows=2,
                        blocks=np.array([[0, 3]]), offsets=np.array([[[0, 3], [0, 3]]]))
    problem, weight = random_sparse_problem(np.random.default_rng(seed), 5, pattern)
    job = plan_sparse_gemm(CONFIG, problem, weight)
    np.testing.assert_array_equal(job.i_words, [0, 3, 12, 15, 0, 3, 12, 15])
    simulate_and_check([job], seed)


def test_a_layer_pruned_entirely_is_the_bias_path():
    seed = 41
    pattern = HPPattern(rows=12, columns=6, cols=4, block_rows=4, kept_rows=1,
                        blocks=np.zeros((2, 0), int), offsets=np.zeros((2, 0, 1), int))
    problem, weight = random_sparse_problem(np.random.default_rng(seed), 5, pattern)
    job = plan_sparse_gemm(CONFIG, problem, weight)
    assert (job.descriptor.k, job.descriptor.b_stride, list(job.i_words)) == (1, 1, [0, 0])
    simulate_and_check([job], seed)


def test_dense_commands_around_a_sparse_one_are_unaffected():
    seed = 42
    rng = np.random.default_rng(seed)
    pattern = random_pattern(rng, 20, 9, cols=4, block_rows=4, kept_blocks=3, kept_rows=2)
    problem, weight = random_sparse_problem(rng, 6, pattern)
    jobs = [plan_gemm(CONFIG, random_problem(rng, 5, 7, 6), slot=0),
            plan_sparse_gemm(CONFIG, problem, weight, slot=1),
            plan_gemm(CONFIG, random_problem(rng, 6, 20, 9), slot=0)]
    simulate_and_check(jobs, seed)


@pytest.mark.parametrize("cols, message", [
    (3, r"^weight must be pruned for groups of a multiple of the array's cols=4 columns, "
        r"not of 3$"),
    (4, r"^weight must be the problem's b matrix \(8x6\); its dense form \(8x6\) differs$"),
])
def test_plan_rejects_a_weight_that_does_not_fit(cols, message):
    rng = np.random.default_rng(43)
    pattern = random_pattern(rng, 8, 6, cols=cols, block_rows=4, kept_blocks=1, kept_rows=2)
    problem, weight = random_sparse_problem(rng, 2, pattern)
    if cols == 4:
        problem = random_problem(rng, 2, 8, 6)
    with pytest.raises(ValueError, match=message):
        plan_sparse_gemm(CONFIG, problem, weight)
