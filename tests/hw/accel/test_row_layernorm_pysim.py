"""LAYERNORM (``RowLayerNorm``) alone in Amaranth's simulator against the golden interpreter."""

import numpy as np
import pytest

from vitforge.hw.accel.isa import Opcode, encode
from vitforge.hw.accel.row_layernorm import RowLayerNorm
from vitforge.sim.accel.unit_bench import extreme_rows, random_machine, run_and_compare, \
    set_rows, small_config
from vitforge.sw.params.layernorm import layernorm_params

#: Cycles per tile beyond two passes of one word per cycle (measured: 26 for the square root,
#: 33 for the reciprocal, the rest pipeline drains).
TILE_OVERHEAD = 75
#: Cycles per instruction beyond its tiles: start and the FINISH state.
OVERHEAD = 2


@pytest.mark.parametrize("eps", [1e-6, 0.05])
@pytest.mark.parametrize("array", [2, 4])
def test_strided_tiles_and_extreme_rows_match_the_interpreter(eps, array):
    """eps 1e-6 rounds to 0 at these scales: the constant rows then have variance 0."""
    config = small_config(array=array)
    seed = (70 if eps < 0.01 else 80) + array
    rng = np.random.default_rng(seed)
    machine = random_machine(config, rng)
    set_rows(machine, 0, 9, extreme_rows(6))             # the first rows of shape 0
    shapes = [(0, 9, 100, 11, 2, 6, 0),                  # src, stride, dst, stride, tiles,
              (40, 5, 40, 5, 2, 4, 20),                  # channels, lnp_addr; in place
              (60, 13, 150, 13, 1, 13, 40)]
    words = []
    for src, src_stride, dst, dst_stride, tiles, channels, lnp_addr in shapes:
        params = layernorm_params(0.05, rng.uniform(-1.5, 1.5, channels),
                                  rng.uniform(-0.5, 0.5, channels), eps, scale_out=4 / 127)
        machine.gamma[lnp_addr:lnp_addr + channels] = params.gamma
        machine.beta[lnp_addr:lnp_addr + channels] = params.beta
        words.append(encode(Opcode.LAYERNORM, src=src, src_stride=src_stride, dst=dst,
                            dst_stride=dst_stride, m_tiles=tiles, channels=channels,
                            lnp_addr=lnp_addr, eps=params.eps, multiplier=params.multiplier,
                            shift=params.shift))
    runs = run_and_compare(RowLayerNorm(config), machine, words,
                           err_msg=f"LAYERNORM, array {array}, eps {eps}, seed {seed}")
    assert [run.cycles for run in runs] == [
        tiles * (2 * channels + TILE_OVERHEAD) + OVERHEAD for *_, tiles, channels, _ in shapes]
