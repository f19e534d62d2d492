import numpy as np
import pytest

from vitforge.sw.golden.gemm.requantize import check_requant_params, requantize


@pytest.mark.parametrize("acc, bias, multiplier, shift, expected", [
    (5, 0, 1, 1, 3),            # 2.5 rounds half up to 3
    (-5, 0, 1, 1, -2),          # -2.5 rounds half up to -2
    (-6, 0, 1, 2, -1),          # -1.5 -> -1
    (7, 0, 1, 2, 2),            # 1.75 -> 2
    (1000, 24, 1, 0, 127),      # saturates high
    (-1000, 0, 1, 0, -128),     # saturates low
    (100, -100, 65535, 0, 0),
    (3, 2, 3, 0, 15),           # (3 + 2) * 3
    (2**31 - 1, 2**31 - 1, 65535, 63, 0),
    (-(2**31), -(2**31), 65535, 49, 0),    # -65535 / 2**17 = -0.49999 rounds to 0
])
def test_hand_computed_values(acc, bias, multiplier, shift, expected):
    assert requantize(acc, bias, multiplier, shift) == expected


def test_matches_python_integers_on_random_values():
    seed = 3
    rng = np.random.default_rng(seed)
    acc = rng.integers(-(1 << 31), 1 << 31, size=2000)
    bias = rng.integers(-(1 << 31), 1 << 31, size=2000) >> rng.integers(0, 31, size=2000)
    multiplier = rng.integers(0, 1 << 16, size=2000)
    shift = rng.integers(0, 64, size=2000)
    expected = [max(-128, min(127, ((int(a) + int(b)) * int(m) + (1 << int(s)) // 2) >> int(s)))
                for a, b, m, s in zip(acc, bias, multiplier, shift)]
    np.testing.assert_array_equal(requantize(acc, bias, multiplier, shift),
                                  np.array(expected, dtype=np.int8), err_msg=f"seed {seed}")


@pytest.mark.parametrize("name, kwargs, message", [
    ("bias", dict(bias=[2**31]), r"^bias must lie in \[-2147483648, 2147483647\], "
                                 r"not 2147483648$"),
    ("multiplier", dict(multiplier=[-1]), r"^multiplier must lie in \[0, 65535\], not -1$"),
    ("shift", dict(shift=[64]), r"^shift must lie in \[0, 63\], not 64$"),
])
def test_parameters_outside_their_fields_are_rejected(name, kwargs, message):
    params = dict(bias=[0], multiplier=[1], shift=[0])
    params.update(kwargs)
    with pytest.raises(ValueError, match=message):
        check_requant_params(**params)


def test_float_parameters_are_rejected():
    with pytest.raises(TypeError, match=r"^shift must be an integer array, not float64$"):
        check_requant_params([0], [1], [1.5])
