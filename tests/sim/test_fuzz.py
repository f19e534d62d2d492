"""Differential fuzzing: random legal programs on the golden interpreter and on the RTL.

CI runs a short budget (below); ``bench/fuzz.py`` runs the long one.
"""

from pathlib import Path

import numpy as np
import pytest

from vitforge.errors import EXIT_OK, EXIT_USAGE
from vitforge.hw.accel.config import DRAM_WORD_BYTES
from vitforge.hw.accel.isa import Opcode
from vitforge.sim import fuzz
from vitforge.sim.replay import load_replay, save_replay
from vitforge.sw import cli
from vitforge.sw.accel.cycles import program_cycles
from vitforge.sw.golden.accel.interpreter import Machine, run_program

GOLDEN_PROGRAMS = 300
RTL_PROGRAMS = 60


def test_random_programs_cover_every_opcode_and_touch_memory_only_through_stores(tmp_path):
    seen = fuzz.fuzz_golden(GOLDEN_PROGRAMS, replay_folder=tmp_path)
    every = {opcode.name for opcode in Opcode} - {"DONE"}
    assert every <= set(seen), sorted(every - set(seen))
    assert seen["live"] > 0 and seen["TOKEN_SELECT"] > 10 and seen["resume"] > 0, seen
    assert seen["b_act"] > 0 and seen["residual"] > 0 and seen["far"] > 0, seen
    assert list(tmp_path.iterdir()) == []


def test_a_mismatch_shrinks_to_a_minimal_program_and_a_replay_command(tmp_path):
    """The harness itself: an RTL stand-in that gets every program with a GELU wrong must be
    caught, shrunk to the prologue and one GELU, and saved as a replay file of it."""
    def wrong_after_gelu(images):
        results = []
        for image in images:
            executed, dram = _golden(image)
            dram = bytearray(dram)
            if any(instruction.opcode == Opcode.GELU for instruction in executed):
                dram[-1] ^= 1
            predicted = program_cycles(fuzz.FUZZ_CONFIG, executed)
            results.append({"dram": bytes(dram), "hung": False, "error": 0, "error_pc": 0,
                            "cycles": predicted.cycles, "class_cycles": predicted.class_cycles,
                            "side_cycles": predicted.side_cycles})
        return results

    with pytest.raises(AssertionError) as caught:
        fuzz.fuzz_rtl(100, replay_folder=tmp_path, run=wrong_after_gelu)
    message = str(caught.value)
    assert message.startswith("external byte "), message
    path = message.rsplit("reproduce with: vitforge replay ", 1)[1]
    assert list(tmp_path.iterdir()) == [tmp_path / Path(path).name]       # the smallest only
    config, image, program_addr = load_replay(path)
    assert (config, program_addr) == (fuzz.FUZZ_CONFIG, 0)
    executed, _ = _golden(image)
    body = [instruction.opcode for instruction in executed[fuzz.PROLOGUE:]]
    # One GELU and DONE, with at most two instructions more: shrinking keeps a pair drawn
    # together (a host and the GELU beside it) whole, and stops where Hypothesis' shrink
    # passes find nothing smaller that fails, which depends on the draws before it.
    assert body.count(Opcode.GELU) == 1 and body[-1] == Opcode.DONE and len(body) <= 4, body


def _golden(image):
    machine, executed = Machine(fuzz.FUZZ_CONFIG, image), []
    run_program(machine, 0, executed=executed)
    return executed, bytes(machine.dram)


@pytest.mark.verilator
def test_random_programs_on_the_rtl_equal_the_golden_model_and_the_cycle_model(tmp_path):
    assert fuzz.fuzz_rtl(RTL_PROGRAMS, replay_folder=tmp_path) == RTL_PROGRAMS
    assert list(tmp_path.iterdir()) == []


def _replay_file(folder, body):
    """A replay file of the prologue and ``body`` (instructions) from fuzz's own layout."""
    drawn = []
    fuzz._search(5, fuzz.FUZZ_CONFIG, lambda program: drawn.append(program) or "")
    program = drawn[-1]
    image = fuzz.legalize(fuzz.FUZZ_CONFIG, [*program.instructions[:fuzz.PROLOGUE], *body],
                          program.image[fuzz.PROGRAM_WORDS * DRAM_WORD_BYTES:]).image
    return save_replay(folder, fuzz.FUZZ_CONFIG, image)


def test_replay_runs_a_saved_program_and_refuses_what_is_not_one(tmp_path, capsys):
    path = _replay_file(tmp_path, [(Opcode.GELU, dict(src=0, dst=8, count=4))])
    assert cli.main(["replay", str(path), "--golden-only"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("golden: 8 instructions, ") and out.endswith(" cycles predicted\n"), out
    not_replay = tmp_path / "model.npz"
    np.savez(not_replay, weights=np.zeros(3))
    assert cli.main(["replay", str(not_replay)]) == EXIT_USAGE
    assert capsys.readouterr().err == (f"vitforge: error: {not_replay} is not a replay file: "
                                       "it lacks ['config', 'image', 'program_addr']\n")
    config, image, _ = load_replay(path)
    refused = save_replay(tmp_path, config, image[:DRAM_WORD_BYTES * 4])
    assert cli.main(["replay", str(refused)]) == EXIT_USAGE
    assert capsys.readouterr().err.startswith(
        f"vitforge: error: {refused}: the golden interpreter refuses the program: ")


@pytest.mark.verilator
def test_replay_on_the_rtl_reports_agreement(tmp_path, capsys):
    path = _replay_file(tmp_path, [(Opcode.GEMM, dict(
        a_addr=0, a_stride=4, b_addr=0, b_stride=4, c_addr=40, c_stride=5, p_addr=0, k=4,
        m_tiles=2, n=5))])
    assert cli.main(["replay", str(path)]) == EXIT_OK
    assert capsys.readouterr().out.splitlines()[-1].startswith(
        "RTL == golden over the whole memory, ")
