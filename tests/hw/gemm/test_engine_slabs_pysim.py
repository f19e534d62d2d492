"""The engine with k_per_cycle > 1 (cascade array, banked A and B) in Amaranth's simulator.

Exact against the golden model, with the words of each group past ``k``
filled with garbage (the array must ignore them), sparse commands one step a
cycle, and busy cycles equal to ``command_cycles``.
"""

from dataclasses import replace

import numpy as np
import pytest

from vitforge.errors import ConfigError
from vitforge.hw.gemm.config import GemmConfig
from vitforge.hw.gemm.descriptor import GemmDescriptor
from vitforge.hw.gemm.engine import GemmEngine
from vitforge.sim.gemm.session import run_session
from vitforge.sim.pins import run_in_amaranth
from vitforge.sw.gemm.plan import command_cycles, plan_gemm, plan_sparse_gemm
from vitforge.sw.gemm.problems import random_problem
from vitforge.sw.gemm.sparse_problems import random_pattern, random_sparse_problem
from vitforge.sw.golden.gemm.run import run_jobs

SMALL = dict(k_max=40, a_depth=512, b_depth=512, c_depth=256, param_depth=64, macs_per_dsp=2)


def with_garbage_padding(rng, job):
    """``job`` with random words where its dense A and B groups run past ``k``."""
    d = job.descriptor
    a_words, b_words = job.a_words.copy(), job.b_words.copy()
    for words, stride in ((a_words, d.a_stride), (b_words, d.b_stride)):
        for tile_start in range(0, len(words), stride):
            pad = words[tile_start + d.k:tile_start + stride]
            pad[:] = rng.integers(-128, 128, pad.shape)
    return replace(job, a_words=a_words, b_words=b_words)


def simulate_and_check(config, jobs, seed, **options):
    results = run_in_amaranth(GemmEngine(config),
                              lambda pins: run_session(pins, config, jobs, **options))
    golden = run_jobs(config, jobs)
    for index, (job, result, words) in enumerate(zip(jobs, results, golden)):
        d = job.descriptor
        what = (f"seed {seed}, k_per_cycle={config.k_per_cycle}, job {index} "
                f"({job.problem.m}x{job.problem.k}x{job.problem.n}, sparse={d.sparse})")
        np.testing.assert_array_equal(result.c_words, words, err_msg=f"{what}: RTL vs golden")
        np.testing.assert_array_equal(job.result(words), job.problem.reference(),
                                      err_msg=f"{what}: golden vs plain reference")
        steps = d.k if d.sparse else -(-d.k // config.k_per_cycle)
        assert result.mac_cycles == d.m_tiles * d.n_tiles(config) * steps, what
        assert result.busy_cycles == command_cycles(config, d), what


@pytest.mark.parametrize("k_per_cycle", [2, 4])
@pytest.mark.parametrize("rows, cols", [(2, 4), (3, 2)])
def test_random_shapes_with_garbage_past_k(k_per_cycle, rows, cols):
    seed = 40 + k_per_cycle + rows
    config = GemmConfig(rows=rows, cols=cols, k_per_cycle=k_per_cycle, **SMALL)
    rng = np.random.default_rng(seed)
    # k of 1, below, at and past a group, not a multiple of it; k < cols * k_per_cycle.
    shapes = [(5, 7, 6), (1, 1, 1), (rows, k_per_cycle, cols), (3, 40, 5), (4, 9, 3),
              (2, 2 * k_per_cycle + 1, 9)]
    jobs = [with_garbage_padding(rng, plan_gemm(config, random_problem(rng, *shape),
                                                slot=i % 2))
            for i, shape in enumerate(shapes)]
    simulate_and_check(config, jobs, seed, overlap=True)


@pytest.mark.parametrize("pattern", ["min", "max", "alternating"])
def test_extreme_operands_through_the_cascade(pattern):
    config = GemmConfig(rows=2, cols=4, k_per_cycle=4, **SMALL)
    rng = np.random.default_rng(6)
    jobs = [plan_gemm(config, random_problem(rng, 3, 40, 4, pattern=pattern))]
    simulate_and_check(config, jobs, seed=6)


def test_sparse_commands_take_one_step_a_cycle_beside_dense_ones():
    seed = 51
    config = GemmConfig(rows=4, cols=4, k_per_cycle=4, **SMALL)
    rng = np.random.default_rng(seed)
    # Kept rows at odd positions: A and B words at every lane of their groups.
    pattern = random_pattern(rng, 32, 8, cols=config.cols, block_rows=8, kept_blocks=3,
                             kept_rows=5)
    problem, weight = random_sparse_problem(rng, 7, pattern)
    jobs = [plan_sparse_gemm(config, problem, weight),
            plan_gemm(config, random_problem(rng, 6, 13, 7), slot=1)]
    simulate_and_check(config, jobs, seed)


def test_misaligned_dense_commands_and_configs_are_rejected():
    config = GemmConfig(rows=2, cols=4, k_per_cycle=4, **SMALL)
    fields = dict(a_addr=0, a_stride=8, b_addr=0, b_stride=8, c_addr=0, c_stride=4, p_addr=0,
                  k=5, m_tiles=1, n=4)
    GemmDescriptor(**fields).check(config)
    with pytest.raises(ValueError, match=r"^descriptor field a_stride must be a multiple of "
                                         r"k_per_cycle=4 in a dense command, not 5$"):
        GemmDescriptor(**{**fields, "a_stride": 5}).check(config)
    GemmDescriptor(**{**fields, "a_stride": 5, "b_addr": 3, "sparse": 1}).check(config)
    with pytest.raises(ConfigError, match=r"^k_per_cycle must be one of \(1, 2, 4\), not 3$"):
        GemmConfig(k_per_cycle=3, macs_per_dsp=2)
    with pytest.raises(ConfigError, match=r"^macs_per_dsp must be 2 when k_per_cycle is 4 "
                                          r"\(the DSP cascades pack two columns\), not 1$"):
        GemmConfig(k_per_cycle=4)
    with pytest.raises(ConfigError, match=r"^a_depth must be a multiple of k_per_cycle=4 "
                                          r"\(one bank per step\), not 510$"):
        GemmConfig(k_per_cycle=4, **{**SMALL, "a_depth": 510})
    assert GemmConfig(rows=2, cols=4, k_per_cycle=4, **SMALL).multipliers == 16
