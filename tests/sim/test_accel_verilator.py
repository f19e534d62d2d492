"""The accelerator in Verilator (through cocotb): compiled encoder blocks, bit for bit.

Every run compares the whole external memory afterwards with the golden
interpreter's, so any instruction's wrong output anywhere shows.
"""

from dataclasses import replace
import re

import numpy as np
import pytest

from vitforge.errors import SimulationError
from vitforge.hw.accel.accelerator import ERROR_NONE, ERROR_OPCODE
from vitforge.hw.accel.isa import Opcode, encode
from vitforge.sim.accel.cosim import coverify, run_rtl
from vitforge.sw.accel.compiler import compile_blocks, config_for
from vitforge.sw.golden.encoder import encoder_block, encoder_blocks
from vitforge.sw.model.random_block import random_blocks

pytestmark = pytest.mark.verilator


def make(seed, tokens, dim, heads, hidden, count):
    return random_blocks(np.random.default_rng(seed), tokens=tokens, dim=dim, heads=heads,
                         hidden=hidden, count=count)


@pytest.mark.parametrize("seed", [0, 1])
# Array 12: head dimension 16 is not a multiple of it, and its PEs are packed in pairs.
# Array 8: four steps of K per cycle on DSP cascades, 17 tokens in rows of 20 for P V.
@pytest.mark.parametrize("array, count, macs_per_dsp, k_per_cycle",
                         [(4, 2, 1, 1), (12, 1, 2, 1), (8, 1, 2, 4)])
def test_stacked_blocks_match_golden(seed, array, count, macs_per_dsp, k_per_cycle):
    x, blocks, expected = make(seed, 17, 32, 2, 128, count)
    if seed == 1:       # finer attention probabilities (1/254, 1/1016), saturating
        blocks = [replace(block, probability_shift=shift)
                  for block, shift in zip(blocks, (1, 3))]
        expected = encoder_blocks(x, blocks)
    config = replace(config_for(blocks, 17, array), macs_per_dsp=macs_per_dsp,
                     k_per_cycle=k_per_cycle)
    # Seed 1 also stores every intermediate result (trace mode) and compares it.
    program = compile_blocks(config, blocks, x, trace=seed == 1)
    report = coverify(program)
    assert (report.done, report.error) == (True, ERROR_NONE)
    assert report.match, report.mismatch
    np.testing.assert_array_equal(report.rtl_output, expected,
                                  err_msg=f"seed {seed}, array {array}")
    assert report.cycles == sum(report.class_cycles.values())
    # The cycle model (sw/accel/cycles.py) predicts every counter exactly.
    assert not report.prediction_mismatch(), report.prediction_mismatch()
    assert report.cycles == sum(report.section_cycles.values())
    assert set(report.section_cycles) >= {"input", "block 0 attention", "block 0 mlp", "output"}


def test_token_counts_change_between_programs_on_one_build():
    x, blocks, _ = make(7, 23, 32, 2, 64, 1)
    config = config_for(blocks, 23, 4)
    reports = []
    for tokens in (23, 9):
        program = compile_blocks(config, blocks, x[:tokens])
        report = coverify(program)
        assert report.match, (tokens, report.mismatch)
        np.testing.assert_array_equal(report.rtl_output, encoder_block(x[:tokens], blocks[0]))
        reports.append(report)
    first, second = reports
    # The second program ran on the first one's simulator: same build (cache key), not rebuilt.
    assert second.build_directory == first.build_directory
    assert second.build_cached and second.build_seconds == 0.0


def test_bad_opcode_is_an_error_status_and_a_hang_is_stopped(tmp_path, monkeypatch):
    import tempfile

    x, blocks, _ = make(0, 17, 32, 2, 128, 1)
    config = config_for(blocks, 17, 4)
    image = b"".join(word.to_bytes(32, "little")
                     for word in (encode(Opcode.NOP), 0x7E, encode(Opcode.DONE)))
    result, _, _, _ = run_rtl(config, image, 0, max_cycles=1000)
    assert (result["done"], result["error"], result["error_pc"]) == (True, ERROR_OPCODE, 1)
    nops = b"".join(encode(Opcode.NOP).to_bytes(32, "little") for _ in range(4))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(SimulationError, match=r"busy did not become 0 within 2000 cycles") \
            as failed:
        run_rtl(config, nops, 0, max_cycles=2000)
    # The failed run's folder is gone; its log is kept in the cache, where the message says.
    assert list(tmp_path.iterdir()) == []
    kept = re.search(r"; log (\S+/logs/\S+\.log):", str(failed.value))
    assert kept and "busy did not become 0" in open(kept[1]).read(), str(failed.value)
