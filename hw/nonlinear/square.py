"""The square of an int8 value in fabric: a 256-entry table instead of a DSP48E2."""

from amaranth import Array, Const

from ..numerics import OPERAND_MIN

__all__ = ["fabric_square"]

_SQUARE_BITS = (OPERAND_MIN * OPERAND_MIN).bit_length()


def fabric_square(value):
    """``value * value`` of a signed 8-bit value, as a combinational table.

    Yosys maps a ``*`` of this width to a DSP48E2; the table is about 30 LUTs
    (``synth_xilinx -family xcup``). Exact for every value; no latency.

    Parameters
    ----------
    value : Value
        ``signed(8)``.

    Returns
    -------
    Value
        ``unsigned(15)``, ``value ** 2``.
    """
    # Indexed by the two's-complement code: codes 128..255 are -128..-1.
    table = Array(Const(code * code, _SQUARE_BITS)
                  for code in [*range(-OPERAND_MIN), *range(OPERAND_MIN, 0)])
    return table[value.as_unsigned()]
