"""Parameter checks shared by the generators; messages name the parameter, rule and value."""

__all__ = ["check_positive_int"]


def check_positive_int(name, value):
    """Raise :exc:`TypeError` unless ``value`` is an int, :exc:`ValueError` unless it is > 0."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
