"""Constants and widths of ``docs/numerics.md``, each defined once.

The hardware (``vitforge.hw``), its bit-exact golden model
(``vitforge.sw.golden``) and the code that derives run-time parameters
(``vitforge.sw.params``) import them from here; ``tests/hw/test_numerics.py``
checks that ``docs/numerics.md`` states the same values.
"""

__all__ = [
    "OPERAND_BITS", "OPERAND_MIN", "OPERAND_MAX", "MAX_PRODUCT", "MAX_ACC_BITS", "BIAS_BITS",
    "MULTIPLIER_BITS", "SHIFT_BITS", "REQUANT_SUM_BITS", "REQUANT_PRODUCT_BITS",
    "GELU_TABLE_DEPTH",
    "RATIO_BITS", "RATIO_FRACTION_BITS", "ALPHA_FRACTION_BITS", "PHI_BITS", "COEFFICIENT_BITS",
    "EXP_PRODUCT_BITS", "EXP_POLYNOMIAL_SHIFT", "EXP_BITS", "EXP_SHIFT_LIMIT",
    "EXP_AT_ZERO_MIN_BITS", "SOFTMAX_RECIPROCAL_BITS", "PROBABILITY_SHIFT_BITS", "softmax_one",
    "MAX_CHANNELS", "EPS_BITS", "GAMMA_BITS", "BETA_BITS", "SQRT_GUARD_BITS",
    "LAYERNORM_RECIPROCAL_BITS", "LAYERNORM_QUOTIENT_BITS", "NORMALIZED_FRACTION_BITS",
    "NORMALIZE_SHIFT", "CENTRED_BITS", "NORMALIZED_BITS",
    "SIGMOID_FRACTION_BITS", "SIGMOID_ONE", "SIGMOID_BITS", "MAX_SELECTOR_HEADS",
    "KEEP_SCORE_BITS", "PACKAGE_WEIGHT_SHIFT", "PACKAGE_WEIGHT_BITS",
]

# Operands and GEMM.

#: Width of every activation, weight and requantized result (signed int8).
OPERAND_BITS = 8
#: Smallest operand, -128.
OPERAND_MIN = -(1 << (OPERAND_BITS - 1))
#: Largest operand, 127.
OPERAND_MAX = (1 << (OPERAND_BITS - 1)) - 1
#: Largest magnitude of one operand product, ``(-128) * (-128) = 16384``.
MAX_PRODUCT = OPERAND_MIN * OPERAND_MIN
#: Widest accumulator (signed), the int32 that ``requantize`` takes.
MAX_ACC_BITS = 32
#: Width of the per-output-channel bias (signed int32).
BIAS_BITS = 32
#: Width of the per-output-channel requantization multiplier (unsigned).
MULTIPLIER_BITS = 16
#: Width of the per-output-channel right shift (unsigned, 0..63).
SHIFT_BITS = 6
#: Width of ``acc + bias`` in ``requantize`` (signed, exact): 33.
REQUANT_SUM_BITS = BIAS_BITS + 1
#: Width of ``(acc + bias) * multiplier`` in ``requantize`` (signed, exact): 50.
REQUANT_PRODUCT_BITS = REQUANT_SUM_BITS + MULTIPLIER_BITS + 1

# GELU.

#: Entries of the GELU table: one per int8 input, indexed by its two's-complement bits.
GELU_TABLE_DEPTH = 1 << OPERAND_BITS

# Softmax.

#: Width of ``ratio = round(s / ln 2 * 2**20)`` (unsigned).
RATIO_BITS = 24
#: Fraction bits of ``ratio`` (Q.20) and of ``w = n * ratio``.
RATIO_FRACTION_BITS = 20
#: Fraction bits of the coefficient ``alpha`` (Q0.16).
ALPHA_FRACTION_BITS = 16
#: Fraction bits of ``phi``, ``beta``, ``gamma`` and of ``exp_q15``'s result (Q0.15).
PHI_BITS = 15
#: Width of each polynomial coefficient ``alpha``, ``beta``, ``gamma`` (unsigned).
COEFFICIENT_BITS = 16
#: Width of ``w = n * ratio`` for ``0 <= n <= 255``: 32.
EXP_PRODUCT_BITS = OPERAND_BITS + RATIO_BITS
#: ``(alpha * d * d) >> 31`` brings the Q.46 product back to Q0.15.
EXP_POLYNOMIAL_SHIFT = ALPHA_FRACTION_BITS + PHI_BITS
#: Width of an ``exp_q15`` result (unsigned, below ``2**16``).
EXP_BITS = 16
#: ``exp_q15`` is 0 for a range-reduction shift ``z`` of 16 or more.
EXP_SHIFT_LIMIT = EXP_BITS
#: ``exp_params`` keeps ``exp(0) >= 2**14``, so a row's sum of exps is at least that.
EXP_AT_ZERO_MIN_BITS = 14
#: A row's reciprocal is ``floor(one * 2**32 / sum)``.
SOFTMAX_RECIPROCAL_BITS = 32
#: Width of the accelerator's ``probability_shift`` ``k``: probabilities of scale
#: ``1 / (one * 2**k)``, ``k`` up to 3.
PROBABILITY_SHIFT_BITS = 2


def softmax_one(out_bits):
    """The probability 1.0 of a softmax output of ``out_bits`` bits: ``2**(out_bits-1) - 1``."""
    return (1 << (out_bits - 1)) - 1


# LayerNorm.

#: Most channels of a LayerNorm row (``|z * gamma| < 2**31`` relies on it).
MAX_CHANNELS = 1024
#: Width of ``eps`` (unsigned).
EPS_BITS = 32
#: Width of a channel's ``gamma`` (signed int16).
GAMMA_BITS = 16
#: Width of a channel's ``beta``, the bias of LayerNorm's ``requantize`` (signed int32).
BETA_BITS = BIAS_BITS
#: ``s = isqrt(D << 16)`` is ``sqrt(D)`` with 8 fraction bits.
SQRT_GUARD_BITS = 16
#: The reciprocal of the root is ``r = floor(2**40 / s)``.
LAYERNORM_RECIPROCAL_BITS = 40
#: Width of ``r``: ``s`` is 0 or at least ``2**8``, so ``r <= 2**32`` has at most 33 bits.
LAYERNORM_QUOTIENT_BITS = LAYERNORM_RECIPROCAL_BITS - SQRT_GUARD_BITS // 2 + 1
#: ``z = (x - mean) / std`` is computed in Q.10.
NORMALIZED_FRACTION_BITS = 10
#: ``z = ((C * x - s1) * r) >> 22``: 40 - 8 - 10 = 22.
NORMALIZE_SHIFT = LAYERNORM_RECIPROCAL_BITS - SQRT_GUARD_BITS // 2 - NORMALIZED_FRACTION_BITS
#: Signed width of ``C * x - s1`` for any row (``|C * x - s1| <= 256 * MAX_CHANNELS``): 20.
CENTRED_BITS = (2 * -OPERAND_MIN * MAX_CHANNELS).bit_length() + 1
#: Bits of ``z`` the hardware keeps (signed); ``|z| < 2**15`` fits with room.
NORMALIZED_BITS = 18


# Token selector.

#: A sigmoid table entry is a probability in Q0.15.
SIGMOID_FRACTION_BITS = 15
#: The probability 1.0 of a sigmoid table entry, ``2**15`` (even, so 0.5 is exact).
SIGMOID_ONE = 1 << SIGMOID_FRACTION_BITS
#: Width of a table entry (unsigned): ``SIGMOID_ONE`` itself needs 16 bits.
SIGMOID_BITS = SIGMOID_FRACTION_BITS + 1
#: Heads a selector may weigh (``TOKEN_SELECT``'s ``heads`` field).
MAX_SELECTOR_HEADS = 16
#: Keep scores ``K_i = sum_h w_h p_h,i`` are exact: ``MAX_SELECTOR_HEADS`` products of two
#: Q0.15 probabilities (each at most ``2**30``): 35 bits, unsigned.
KEEP_SCORE_BITS = (MAX_SELECTOR_HEADS * SIGMOID_ONE * SIGMOID_ONE).bit_length()
#: A dropped token's weight in the package token is ``(K_i >> PACKAGE_WEIGHT_SHIFT) + 1``:
#: its head-weighted keep probability in Q0.15, plus one so that no weight is zero.
PACKAGE_WEIGHT_SHIFT = SIGMOID_FRACTION_BITS
#: Width of a package weight (unsigned): 20 bits.
PACKAGE_WEIGHT_BITS = ((MAX_SELECTOR_HEADS * SIGMOID_ONE * SIGMOID_ONE >> PACKAGE_WEIGHT_SHIFT)
                       + 1).bit_length()
