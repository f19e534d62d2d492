"""Products wider than one DSP48E2, as two registered products and their sum a stage later."""

from amaranth import Signal

__all__ = ["registered_halves", "joined"]


def registered_halves(m, multiplicand, multiplier, *, low_bits, width, name):
    """``multiplicand`` times the low ``low_bits`` and the high bits of ``multiplier``, each
    registered (``width`` bits, modulo ``2**width``) in ``m``'s sync domain: one DSP48E2
    each, where the whole product would be two DSPs and an adder in one stage. Latency: one
    cycle; :func:`joined` gives the product from them."""
    halves = (Signal(width, name=f"{name}_low"), Signal(width, name=f"{name}_high"))
    m.d.sync += [half.eq(multiplicand * bits) for half, bits in zip(
        halves, (multiplier[:low_bits], multiplier[low_bits:]))]
    return halves


def joined(halves, low_bits):
    """The product of :func:`registered_halves` (modulo its ``width`` once assigned)."""
    low, high = halves
    return low + (high << low_bits)
