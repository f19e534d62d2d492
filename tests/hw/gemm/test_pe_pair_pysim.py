"""The PE array with one and with two MACs per DSP: raw sums, exact, on extreme operands."""

import numpy as np
import pytest

from vitforge.errors import ConfigError
from vitforge.hw.gemm.array import ARRAY_LATENCY, PEArray
from vitforge.hw.gemm.config import GemmConfig
from vitforge.hw.gemm.pe_pair import DSP_RUN_PRODUCTS, PACK_SHIFT, PACKED_WEIGHT_BITS
from vitforge.hw.numerics import MAX_PRODUCT, OPERAND_MAX, OPERAND_MIN

from array_harness import assert_sums_equal, operands, run_array


def run_tiles(rows, cols, macs_per_dsp, tiles, *, acc_width=32, gaps=None):
    dut = PEArray(rows=rows, cols=cols, acc_width=acc_width, macs_per_dsp=macs_per_dsp)
    return run_array(dut, tiles, rows=rows, cols=cols, latency=ARRAY_LATENCY, gaps=gaps)


@pytest.mark.parametrize("macs_per_dsp", [1, 2])
@pytest.mark.parametrize("a_pattern, b_pattern", [("min", "min"), ("min", "min-max"),
                                                  ("random", "random")])
def test_extreme_products_across_dsp_runs(macs_per_dsp, a_pattern, b_pattern):
    # Depths around the DSP's run length, 1 and K not a multiple of it, back to back.
    seed = 3
    rng = np.random.default_rng(seed)
    depths = [1, DSP_RUN_PRODUCTS - 1, DSP_RUN_PRODUCTS, DSP_RUN_PRODUCTS + 1,
              2 * DSP_RUN_PRODUCTS, 3 * DSP_RUN_PRODUCTS + 2]
    tiles = [(operands(rng, a_pattern, k, 2), operands(rng, b_pattern, k, 4)) for k in depths]
    assert_sums_equal(run_tiles(2, 4, macs_per_dsp, tiles), tiles, seed,
                      f"macs_per_dsp={macs_per_dsp}")


@pytest.mark.parametrize("macs_per_dsp", [1, 2])
def test_stalls_inside_a_sum(macs_per_dsp):
    # Idle cycles before steps, including right before a run's dump and a tile's last.
    seed = 8
    rng = np.random.default_rng(seed)
    depths = [DSP_RUN_PRODUCTS + 3, 2, DSP_RUN_PRODUCTS]
    tiles = [(operands(rng, "random", k, 3), operands(rng, "random", k, 2)) for k in depths]
    gaps = [rng.integers(0, 3, k) for k in depths]
    assert_sums_equal(run_tiles(3, 2, macs_per_dsp, tiles, gaps=gaps), tiles, seed,
                      f"macs_per_dsp={macs_per_dsp}")


def test_longest_reduction_reaches_the_accumulator_bound():
    # k_max = 2048 of -128 x -128 (and of -128 x 127): the sums the accumulator is sized for.
    config = GemmConfig(rows=1, cols=2, k_max=2048, a_depth=2048, b_depth=2048,
                        macs_per_dsp=2, acc_width=GemmConfig(k_max=2048).required_acc_width)
    k = config.k_max
    a = np.full((k, 1), OPERAND_MIN)
    b = np.array([[OPERAND_MIN, OPERAND_MAX]]).repeat(k, 0)
    (sums,) = run_tiles(1, 2, 2, [(a, b)], acc_width=config.acc_width)
    np.testing.assert_array_equal(sums, [[k * MAX_PRODUCT, k * OPERAND_MIN * OPERAND_MAX]])


def test_packed_weight_fields_do_not_overlap():
    # The low field holds DSP_RUN_PRODUCTS extreme products, not one more.
    assert DSP_RUN_PRODUCTS * MAX_PRODUCT < 1 << (PACK_SHIFT - 1)
    assert (DSP_RUN_PRODUCTS + 1) * MAX_PRODUCT > (1 << (PACK_SHIFT - 1)) - 1
    assert -OPERAND_MIN << PACK_SHIFT < 1 << (PACKED_WEIGHT_BITS - 1)


def test_config_rejects_bad_packing():
    with pytest.raises(ConfigError, match=r"^macs_per_dsp must be 1 or 2, not 3$"):
        GemmConfig(macs_per_dsp=3)
    with pytest.raises(ConfigError, match=r"^cols must be even when macs_per_dsp is 2 "
                                          r"\(two columns share a DSP\), not 3$"):
        GemmConfig(cols=3, macs_per_dsp=2)
    assert GemmConfig(rows=4, cols=6, macs_per_dsp=2).multipliers == 12
