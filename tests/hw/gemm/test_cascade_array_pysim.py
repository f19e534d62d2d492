"""The cascade array: depth steps of K per cycle on packed DSP48E2 chains, exact sums."""

import numpy as np
import pytest

from vitforge.hw.dsp48e2 import CascadeMultiplyAdd
from vitforge.hw.gemm.cascade_array import CascadeArray, cascade_array_latency
from vitforge.hw.gemm.pe_pair import DSP_RUN_PRODUCTS
from vitforge.hw.numerics import MAX_PRODUCT, OPERAND_MAX, OPERAND_MIN

from array_harness import assert_sums_equal, operands, run_array


def run_tiles(rows, cols, depth, tiles, *, acc_width=32, gaps=None):
    dut = CascadeArray(rows=rows, cols=cols, depth=depth, acc_width=acc_width)
    return run_array(dut, tiles, rows=rows, cols=cols, depth=depth,
                     latency=cascade_array_latency(depth), gaps=gaps)


@pytest.mark.parametrize("depth", [1, 3, DSP_RUN_PRODUCTS])
@pytest.mark.parametrize("a_pattern, b_pattern", [("min", "min"), ("min", "min-max"),
                                                  ("random", "random")])
def test_extreme_products_through_the_cascade(depth, a_pattern, b_pattern):
    # K of 1, around the cascade's depth and not a multiple of it, tiles back to back.
    seed = 5
    rng = np.random.default_rng(seed)
    ks = [1, depth + 1, 2 * depth, 3 * depth + 2]
    tiles = [(operands(rng, a_pattern, k, 2), operands(rng, b_pattern, k, 4)) for k in ks]
    assert_sums_equal(run_tiles(2, 4, depth, tiles), tiles, seed, f"depth={depth}")


def test_stalls_between_slabs():
    # Idle cycles before slabs, including right before a tile's last.
    seed = 12
    rng = np.random.default_rng(seed)
    depth = 4
    ks = [3 * depth + 1, 2, 2 * depth]
    tiles = [(operands(rng, "random", k, 3), operands(rng, "random", k, 2)) for k in ks]
    gaps = [rng.integers(0, 3, -(-k // depth)) for k in ks]
    assert_sums_equal(run_tiles(3, 2, depth, tiles, gaps=gaps), tiles, seed,
                      f"depth={depth}, gaps={gaps}")


def test_longest_reduction_reaches_the_accumulator_bound():
    # k = 2048 of -128 x -128 and of -128 x 127 through full-length cascades.
    k = 2048
    acc_width = (k * MAX_PRODUCT).bit_length() + 1
    a = np.full((k, 1), OPERAND_MIN)
    b = np.array([[OPERAND_MIN, OPERAND_MAX]]).repeat(k, 0)
    (sums,) = run_tiles(1, 2, DSP_RUN_PRODUCTS, [(a, b)], acc_width=acc_width)
    np.testing.assert_array_equal(sums, [[k * MAX_PRODUCT, k * OPERAND_MIN * OPERAND_MAX]])


@pytest.mark.parametrize("depth, error, message", [
    (0, ValueError, r"^depth must be in \[1, 7\] \(the packed low sum holds that many "
                    r"products\), not 0$"),
    (8, ValueError, r"^depth must be in \[1, 7\] .*, not 8$"),
    (2.0, TypeError, r"^depth must be an int, not 2\.0$"),
])
def test_cascade_depth_is_checked(depth, error, message):
    with pytest.raises(error, match=message):
        CascadeArray(rows=1, cols=2, depth=depth, acc_width=20)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"^cols must be even \(two columns share a DSP\), "
                                         r"not 3$"):
        CascadeArray(rows=1, cols=3, depth=2, acc_width=20)
    with pytest.raises(ValueError, match=r"^round_constant must be in \[0, 2\*\*47\), "
                                         r"not -1$"):
        CascadeMultiplyAdd(first=True, round_constant=-1)
