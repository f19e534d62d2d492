"""How many shared once-per-row units the row-parallel units (LAYERNORM, SOFTMAX) have."""

from vitforge.errors import ConfigError

from ..checks import check_lanes, check_positive_int

__all__ = ["LANES_PER_ROW_UNIT", "row_units"]

#: Lanes one shared row unit serves by default: the once-per-row square roots and divisions
#: of ``array`` lanes run in ``ceil(array / 2)`` units, two lanes in turn in each. Four would
#: save about 300 LUTs a unit more but add 60 cycles per LAYERNORM tile and 52 per SOFTMAX
#: tile at 32 lanes; the DSPs do not depend on it.
LANES_PER_ROW_UNIT = 2


def row_units(lanes, units=None):
    """The number of shared row units for ``lanes`` lanes: ``units`` (checked, at most
    ``lanes``), or ``ceil(lanes / LANES_PER_ROW_UNIT)`` when not given.

    Raises
    ------
    vitforge.errors.ConfigError
        If ``units`` is not a positive integer of at most ``lanes``.
    """
    check_lanes("lanes", lanes)
    if units is None:
        return -(-lanes // LANES_PER_ROW_UNIT)
    check_positive_int("units", units)
    if units > lanes:
        raise ConfigError(f"units must be at most the {lanes} lanes, not {units}")
    return units
