"""Parameter checks shared by the generators; messages name the parameter, rule and value."""

from vitforge.errors import ConfigError, ConfigTypeError

__all__ = ["check_positive_int", "check_lanes", "MAX_LANES"]

#: The widest PE array (rows, columns) or row of lanes a generator builds: 64 x 64 int8 MACs
#: is 4,096 PEs, above the XCZU9EG's 2,520 DSP48E2 even packed two to a DSP, and the compiler
#: plans for at most 64 lanes; wider designs take hours to build in Verilator.
MAX_LANES = 64


def check_positive_int(name, value, maximum=None, why=None):
    """Check that parameter ``name`` is a positive ``int`` (``bool`` is not one), and at most
    ``maximum`` when given (``why`` then says why, in the message).

    Raises
    ------
    vitforge.errors.ConfigTypeError
        If ``value`` is not an ``int`` (a ``TypeError``).
    vitforge.errors.ConfigError
        If it is not above 0, or above ``maximum`` (a ``ValueError``).
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigTypeError(f"{name} must be an integer, not {value!r}")
    if value <= 0:
        raise ConfigError(f"{name} must be a positive integer, not {value!r}")
    if maximum is not None and value > maximum:
        reason = f" ({why})" if why else ""
        raise ConfigError(f"{name} must be at most {maximum}{reason}, not {value}")


def check_lanes(name, value):
    """:func:`check_positive_int`, and at most :data:`MAX_LANES`."""
    check_positive_int(name, value, MAX_LANES, "the widest array vitforge builds")
