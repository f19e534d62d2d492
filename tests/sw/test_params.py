"""Parameter derivation of the nonlinear units: values and bad input."""

import math

import numpy as np
import pytest

from vitforge.sw.golden.nonlinear.exp import exp_q15
from vitforge.sw.golden.nonlinear.gelu import gelu
from vitforge.sw.params import reference
from vitforge.sw.params.gelu import INPUTS, gelu_table
from vitforge.sw.params.layernorm import layernorm_params
from vitforge.sw.params.softmax import IBERT_COEFFICIENTS, exp_params


def test_gelu_table_is_the_best_int8_rounding():
    table = gelu_table(0.03, 0.02)
    exact = reference.gelu(INPUTS * 0.03) / 0.02
    assert np.all(np.abs(table - np.clip(exact, -128, 127)) <= 0.5 + 1e-12)
    # GELU(0.3) / 0.02 = 9.27; GELU(-0.03) / 0.02 = -0.73; GELU(3.81) / 0.02 > 127.
    assert gelu(np.array([0, 10, -1, 127], np.int8), table).tolist() == [0, 9, -1, 127]


@pytest.mark.parametrize("function, args, message", [
    (gelu_table, (0.0, 0.1), r"^scale_in must be positive and finite, not 0.0$"),
    (gelu_table, (0.1, -1), r"^scale_out must be positive and finite, not -1$"),
    (gelu_table, (math.inf, 0.1), r"^scale_in must be positive and finite, not inf$"),
    (exp_params, (-0.5,), r"^scale must be positive and finite, not -0.5$"),
    (exp_params, (20.0,), r"^scale must lie in \[.*\), not 20.0$"),
])
def test_bad_scales_are_rejected(function, args, message):
    with pytest.raises(ValueError, match=message):
        function(*args)


def test_scale_must_be_a_number():
    with pytest.raises(TypeError, match=r"^scale must be a real number, not '0.1'$"):
        exp_params("0.1")


def test_exp_is_within_its_documented_error():
    n = np.arange(256)
    for scale in (0.003, 0.05, 0.4):
        error = np.abs(exp_q15(n, exp_params(scale)) / 2 ** 15 - np.exp(-n * scale)).max()
        assert error <= 1.9e-3, scale
    assert exp_q15(0, exp_params(0.1, IBERT_COEFFICIENTS)) > 2 ** 14


def test_exp_coefficients_outside_the_widths_are_rejected():
    with pytest.raises(ValueError, match=r"^coefficients must give 0.5 <= exp\(0\) < 2"):
        exp_params(0.1, (0.1, 1.9, 0.01))


def test_layernorm_params_and_their_errors():
    params = layernorm_params(0.05, np.array([1.0, -2.0]), np.array([0.5, 0.0]), 1e-5, 0.03)
    assert params.gamma.tolist() == [16384, -32767]
    assert params.eps == round(1e-5 * 4 / 0.05 ** 2)
    with pytest.raises(ValueError, match=r"^gamma and beta must be 1-D of one shape, "
                                         r"not \(2,\) and \(3,\)$"):
        layernorm_params(0.05, np.ones(2), np.ones(3), 1e-5, 0.03)
    with pytest.raises(ValueError, match=r"^channels must lie in \[1, 1024\], not 1025$"):
        layernorm_params(0.05, np.ones(1025), np.ones(1025), 1e-5, 0.03)
    with pytest.raises(ValueError, match=r"^eps must be non-negative and finite, not -1.0$"):
        layernorm_params(0.05, np.ones(2), np.ones(2), -1.0, 0.03)
    with pytest.raises(ValueError, match=r"^gamma must not be all zero$"):
        layernorm_params(0.05, np.zeros(2), np.ones(2), 1e-5, 0.03)


def test_vectorized_isqrt_is_exact_near_squares():
    import math
    from vitforge.sw.golden.nonlinear.layernorm import isqrt
    seed = 12
    rng = np.random.default_rng(seed)
    roots = rng.integers(0, 1 << 31, 2000)
    values = np.concatenate([roots * roots, roots * roots - 1, roots * roots + 1,
                             rng.integers(0, 1 << 62, 2000)])
    values = values[values >= 0]
    expected = np.array([math.isqrt(int(v)) for v in values])
    np.testing.assert_array_equal(isqrt(values), expected, err_msg=f"seed {seed}")
