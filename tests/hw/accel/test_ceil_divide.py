"""``ceil_divide``: exact over the whole range, for every array size the configs allow."""

import numpy as np
import pytest

from vitforge.hw.accel.ceil_divide import ceil_divide
from vitforge.hw.accel.config import SIZE_BITS


def test_every_value_of_the_range_divides_exactly_by_every_divisor_up_to_128():
    values = np.arange(1 << SIZE_BITS, dtype=np.int64)
    for divisor in range(1, 129):
        got = ceil_divide(values, divisor, SIZE_BITS)
        np.testing.assert_array_equal(got, -(-values // divisor), err_msg=f"divisor {divisor}")


def test_a_divisor_below_one_is_refused():
    with pytest.raises(ValueError, match=r"^divisor must be an int of at least 1, not 0$"):
        ceil_divide(5, 0, SIZE_BITS)
