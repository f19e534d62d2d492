"""``docs/numerics.md`` states the values that ``vitforge.hw.numerics`` defines."""

from pathlib import Path
import re

import pytest

from vitforge.hw import numerics as n

DOC = (Path(__file__).parents[2] / "docs" / "numerics.md").read_text()

# The selector's largest keep score (MAX_SELECTOR_HEADS products of two Q0.15 ones) and the
# package weight without its + 1: powers of two, as the page writes them.
_LARGEST_KEEP_SCORE = n.MAX_SELECTOR_HEADS * n.SIGMOID_ONE * n.SIGMOID_ONE
_LARGEST_PACKAGE_WEIGHT = _LARGEST_KEEP_SCORE >> n.PACKAGE_WEIGHT_SHIFT

# Each pattern matches exactly one place of the page; its groups are integers
# and must equal the values next to it, in order.
STATED = {
    "sigmoid constants": (r"\(`SIGMOID_FRACTION_BITS = (\d+)`, `SIGMOID_ONE = 2\^(\d+)`, (\d+)-bit "
                          r"entries\)", (n.SIGMOID_FRACTION_BITS, n.SIGMOID_FRACTION_BITS,
                                         n.SIGMOID_BITS)),
    "operands": (r"\| activation, weight, result \| int(\d+) \| \[(-\d+), (\d+)\] \|",
                 (n.OPERAND_BITS, n.OPERAND_MIN, n.OPERAND_MAX)),
    "product": (r"\| product `a \* b` \| (\d+) bit signed \| \[-\d+, (\d+)\] \|",
                (2 * n.OPERAND_BITS, n.MAX_PRODUCT)),
    "product bound": (r"<= (\d+) \* (\d+) = (\d+)`, so",
                      (-n.OPERAND_MIN, -n.OPERAND_MIN, n.MAX_PRODUCT)),
    "accumulator": (r"\| accumulator \| signed `acc_width` bits, `acc_width <= (\d+)` \|",
                    (n.MAX_ACC_BITS,)),
    "bias": (r"\| bias \| int(\d+) \| \[-2\^(\d+), 2\^(\d+) - 1\] \|",
             (n.BIAS_BITS, n.BIAS_BITS - 1, n.BIAS_BITS - 1)),
    "multiplier": (r"\| multiplier \| unsigned (\d+) bit \| \[0, (\d+)\] \|",
                   (n.MULTIPLIER_BITS, (1 << n.MULTIPLIER_BITS) - 1)),
    "shift": (r"\| shift \| unsigned (\d+) bit \| \[0, (\d+)\] \|",
              (n.SHIFT_BITS, (1 << n.SHIFT_BITS) - 1)),
    "requantize sum": (r"s = acc \+ bias +(\d+)-bit signed, exact", (n.REQUANT_SUM_BITS,)),
    "requantize product": (r"p = s \* multiplier +(\d+)-bit signed, exact",
                           (n.REQUANT_PRODUCT_BITS,)),
    "GELU table": (r"The unit is a table of\s+(\d+) entries", (n.GELU_TABLE_DEPTH,)),
    "softmax one": (r"`one = 2\^\(out_bits-1\) - 1`\s+\((\d+) for int(\d+)\)",
                    (n.softmax_one(n.OPERAND_BITS), n.OPERAND_BITS)),
    "ratio": (r"\| `ratio` \| `round\(s / ln 2 \* 2\^(\d+)\)` \| (\d+) bits, must be >= 1 \|",
              (n.RATIO_FRACTION_BITS, n.RATIO_BITS)),
    "alpha": (r"\| `alpha` \| `round\([\d.]+ \* 2\^(\d+)\)` \| (\d+) bits \|",
              (n.ALPHA_FRACTION_BITS, n.COEFFICIENT_BITS)),
    "beta": (r"\| `beta` \| `round\([\d.]+ \* 2\^(\d+)\)` \| (\d+) bits, >= 2\^(\d+) \|",
             (n.PHI_BITS, n.COEFFICIENT_BITS, n.PHI_BITS)),
    "gamma": (r"\| `gamma` \| `round\([\d.]+ \* 2\^(\d+)\)` \| (\d+) bits \|",
              (n.PHI_BITS, n.COEFFICIENT_BITS)),
    "exp at zero": (r"`exp\(0\)`\s+falls outside `\[2\^(\d+), 2\^(\d+)\)`",
                    (n.EXP_AT_ZERO_MIN_BITS, n.EXP_BITS)),
    "exp product": (r"w   = n \* ratio +(\d+) bits: n \* s / ln 2 in Q\.(\d+)",
                    (n.EXP_PRODUCT_BITS, n.RATIO_FRACTION_BITS)),
    "range reduction": (r"z   = w >> (\d+) ", (n.RATIO_FRACTION_BITS,)),
    "phi": (r"phi = \(w >> (\d+)\) & (0x[0-9A-F]+) +fraction, Q0\.(\d+)",
            (n.RATIO_FRACTION_BITS - n.PHI_BITS, (1 << n.PHI_BITS) - 1, n.PHI_BITS)),
    "polynomial": (r"e   = \(\(alpha \* d \* d\) >> (\d+)\) \+ gamma", (n.EXP_POLYNOMIAL_SHIFT,)),
    "exp shift limit": (r"return 0 if z >= (\d+) else e >> z", (n.EXP_SHIFT_LIMIT,)),
    "row sum": (r"S   = sum e_i +>= 2\^(\d+)", (n.EXP_AT_ZERO_MIN_BITS,)),
    "softmax reciprocal": (r"r   = floor\(one \* 2\^(\d+) / S\) +at most out_bits \+ (\d+) bits",
                           (n.SOFTMAX_RECIPROCAL_BITS,
                            n.SOFTMAX_RECIPROCAL_BITS - n.EXP_AT_ZERO_MIN_BITS - 1)),
    "probability": (r"p_i = min\(\(\(e_i \* r << k\) \+ 2\^(\d+)\) >> (\d+), one\)",
                    (n.SOFTMAX_RECIPROCAL_BITS - 1, n.SOFTMAX_RECIPROCAL_BITS)),
    "probability shift": (r"\(`PROBABILITY_SHIFT_BITS = (\d+)` bits, 0 to (\d+);",
                          (n.PROBABILITY_SHIFT_BITS, (1 << n.PROBABILITY_SHIFT_BITS) - 1)),
    "channels": (r"\(C configured, at most (\d+)\)", (n.MAX_CHANNELS,)),
    "eps": (r"\| `eps` \| `round\(eps \* C\^2 / s_x\^2\)` \| (\d+) bits \|", (n.EPS_BITS,)),
    "gamma_c": (r"`s_g = max\|gamma\| / (\d+)` \| int(\d+) per channel \|",
                ((1 << (n.GAMMA_BITS - 1)) - 1, n.GAMMA_BITS)),
    "beta_c": (r"\| `beta_c` \| `round\(beta_c \* 2\^(\d+) / s_g\)` \| int(\d+) per channel \|",
               (n.NORMALIZED_FRACTION_BITS, n.BETA_BITS)),
    "square root": (r"s  = isqrt\(D << (\d+)\) +floor\(sqrt\(D\) \* 2\^(\d+)\)",
                    (n.SQRT_GUARD_BITS, n.SQRT_GUARD_BITS // 2)),
    "layernorm reciprocal": (r"r  = floor\(2\^(\d+) / s\), or 0 when s == 0 +"
                             r"\(s is 0 or >= (\d+): r has at most (\d+) bits\)",
                             (n.LAYERNORM_RECIPROCAL_BITS, 1 << (n.SQRT_GUARD_BITS // 2),
                              n.LAYERNORM_QUOTIENT_BITS)),
    "normalize": (r"z_i = \(\(C x_i - s1\) \* r\) >> (\d+) +\(x_i - mean\) / std in Q\.(\d+)",
                  (n.NORMALIZE_SHIFT, n.NORMALIZED_FRACTION_BITS)),
    "accumulator of z * gamma": (r"for `C <= (\d+)`: the int(\d+) accumulator",
                                 (n.MAX_CHANNELS, n.MAX_ACC_BITS)),
    "selector heads": (r"`H <= MAX_SELECTOR_HEADS = (\d+)`", (n.MAX_SELECTOR_HEADS,)),
    "keep score": (r"with\s+`H <= (\d+)`,\s+`K_i <= (\d+) \* 2\^(\d+) = 2\^(\d+) < 2\^(\d+)`,"
                   r"\s+so\s+`KEEP_SCORE_BITS = (\d+)`",
                   (n.MAX_SELECTOR_HEADS, n.MAX_SELECTOR_HEADS, 2 * n.SIGMOID_FRACTION_BITS,
                    _LARGEST_KEEP_SCORE.bit_length() - 1, n.KEEP_SCORE_BITS, n.KEEP_SCORE_BITS)),
    "package weight": (r"W_i += \(K_i >> (\d+)\) \+ 1 +package weight, unsigned, "
                       r"in \[1, 2\^(\d+) \+ 1\]",
                       (n.PACKAGE_WEIGHT_SHIFT, _LARGEST_PACKAGE_WEIGHT.bit_length() - 1)),
    "package weight bits": (r"`PACKAGE_WEIGHT_BITS = (\d+)`\s+unsigned\s+bits, so each product"
                            r"\s+`W_i x_i,c` is\s+a\s+(\d+) x (\d+) bit\s+multiplication "
                            r"\((\d+) x (\d+) with `K_i` itself\)",
                            (n.PACKAGE_WEIGHT_BITS, n.PACKAGE_WEIGHT_BITS, n.OPERAND_BITS,
                             n.KEEP_SCORE_BITS, n.OPERAND_BITS)),
    "package numerator": (r"`\|sum_i W_i x_i,c\| <= (\d+) q \(2\^(\d+) \+ 1\) < q 2\^(\d+)`, "
                          r"and\s+`q <= sum_i W_i <= q \(2\^(\d+) \+ 1\)`",
                          (-n.OPERAND_MIN, _LARGEST_PACKAGE_WEIGHT.bit_length() - 1,
                           (-n.OPERAND_MIN * (_LARGEST_PACKAGE_WEIGHT + 1)).bit_length(),
                           _LARGEST_PACKAGE_WEIGHT.bit_length() - 1)),
    "package weight shift": (r"`PACKAGE_WEIGHT_SHIFT` \((\d+)\)", (n.PACKAGE_WEIGHT_SHIFT,)),
}


@pytest.mark.parametrize("pattern, values", STATED.values(), ids=STATED.keys())
def test_doc_states_the_module_values(pattern, values):
    matches = list(re.finditer(pattern, DOC))
    assert len(matches) == 1, f"{pattern!r} matches docs/numerics.md {len(matches)} times"
    stated = tuple(int(group, 0) for group in matches[0].groups())
    assert stated == values, f"docs/numerics.md states {stated}, vitforge.hw.numerics {values}"


def test_normalized_value_fits_the_kept_width():
    # docs/numerics.md: |z| <= sqrt(C - 1) * 2**10 < 2**15, kept in NORMALIZED_BITS signed bits.
    largest = (n.MAX_CHANNELS - 1) ** 0.5 * 2 ** n.NORMALIZED_FRACTION_BITS
    assert largest < 1 << 15 <= 1 << (n.NORMALIZED_BITS - 1)


def test_selector_widths_hold_the_largest_keep_score_and_package_weight():
    # docs/numerics.md: K_i <= 2^34 < 2^KEEP_SCORE_BITS; W_i <= 2^19 + 1 < 2^PACKAGE_WEIGHT_BITS.
    assert _LARGEST_KEEP_SCORE == 1 << (_LARGEST_KEEP_SCORE.bit_length() - 1)
    assert _LARGEST_KEEP_SCORE < 1 << n.KEEP_SCORE_BITS <= 2 * _LARGEST_KEEP_SCORE
    weight = _LARGEST_PACKAGE_WEIGHT + 1
    assert _LARGEST_PACKAGE_WEIGHT == 1 << (_LARGEST_PACKAGE_WEIGHT.bit_length() - 1)
    assert weight < 1 << n.PACKAGE_WEIGHT_BITS <= 2 * weight
