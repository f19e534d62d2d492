"""SOFTMAX (``RowSoftmax``) alone in Amaranth's simulator against the golden interpreter."""

import numpy as np
import pytest

from vitforge.hw.accel.isa import Opcode, encode
from vitforge.hw.accel.row_softmax import RowSoftmax
from vitforge.sim.accel.unit_bench import extreme_rows, random_machine, run_and_compare, \
    set_rows, small_config
from vitforge.sw.params.softmax import exp_params

#: Cycles per tile beyond three passes of one word per cycle (measured: every pass drains the
#: 7-stage read/exp/output pipeline, 25 for the division).
TILE_OVERHEAD = 50
#: Cycles per instruction beyond its tiles: start and the FINISH state.
OVERHEAD = 2


def softmax(params, src, src_stride, dst, dst_stride, m_tiles, length):
    return encode(Opcode.SOFTMAX, src=src, src_stride=src_stride, dst=dst, dst_stride=dst_stride,
                  m_tiles=m_tiles, length=length, ratio=params.ratio, alpha=params.alpha,
                  beta=params.beta, gamma=params.gamma)


@pytest.mark.parametrize("scale", [0.02, 0.1])
@pytest.mark.parametrize("array", [2, 4])
def test_strided_tiles_and_extreme_rows_match_the_interpreter(scale, array):
    config = small_config(array=array)
    seed = int(scale * 1000) + array
    machine = random_machine(config, np.random.default_rng(seed))
    set_rows(machine, 0, 9, extreme_rows(6))              # the first rows of shape 0
    params = exp_params(scale)
    shapes = [(0, 9, 100, 11, 3, 6),                      # src, stride, dst, stride, tiles, length
              (40, 5, 40, 5, 2, 5),                       # in place
              (200, 1, 220, 2, 3, 1),                     # rows of one element
              (60, 13, 150, 13, 1, 13)]
    words = [softmax(params, *shape) for shape in shapes]
    runs = run_and_compare(RowSoftmax(config), machine, words,
                           err_msg=f"SOFTMAX, array {array}, scale {scale}, seed {seed}")
    assert [run.cycles for run in runs] == [
        tiles * (3 * length + TILE_OVERHEAD) + OVERHEAD for *_, tiles, length in shapes]
