"""LAYERNORM (``RowLayerNorm``) alone in Amaranth's simulator against the golden interpreter."""

import numpy as np
import pytest

from vitforge.hw.accel.isa import Opcode, encode
from vitforge.hw.accel.row_layernorm import RowLayerNorm, layernorm_cycles
from vitforge.sim.accel.unit_bench import extreme_rows, random_machine, run_and_compare, \
    set_rows, small_config, spread_rows
from vitforge.sw.params.layernorm import layernorm_params

def layernorms(machine, rng, shapes, eps):
    """LAYERNORM words of ``shapes`` (src, src_stride, dst, dst_stride, tiles, channels,
    lnp_addr) with ``eps[i]``, random gamma and beta written to ``machine``'s LNP."""
    words = []
    for (src, src_stride, dst, dst_stride, tiles, channels, lnp_addr), each in zip(shapes, eps):
        params = layernorm_params(0.05, rng.uniform(-1.5, 1.5, channels),
                                  rng.uniform(-0.5, 0.5, channels), each, scale_out=4 / 127)
        machine.gamma[lnp_addr:lnp_addr + channels] = params.gamma
        machine.beta[lnp_addr:lnp_addr + channels] = params.beta
        words.append(encode(Opcode.LAYERNORM, src=src, src_stride=src_stride, dst=dst,
                            dst_stride=dst_stride, m_tiles=tiles, channels=channels,
                            lnp_addr=lnp_addr, eps=params.eps, multiplier=params.multiplier,
                            shift=params.shift))
    return words


@pytest.mark.parametrize("act_read_ports", [2, 1])
@pytest.mark.parametrize("eps", [1e-6, 0.05])
@pytest.mark.parametrize("array", [2, 4])
def test_strided_tiles_and_extreme_rows_match_the_interpreter(eps, array, act_read_ports):
    """eps 1e-6 rounds to 0 at these scales: the constant rows then have variance 0. With
    two read ports the output pass of a tile sums the next one's words, in place too."""
    config = small_config(array=array, act_read_ports=act_read_ports)
    seed = (70 if eps < 0.01 else 80) + array
    rng = np.random.default_rng(seed)
    machine = random_machine(config, rng)
    set_rows(machine, 0, 9, extreme_rows(6))             # the first rows of shape 0
    shapes = [(0, 9, 100, 11, 2, 6, 0),                  # src, stride, dst, stride, tiles,
              (40, 5, 40, 5, 2, 4, 20),                  # channels, lnp_addr; in place
              (60, 13, 150, 13, 1, 13, 40)]
    words = layernorms(machine, rng, shapes, [eps] * len(shapes))
    runs = run_and_compare(RowLayerNorm(config), machine, words,
                           err_msg=f"LAYERNORM, array {array}, eps {eps}, seed {seed}, "
                                   f"{act_read_ports} read ports")
    assert [run.cycles for run in runs] == [
        layernorm_cycles(array, tiles, channels, lookahead=act_read_ports == 2)
        for *_, tiles, channels, _ in shapes]


@pytest.mark.parametrize("units, act_read_ports", [(3, 1), (8, 1), (3, 2)])
def test_shared_units_under_back_to_back_rows(units, act_read_ports):
    """Eight lanes in 3 (unevenly loaded) or 8 statistics units: rows of every spread, extreme
    and constant rows, tiles and instructions back to back, the second on the first's
    output, the third with one channel (D is eps alone)."""
    config = small_config(array=8, act_read_ports=act_read_ports)
    rng = np.random.default_rng(90 + units)
    machine = random_machine(config, rng)
    set_rows(machine, 0, 12, np.concatenate([spread_rows(rng, 11, 12), extreme_rows(12)]))
    shapes = [(0, 12, 100, 12, 2, 12, 0),               # src, stride, dst, stride, tiles,
              (100, 12, 100, 12, 2, 12, 12),            # channels, lnp_addr
              (30, 1, 200, 1, 3, 1, 24)]
    words = layernorms(machine, rng, shapes, [0.0, 0.05, 0.5])
    runs = run_and_compare(RowLayerNorm(config, units=units), machine, words,
                           err_msg=f"LAYERNORM, {units} units, {act_read_ports} read ports")
    assert [run.cycles for run in runs] == [
        layernorm_cycles(8, tiles, channels, units, lookahead=act_read_ports == 2)
        for *_, tiles, channels, _ in shapes]


def test_cycles_of_deit_shapes():
    """32 lanes in the default 16 units, 7 tiles of 192 channels (DeiT-T): per tile the two
    passes, 2 rounds of 34-cycle statistics and the drains; with the look-ahead the tiles
    after the first without their sums pass and its drain."""
    assert layernorm_cycles(32, 7, 192) == 7 * (2 * 192 + 142) + 2
    assert layernorm_cycles(32, 7, 192, lookahead=True) == \
        7 * (2 * 192 + 142) + 2 - 6 * (192 + 12)
