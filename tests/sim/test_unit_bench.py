"""The single-unit bench (vitforge.sim.accel.unit_bench) reports hangs and handshake faults."""

import numpy as np
import pytest

from vitforge.errors import WatchdogError
from vitforge.hw.accel.isa import Opcode, encode
from vitforge.hw.accel.moves import Moves
from vitforge.sim.accel.unit_bench import UnitRun, random_machine, run_unit, small_config


def test_watchdog_names_the_case_and_the_instruction():
    config = small_config()
    machine = random_machine(config, np.random.default_rng(0))
    word = encode(Opcode.COPY_TO_WGT, src=0, src_stride=8, dst=0, tiles=4, words=8)
    with pytest.raises(WatchdogError, match=r"^bench test, seed 0: COPY_TO_WGT: done did not "
                                            r"pulse within 10 cycles of start$"):
        run_unit(Moves(config), machine, [word], max_cycles=10, label="bench test, seed 0")


@pytest.mark.parametrize("done_cycles, busy, activity, message", [
    ([4, 6], [0, 1, 1, 1, 0, 0, 0, 0], {}, r"done was high in cycles \[4, 6\], expected only in 4"),
    ([4], [0, 1, 0, 1, 0, 0, 0, 0], {}, r"busy low while running in cycles \[2\]"),
    ([4], [0, 1, 1, 1, 1, 0, 0, 0], {}, r"busy high at or after done in cycles \[4\]"),
    ([4], [0, 1, 1, 1, 0, 0, 0, 0], {"act_write": [3, 4]},
     r"ports used at or after done: \{'act_write': \[4\]\}"),
])
def test_handshake_faults_are_named(done_cycles, busy, activity, message):
    run = UnitRun(state=None, cycles=4, done_cycles=done_cycles, busy=busy, activity=activity)
    with pytest.raises(AssertionError, match=message):
        run.check_handshake()


def test_a_clean_handshake_passes():
    UnitRun(state=None, cycles=4, done_cycles=[4], busy=[0, 1, 1, 1, 0, 0, 0, 0],
            activity={"act_read": [1, 2, 3]}).check_handshake()
