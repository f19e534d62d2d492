"""COPY_TO_WGT and TRANSPOSE_TO_WGT (``Moves``) alone in Amaranth's simulator vs the golden."""

import numpy as np
import pytest

from vitforge.hw.accel.isa import Opcode, decode, encode
from vitforge.hw.accel.moves import Moves, move_cycles
from vitforge.sim.accel.unit_bench import random_machine, run_and_compare, small_config


@pytest.mark.parametrize("array", [2, 4])
def test_copy_to_wgt_gathers_strided_tiles_one_word_per_cycle(array):
    config = small_config(array=array)
    seed = 50 + array
    shapes = [(3, 5, 7), (1, 1, 0), (4, 2, 2)]          # tiles, words, src_stride
    words = [encode(Opcode.COPY_TO_WGT, src=3 + 11 * index, src_stride=stride, dst=17 * index,
                    tiles=tiles, words=count)
             for index, (tiles, count, stride) in enumerate(shapes)]
    runs = run_and_compare(Moves(config), random_machine(config, np.random.default_rng(seed)),
                           words, err_msg=f"COPY_TO_WGT, array {array}, seed {seed}")
    for run, word, (tiles, count, _) in zip(runs, words, shapes):
        # A word read in cycle c is written from a register in cycle c + 2.
        assert run.cycles == tiles * count + 3 == move_cycles(config, decode(word))
        assert run.activity["act_read"] == list(range(1, tiles * count + 1))
        assert run.activity["wgt_write"] == list(range(3, tiles * count + 3))


@pytest.mark.parametrize("array", [2, 4])
def test_transpose_to_wgt_turns_blocks_in_array_cycles_each(array):
    """Two register blocks in turn: the words are read one per cycle throughout, each
    block written while the next is read; the last block's words follow its reads."""
    config = small_config(array=array)
    seed = 60 + array
    shapes = [(2, 3), (1, 1), (3, 2)]                    # token_tiles, channel_tiles
    words = []
    for index, (token_tiles, channel_tiles) in enumerate(shapes):
        words.append(encode(Opcode.TRANSPOSE_TO_WGT, src=5 + 40 * index,
                            src_stride=channel_tiles * array + 3, dst=7 + 60 * index,
                            dst_stride=token_tiles * array + 2, token_tiles=token_tiles,
                            channel_tiles=channel_tiles))
    runs = run_and_compare(Moves(config), random_machine(config, np.random.default_rng(seed)),
                           words, err_msg=f"TRANSPOSE_TO_WGT, array {array}, seed {seed}")
    for run, word, (token_tiles, channel_tiles) in zip(runs, words, shapes):
        blocks = token_tiles * channel_tiles
        assert run.cycles == (blocks + 1) * array + 3 == move_cycles(config, decode(word))
        assert run.activity["act_read"] == list(range(1, blocks * array + 1))
        # A block's last word arrives a cycle after its read; its first token goes out from
        # a register a cycle after that.
        assert run.activity["wgt_write"] == list(range(array + 3, (blocks + 1) * array + 3))
