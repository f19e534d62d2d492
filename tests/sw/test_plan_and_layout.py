import numpy as np
import pytest

from vitforge.hw.gemm.config import GemmConfig
from vitforge.sw.gemm.layout import pack_activations, pack_weights, unpack_activations
from vitforge.sw.gemm.plan import plan_gemm
from vitforge.sw.gemm.problems import random_problem
from vitforge.sw.quant import fixed_point_multiplier

CONFIG = GemmConfig(rows=4, cols=4, k_max=64, a_depth=64, b_depth=64, c_depth=64,
                    param_depth=32)


def test_activation_layout_round_trip_and_words():
    matrix = np.arange(5 * 3, dtype=np.int8).reshape(5, 3)
    words = pack_activations(matrix, lanes=4)
    assert words.shape == (2 * 3, 4)
    np.testing.assert_array_equal(words[1], [1, 4, 7, 10])        # column 1 of rows 0..3
    np.testing.assert_array_equal(words[3], [12, 0, 0, 0])        # row 4, then padding
    np.testing.assert_array_equal(unpack_activations(words, 5, 3, 4), matrix)


def test_weight_layout_words():
    matrix = np.arange(2 * 6, dtype=np.int8).reshape(2, 6)
    words = pack_weights(matrix, lanes=4)
    np.testing.assert_array_equal(words, [[0, 1, 2, 3], [6, 7, 8, 9],
                                          [4, 5, 0, 0], [10, 11, 0, 0]])


def test_layout_rejects_non_int8():
    with pytest.raises(TypeError, match=r"^activation matrix must have dtype int8, not int32$"):
        pack_activations(np.zeros((2, 2), np.int32), 4)
    with pytest.raises(ValueError, match=r"^weight matrix must be a 2-D matrix, not an array "
                                         r"of shape \(4,\)$"):
        pack_weights(np.zeros(4, np.int8), 4)


@pytest.mark.parametrize("shape, slot, message", [
    ((4, 65, 4), None, r"^GEMM reduction depth k must be at most k_max=64, not 65$"),
    ((20, 16, 4), None, r"^GEMM needs 80 A-buffer words, but a_depth=64 holds 64$"),
    ((4, 16, 20), None, r"^GEMM needs 80 B-buffer words, but b_depth=64 holds 64$"),
    ((4, 8, 40), None, r"^GEMM needs 80 B-buffer words, but b_depth=64 holds 64$"),
    ((4, 1, 33), None, r"^GEMM needs 33 parameter words, but param_depth=32 holds 32$"),
    ((12, 16, 4), 1, r"^GEMM needs 48 A-buffer words, but half of a_depth=64 holds 32$"),
])
def test_plans_that_do_not_fit_are_rejected(shape, slot, message):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=message):
        plan_gemm(CONFIG, random_problem(rng, *shape), slot=slot)


def test_slots_use_buffer_halves():
    rng = np.random.default_rng(0)
    job = plan_gemm(CONFIG, random_problem(rng, 4, 8, 4), slot=1)
    d = job.descriptor
    assert (d.a_addr, d.b_addr, d.c_addr, d.p_addr) == (32, 32, 32, 16)
    with pytest.raises(ValueError, match=r"^slot must be None, 0 or 1, not 2$"):
        plan_gemm(CONFIG, random_problem(rng, 4, 8, 4), slot=2)


def test_fixed_point_multiplier_is_within_half_an_lsb():
    scales = np.array([1.0, 0.5, 0.3, 1e-3, 3.7e-9, 1000.0, 65535.0])
    multiplier, shift = fixed_point_multiplier(scales)
    assert np.all((multiplier >= 1 << 15) & (multiplier < 1 << 16))
    approx = multiplier / 2.0 ** shift
    np.testing.assert_array_less(np.abs(approx / scales - 1), 2.0 ** -16)


def test_fixed_point_multiplier_rejects_bad_scales():
    with pytest.raises(ValueError, match=r"^scale must be positive and finite, not -1.0$"):
        fixed_point_multiplier([1.0, -1.0])
    with pytest.raises(ValueError, match=r"^scale must be below 65536, not 70000.0$"):
        fixed_point_multiplier([70000.0])
