"""Parameter checks shared by the generators; messages name the parameter, rule and value."""

from vitforge.errors import ConfigError, ConfigTypeError

__all__ = ["check_positive_int"]


def check_positive_int(name, value):
    """Check that parameter ``name`` is a positive ``int`` (``bool`` is not one).

    Raises
    ------
    vitforge.errors.ConfigTypeError
        If ``value`` is not an ``int`` (a ``TypeError``).
    vitforge.errors.ConfigError
        If it is not above 0 (a ``ValueError``).
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigTypeError(f"{name} must be an integer, not {value!r}")
    if value <= 0:
        raise ConfigError(f"{name} must be a positive integer, not {value!r}")
