"""LAYERNORM's shared statistics units (``LayerNormStatistics``) against the golden numerics."""

import numpy as np
import pytest

from vitforge.hw.accel.layernorm_statistics import (PRODUCT_BITS, LayerNormStatistics,
                                                    statistics_cycles)
from vitforge.hw.numerics import LAYERNORM_RECIPROCAL_BITS, NORMALIZE_SHIFT, SQRT_GUARD_BITS
from vitforge.sim.accel.unit_bench import run_back_to_back
from vitforge.sw.golden.nonlinear.layernorm import isqrt

MASK = (1 << PRODUCT_BITS) - 1


def reciprocals(rows, eps):
    """Each row's ``r`` of ``layernorm_rows``, as Python ints."""
    x = rows.astype(np.int64)
    s1, s2 = x.sum(axis=1), (x * x).sum(axis=1)
    roots = isqrt((rows.shape[1] * s2 - s1 * s1 + eps) << SQRT_GUARD_BITS)
    return [(1 << LAYERNORM_RECIPROCAL_BITS) // int(s) if s else 0 for s in roots]


def expected(rows, eps):
    """``(scale, offset)`` per row: ``C * r`` and ``s1 * r`` modulo ``2**PRODUCT_BITS``."""
    s1 = rows.astype(np.int64).sum(axis=1)
    r = reciprocals(rows, eps)
    return ([rows.shape[1] * each & MASK for each in r],
            [int(total) * each & MASK for total, each in zip(s1, r)])


def batches(rng, lanes):
    """Rows of every lane, batch after batch: random spreads, constant rows, extremes."""
    yield rng.integers(-128, 128, (lanes, 7), dtype=np.int8), 0
    spread = rng.integers(1, 128, (lanes, 1))
    yield np.clip(rng.integers(-128, 128, (lanes, 64)) % (2 * spread) - spread, -128,
                  127).astype(np.int8), 1 << 20
    constant = np.repeat(rng.integers(-128, 128, (lanes, 1)), 16, axis=1).astype(np.int8)
    yield constant, 0                                     # D = 0: zero root, scale 0
    yield constant, 3                                     # D = eps only
    extreme = np.full((lanes, 1024), 127, np.int8)
    extreme[::2, ::2] = -128                              # the largest D and |s1|
    yield extreme, (1 << 32) - 1


def run(lanes, units, seed):
    """Simulate the batches back to back; returns per batch the expected and simulated
    ``(scale, offset)`` and the cycles ``busy`` took."""
    dut = LayerNormStatistics(lanes=lanes, units=units)

    def apply(ctx, batch):
        rows, eps = batch
        x = rows.astype(np.int64)
        ctx.set(dut.channels, rows.shape[1])
        ctx.set(dut.eps, eps)
        for lane in range(lanes):
            ctx.set(dut.s1[lane], int(x[lane].sum()))
            ctx.set(dut.s2[lane], int((x[lane] * x[lane]).sum()))

    async def read(ctx, batch):
        return ([ctx.get(dut.scale[lane]) for lane in range(lanes)],
                [ctx.get(dut.offset[lane]) for lane in range(lanes)])

    rows = list(batches(np.random.default_rng(seed), lanes))
    return [(expected(*batch), got, cycles)
            for batch, (got, cycles) in zip(rows, run_back_to_back(dut, rows, apply, read))]


@pytest.mark.parametrize("lanes, units", [(1, 1), (4, 1), (5, 2), (8, 3), (6, 6)])
def test_back_to_back_rows_match_the_golden_statistics(lanes, units):
    for batch, (want, got, cycles) in enumerate(run(lanes, units, seed=lanes * 10 + units)):
        for name, a, b in zip(("scale", "offset"), want, got):
            np.testing.assert_array_equal(b, a, err_msg=f"{name}, batch {batch}, "
                                          f"{lanes} lanes in {units} units")
        assert cycles == statistics_cycles(lanes, units)


def test_cycles_of_the_default_units():
    """32 lanes in 16 units: 2 rounds of 34 cycles, the 16 units issued a cycle apart; D in
    3 stages, the root 27 and the division 34 cycles; 4 cycles to the registers."""
    assert statistics_cycles(32, 16) == 34 + 15 + 1 + 3 + 27 + 34 + 4


def test_scale_and_offset_keep_every_bit_of_z():
    """``((C * x - s1) * r) >> NORMALIZE_SHIFT`` and ``(x * scale - offset)`` modulo
    ``2**PRODUCT_BITS`` agree in the bits the normalized value keeps."""
    rng = np.random.default_rng(5)
    for channels in (1, 2, 192, 1024):
        rows = rng.integers(-128, 128, (64, channels), dtype=np.int8)
        rows[0] = -128
        rows[1, ::2], rows[1, 1::2] = 127, -128
        (scale, offset), x = expected(rows, 1), rows.astype(np.int64)
        s1 = x.sum(axis=1, keepdims=True)
        r = np.array(reciprocals(rows, 1), dtype=object)[:, None]
        z = ((channels * x - s1) * r) >> NORMALIZE_SHIFT
        product = (x * np.array(scale, dtype=object)[:, None]
                   - np.array(offset, dtype=object)[:, None]) & MASK
        normalized = (product.astype(np.int64) >> NORMALIZE_SHIFT)
        normalized -= (normalized >> (PRODUCT_BITS - NORMALIZE_SHIFT - 1)) << (
            PRODUCT_BITS - NORMALIZE_SHIFT)
        np.testing.assert_array_equal(normalized, z, err_msg=f"{channels} channels")
