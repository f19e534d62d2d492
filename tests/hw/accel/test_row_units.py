"""How many shared row units LAYERNORM and SOFTMAX get."""

import pytest

from vitforge.errors import ConfigError
from vitforge.hw.accel.row_units import row_units


def test_two_lanes_per_unit_by_default_and_a_given_count_kept():
    assert [row_units(lanes) for lanes in (1, 2, 5, 32)] == [1, 1, 3, 16]
    assert row_units(32, 5) == 5


@pytest.mark.parametrize("units", [0, 5])
def test_a_count_outside_one_to_lanes_is_refused(units):
    with pytest.raises(ConfigError, match=f"units must be .*, not {units}"):
        row_units(4, units)
