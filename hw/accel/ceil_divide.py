"""``ceil(value / divisor)`` by a constant divisor, without a divider in hardware."""

__all__ = ["ceil_divide"]


def ceil_divide(value, divisor, bits):
    """``ceil(value / divisor)`` for ``0 <= value < 2**bits`` and a constant ``divisor``.

    A multiply by a rounded-up reciprocal and a shift (Granlund and
    Montgomery's method, exact for every value in that range): for an
    Amaranth value one multiplier instead of the divider that ``//``
    elaborates to, and on Python ints the same result, so a rule written
    with it means the same in hardware and in software.

    Parameters
    ----------
    value : int or Amaranth value
    divisor : int
        At least 1.
    bits : int
        ``value`` is below ``2**bits``.
    """
    if not isinstance(divisor, int) or divisor < 1:
        raise ValueError(f"divisor must be an int of at least 1, not {divisor!r}")
    if divisor & (divisor - 1) == 0:                  # a power of two: a shift
        return (value + divisor - 1) >> (divisor.bit_length() - 1)
    # floor(x / d) == (x * m) >> (n + l) for 0 <= x < 2**n, l = ceil(log2 d),
    # m = floor(2**(n + l) / d) + 1; x = value + d - 1 needs one more bit than value.
    width = bits + 1
    shift = width + (divisor - 1).bit_length()
    reciprocal = (1 << shift) // divisor + 1
    return ((value + divisor - 1) * reciprocal) >> shift
