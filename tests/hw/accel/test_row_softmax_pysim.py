"""SOFTMAX (``RowSoftmax``) alone in Amaranth's simulator against the golden interpreter."""

import numpy as np
import pytest

from vitforge.hw.accel.isa import Opcode, encode
from vitforge.hw.accel.row_softmax import RowSoftmax, softmax_cycles
from vitforge.sim.accel.unit_bench import extreme_rows, random_machine, run_and_compare, \
    set_rows, small_config, spread_rows
from vitforge.sw.params.softmax import exp_params

def softmax(params, src, src_stride, dst, dst_stride, m_tiles, length, probability_shift=0,
            carry=0, resume=0):
    return encode(Opcode.SOFTMAX, src=src, src_stride=src_stride, dst=dst, dst_stride=dst_stride,
                  m_tiles=m_tiles, length=length, ratio=params.ratio, alpha=params.alpha,
                  beta=params.beta, gamma=params.gamma, probability_shift=probability_shift,
                  carry=carry, resume=resume)


@pytest.mark.parametrize("act_read_ports", [2, 1])
@pytest.mark.parametrize("scale", [0.02, 0.1])
@pytest.mark.parametrize("array", [2, 4])
def test_strided_tiles_and_extreme_rows_match_the_interpreter(scale, array, act_read_ports):
    """With two read ports each tile after the first has its maxima from the output pass
    before it (the second port), with one it has its own maxima pass."""
    config = small_config(array=array, act_read_ports=act_read_ports)
    seed = int(scale * 1000) + array
    machine = random_machine(config, np.random.default_rng(seed))
    set_rows(machine, 0, 9, extreme_rows(6))              # the first rows of shape 0
    params = exp_params(scale)
    shapes = [(0, 9, 100, 11, 3, 6),                      # src, stride, dst, stride, tiles, length
              (40, 5, 40, 5, 2, 5),                       # in place
              (200, 1, 220, 2, 3, 1),                     # rows of one element
              (60, 13, 150, 13, 1, 13)]
    # Each probability scale, 1/127 to 1/1016 (saturating above 2**-shift).
    words = [softmax(params, *shape, probability_shift=shift)
             for shift, shape in enumerate(shapes)]
    runs = run_and_compare(RowSoftmax(config), machine, words,
                           err_msg=f"SOFTMAX, array {array}, scale {scale}, seed {seed}, "
                                   f"{act_read_ports} read ports")
    assert [run.cycles for run in runs] == [
        softmax_cycles(array, tiles, length, lookahead=act_read_ports == 2)
        for *_, tiles, length in shapes]


@pytest.mark.parametrize("units", [3, 8])
def test_shared_units_under_back_to_back_rows(units):
    """Eight lanes in 3 (unevenly loaded) or 8 dividers: rows of every spread and extreme
    rows, tiles and instructions back to back, the second on the first's output."""
    config = small_config(array=8)
    rng = np.random.default_rng(100 + units)
    machine = random_machine(config, rng)
    set_rows(machine, 0, 12, np.concatenate([spread_rows(rng, 11, 12), extreme_rows(12)]))
    shapes = [(0, 12, 100, 12, 2, 12), (100, 12, 100, 12, 2, 12), (30, 1, 200, 1, 3, 1)]
    words = [softmax(exp_params(scale), *shape) for scale, shape in zip((0.05, 0.01, 0.1), shapes)]
    runs = run_and_compare(RowSoftmax(config, units=units), machine, words,
                           err_msg=f"SOFTMAX, {units} units")
    assert [run.cycles for run in runs] == [
        softmax_cycles(8, tiles, length, units, lookahead=True) for *_, tiles, length in shapes]


@pytest.mark.parametrize("act_read_ports", [1, 2])
def test_a_long_row_hides_the_table_fill(act_read_ports):
    """Rows of 300 elements: the first maxima pass outlasts the fill of the exp table; with
    two read ports the second tile's maxima pass (300 words and its drain of 7) is saved,
    and each tile's sums pass reads its 300 words in 150 cycles."""
    config = small_config(array=2, act_depth=2048, act_read_ports=act_read_ports)
    rng = np.random.default_rng(3)
    machine = random_machine(config, rng)
    set_rows(machine, 0, 300, spread_rows(rng, 4, 300))
    word = softmax(exp_params(0.05), 0, 300, 600, 300, 2, 300)
    runs = run_and_compare(RowSoftmax(config), machine, [word], err_msg="SOFTMAX, rows of 300")
    lookahead = act_read_ports == 2
    assert [run.cycles for run in runs] == [softmax_cycles(2, 2, 300, lookahead=lookahead)]
    assert softmax_cycles(2, 2, 300) == softmax_cycles(2, 2, 299) + 6 == 2 * (900 + 75) + 2
    assert softmax_cycles(2, 2, 300, lookahead=True) == softmax_cycles(2, 2, 300) - 307 - 300
    assert softmax_cycles(2, 2, 299, lookahead=True) == softmax_cycles(2, 2, 299) - 306 - 298


def test_cycles_of_deit_shapes():
    """32 lanes in the default 16 dividers, 7 tiles of rows of 197 (DeiT): per tile three
    passes, 2 divisions of 26 cycles and the drains; the table's fill beyond the first
    maxima pass."""
    assert softmax_cycles(32, 7, 197) == 7 * (3 * 197 + 75) + 264 - 197 - 7 + 2


@pytest.mark.parametrize("length", [5, 300])
def test_pieces_resume_from_the_maxima_the_piece_before_carried(length):
    """A softmax of 5 tiles in pieces of 2, 1 and 2 tiles: the first two carry the maxima of
    the tile after their last, the last two resume from them (no maxima pass, no table
    fill). Then a whole softmax with another table, which fills it again, and a piece
    that carries to no piece after it."""
    config = small_config(array=4, act_depth=4096)
    rng = np.random.default_rng(length)
    machine = random_machine(config, rng)
    set_rows(machine, 0, length, np.concatenate([extreme_rows(length),
                                                  spread_rows(rng, 14, length)]))
    params, stride = exp_params(0.05), length + 3
    pieces = [(0, 2, 1, 0), (2, 1, 1, 1), (3, 2, 0, 1)]      # first tile, tiles, carry, resume
    words = [softmax(params, first * stride, stride, 2000 + first * stride, stride, tiles,
                     length, carry=carry, resume=resume)
             for first, tiles, carry, resume in pieces]
    words += [softmax(exp_params(0.1), 40, stride, 40, stride, 3, length),
              softmax(exp_params(0.1), 0, stride, 2000, stride, 1, length, carry=1)]
    runs = run_and_compare(RowSoftmax(config), machine, words, max_cycles=20_000,
                           err_msg=f"SOFTMAX pieces, rows of {length}")
    assert [run.cycles for run in runs] == [
        softmax_cycles(4, tiles, length, lookahead=True, resume=resume)
        for _, tiles, _, resume in [*pieces, (0, 3, 0, 0), (0, 1, 1, 0)]]
    # The pieces take what the whole softmax takes, and the start and FINISH of two more.
    assert sum(run.cycles for run in runs[:3]) == softmax_cycles(4, 5, length,
                                                                 lookahead=True) + 2 * 2
