"""LOAD and STORE (``Dma``) alone in Amaranth's simulator against the golden interpreter."""

import numpy as np
import pytest

from vitforge.hw.accel.dma import Dma, dma_cycles
from vitforge.errors import ProgramError
from vitforge.hw.accel.isa import Opcode, Space, decode, encode
from vitforge.sw.accel.memory import load_words
from vitforge.sw.golden.accel.interpreter import Machine, run_program
from vitforge.sim.accel.unit_bench import Backpressure, random_machine, run_and_compare, \
    small_config

DRAM_WORDS = 96
#: Two LOADs per space: (dram_addr, spad_addr, count); the second ends at the scratchpad's end.
LOADS = {
    Space.ACT: [(3, 10, 5), (40, 250, 6)],
    Space.WGT: [(7, 0, 4), (20, 249, 7)],
    Space.PRM: [(1, 5, 6), (30, 59, 5)],
    Space.LNP: [(9, 0, 3), (50, 56, 8)],
    Space.TBL: [(3, 32, 3), (60, 0, 16)],      # TBL: count in words of 16 entries
    Space.SIG: [(5, 8, 2), (60, 256, 32)],     # SIG: count in words of 8 entries
}
STALLS = [None, Backpressure(seed=21)]


def load_machine(config, seed):
    """Random memories: every padding byte and PRM's two unused shift bits are random too."""
    return random_machine(config, np.random.default_rng(seed), DRAM_WORDS)


def external_words(config, space, count):
    return load_words(space, count, config)


@pytest.mark.parametrize("stalls", STALLS, ids=["no-stalls", "stalls"])
@pytest.mark.parametrize("space", list(LOADS), ids=[space.name for space in LOADS])
def test_load_fills_each_space_like_the_interpreter(space, stalls):
    """Padding bytes of the external words are random, so the unit must ignore them."""
    config = small_config()
    seed = 100 + space
    words = [encode(Opcode.LOAD, space=space, dram_addr=dram, spad_addr=spad, count=count)
             for dram, spad, count in LOADS[space]]
    runs = run_and_compare(Dma(config), load_machine(config, seed), words, backpressure=stalls,
                           err_msg=f"LOAD {space.name}, seed {seed}, stalls {stalls}")
    if stalls is None:
        # One read request per cycle from the cycle after start, done two cycles after the last.
        for run, word, (_, _, count) in zip(runs, words, LOADS[space]):
            requests = external_words(config, space, count)
            assert run.activity["mem.req"] == list(range(1, requests + 1))
            assert run.cycles == requests + 2 == dma_cycles(config, decode(word))


@pytest.mark.parametrize("stalls", STALLS, ids=["no-stalls", "stalls"])
def test_store_writes_activation_words_like_the_interpreter(stalls):
    config = small_config()
    seed = 7
    stores = [(5, 10, 1), (250, 40, 6), (0, 90, 3)]            # spad_addr, dram_addr, count
    words = [encode(Opcode.STORE, spad_addr=spad, dram_addr=dram, count=count)
             for spad, dram, count in stores]
    runs = run_and_compare(Dma(config), load_machine(config, seed), words, backpressure=stalls,
                           err_msg=f"STORE, seed {seed}, stalls {stalls}")
    if stalls is None:
        # "one external word per cycle": writes in consecutive cycles from cycle 2.
        for run, word, (_, _, count) in zip(runs, words, stores):
            assert run.activity["mem.req"] == list(range(2, count + 2))
            assert run.cycles == count + 2 == dma_cycles(config, decode(word))


@pytest.mark.parametrize("stalls", STALLS, ids=["no-stalls", "stalls"])
def test_entries_of_20_lanes_span_two_external_words(stalls):
    """array = 20: an ACT entry is two external words, lanes 16..19 in the second; WGT
    entries lie back to back (five in seven words), taken apart by the gearbox from each of
    its five fills, whatever the padding after a LOAD's last entry."""
    config = small_config(array=20, k_max=80)
    assert config.act_entry_words == 2
    assert [config.weight_words(count) for count in (1, 4, 5, 9)] == [2, 5, 7, 12]
    seed = 11
    weights = [(33, 251, 5), (40, 7, 1), (41, 100, 4), (46, 200, 9)]    # dram, spad, count
    words = [encode(Opcode.LOAD, space=Space.ACT, dram_addr=4, spad_addr=30, count=5),
             *(encode(Opcode.LOAD, space=Space.WGT, dram_addr=dram, spad_addr=spad,
                      count=count) for dram, spad, count in weights),
             encode(Opcode.STORE, spad_addr=29, dram_addr=60, count=7)]
    runs = run_and_compare(Dma(config), load_machine(config, seed), words, backpressure=stalls,
                           err_msg=f"array 20, seed {seed}, stalls {stalls}")
    if stalls is None:
        assert [run.cycles for run in runs] == [2 * 5 + 2, 7 + 2, 2 + 2, 5 + 2, 12 + 2,
                                                2 * 7 + 2] == [
            dma_cycles(config, decode(word)) for word in words]


def test_a_table_load_must_start_at_a_whole_word_of_entries():
    """The DMA writes table word ``spad_addr >> 4``: the ISA only defines aligned loads."""
    config = small_config()
    machine = load_machine(config, seed=12)
    word = encode(Opcode.LOAD, space=Space.TBL, dram_addr=3, spad_addr=8, count=2)
    image = bytes(machine.dram) + word.to_bytes(32, "little") \
        + encode(Opcode.DONE).to_bytes(32, "little")
    with pytest.raises(ProgramError, match=r"^instruction 0 \(LOAD\): a TBL load must start "
                                           r"at a multiple of 16 entries, not 8$"):
        run_program(Machine(config, image), DRAM_WORDS)
