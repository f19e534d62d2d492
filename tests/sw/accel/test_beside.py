"""Instructions beside a GEMM (``docs/isa.md``, Ordering): the rule, and the interpreter's
refusal of a program that breaks it."""

from dataclasses import replace

import numpy as np
import pytest

from vitforge.errors import ProgramError
from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.hw.accel.isa import Instruction, Opcode, Space, beside_refusal, encode
from vitforge.sw.accel.cycles import ISSUE_CYCLES, SIDE_START_DELAY, program_cycles, unit_cycles
from vitforge.sw.golden.accel.interpreter import Machine, run_program

#: ACT of 512 words: bank 0 is words 0..255, bank 1 words 256..511.
CONFIG = AcceleratorConfig(array=4, act_depth=512, wgt_depth=256, prm_depth=64, lnp_depth=32,
                           k_max=64)
#: Reads ACT 0..47 (bank 0), writes ACT 256..279 (bank 1).
GEMM = Instruction(Opcode.GEMM, dict(a_addr=0, a_stride=16, b_addr=0, b_stride=16,
                                     c_addr=256, c_stride=8, p_addr=0, k=16, m_tiles=3, n=8))
#: Reads ACT 300..335 (bank 1), writes ACT 100..135 (bank 0).
SOFTMAX = dict(src=300, src_stride=12, dst=100, dst_stride=12, m_tiles=3, length=12,
               ratio=1000, alpha=100, beta=40000, gamma=20000, probability_shift=1, beside=1)


def softmax(**changes):
    return Instruction(Opcode.SOFTMAX, {**SOFTMAX, **changes})


#: Reads ACT 0..35 (bank 0), writes WGT: the moves of an attention head host a softmax too.
COPY = Instruction(Opcode.COPY_TO_WGT, dict(src=0, src_stride=12, dst=0, tiles=3, words=12))
TRANSPOSE = Instruction(Opcode.TRANSPOSE_TO_WGT, dict(src=0, src_stride=12, dst=0, dst_stride=12,
                                                      token_tiles=3, channel_tiles=3))
HOSTS = "['GEMM', 'GEMM_SPARSE', 'COPY_TO_WGT', 'TRANSPOSE_TO_WGT']"
RESIDUAL_GEMM = Instruction(Opcode.GEMM, {**GEMM.fields, "residual": 1, "r_addr": 200,
                                          "r_multiplier": 3, "c_multiplier": 5, "r_shift": 2})


@pytest.mark.parametrize("host, side, refusal", [
    (GEMM, softmax(), None),
    (Instruction(Opcode.GEMM_SPARSE, {**GEMM.fields, "depth": 16}), softmax(), None),
    (Instruction(Opcode.GELU, dict(src=0, dst=0, count=4)), softmax(),
     f"the instruction before it is GELU, not one of {HOSTS}"),
    (None, softmax(), f"the instruction before it is nothing, not one of {HOSTS}"),
    (COPY, softmax(), None),
    (TRANSPOSE, softmax(), None),
    (COPY, softmax(src=40),
     "it reads ACT words 40..75 in bank 0, whose read port the COPY_TO_WGT uses "
     "(ACT words 0..35)"),
    (TRANSPOSE, softmax(dst=24),
     "it writes ACT words 24..59, which the TRANSPOSE_TO_WGT reads (ACT words 0..35)"),
    (TRANSPOSE, softmax(live=1),
     "it flags live fields, and an instruction beside a TRANSPOSE_TO_WGT runs as written"),
    (GEMM, softmax(live=1),
     "it flags live fields, and an instruction beside a GEMM runs as written"),
    (GEMM, softmax(src=250),
     "it reads ACT words 250..285, across the bank boundary 256"),
    (GEMM, softmax(src=40),
     "it reads ACT words 40..75 in bank 0, whose read port the GEMM uses (ACT words 0..47)"),
    (GEMM, softmax(dst=400),
     "it writes ACT words 400..435 in bank 1, whose write port the GEMM uses "
     "(ACT words 256..279)"),
    (GEMM, softmax(src=270),
     "it reads ACT words 270..305, which the GEMM writes (ACT words 256..279)"),
    (GEMM, softmax(dst=20),
     "it writes ACT words 20..55, which the GEMM reads (ACT words 0..47)"),
    (Instruction(Opcode.GEMM, {**GEMM.fields, "c_addr": 250}), softmax(),
     "the GEMM writes ACT words 250..273, across the bank boundary 256"),
    # A residual (ACT 200..223, bank 0) is one more read of the GEMM's; its sum takes the
    # element-wise unit.
    (RESIDUAL_GEMM, softmax(), None),
    (RESIDUAL_GEMM, softmax(dst=210),
     "it writes ACT words 210..245, which the GEMM reads (ACT words 200..223)"),
    (Instruction(Opcode.GEMM, {**RESIDUAL_GEMM.fields, "r_addr": 400}), softmax(),
     "it reads ACT words 300..335 in bank 1, whose read port the GEMM uses "
     "(ACT words 400..423)"),
    (RESIDUAL_GEMM, Instruction(Opcode.ADD, dict(x=300, y=320, dst=100, count=8,
                                                  x_multiplier=1, y_multiplier=1, shift=0,
                                                  beside=1)),
     "the GEMM adds its residual on the element-wise unit, which ADD needs"),
    (GEMM, Instruction(Opcode.ADD, dict(x=300, y=320, dst=100, count=8, x_multiplier=1,
                                        y_multiplier=1, shift=0, beside=1)), None),
])
def test_the_rule_names_what_is_wrong(host, side, refusal):
    assert beside_refusal(host, side, CONFIG.array, CONFIG.act_bank_start) == refusal


def test_one_bank_refuses_every_pair():
    config = replace(CONFIG, act_banks=1)
    assert config.act_bank_start is None
    assert beside_refusal(GEMM, softmax(), config.array, config.act_bank_start) == \
        "ACT has one bank (act_banks=1), so the GEMM's ports are the only ones"


def test_bank_start_is_the_largest_power_of_two_below_the_depth():
    starts = {depth: replace(CONFIG, act_depth=depth, k_max=1).act_bank_start
              for depth in (2, 3, 4, 512, 513, 17_408, 20_480)}
    assert starts == {2: 1, 3: 2, 4: 2, 512: 256, 513: 512, 17_408: 16_384, 20_480: 16_384}


def _image(*instructions):
    words = [encode(Opcode.LOAD, space=Space.ACT, spad_addr=0, count=CONFIG.act_depth,
                    dram_addr=64),
             *(encode(item.opcode, **item.fields) for item in instructions),
             encode(Opcode.DONE)]
    program = b"".join(word.to_bytes(32, "little") for word in words).ljust(64 * 16, b"\0")
    rng = np.random.default_rng(5)
    return program + rng.integers(0, 256, CONFIG.act_depth * 16, np.uint8).tobytes()


def test_the_interpreter_refuses_a_program_that_breaks_the_ordering_rules():
    """The SOFTMAX reads the scores the GEMM beside it is writing: the hardware would read
    them before they are written, so the interpreter, which defines the result, refuses."""
    image = _image(GEMM, softmax(src=256))
    with pytest.raises(ProgramError, match=r"^instruction 2 \(SOFTMAX\): its beside field asks "
                       r"to run beside the instruction before it, but it reads ACT words "
                       r"256\.\.291, which the GEMM writes \(ACT words 256\.\.279\)$"):
        run_program(Machine(CONFIG, image), 0)
    # Without the flag the same instructions run one after another, which is their meaning.
    run_program(Machine(CONFIG, _image(GEMM, softmax(src=256, beside=0))), 0)


def test_a_flagged_pair_means_what_it_means_in_order_and_hides_the_side_cycles():
    flagged, plain = (Machine(CONFIG, _image(GEMM, softmax(beside=flag))) for flag in (1, 0))
    for machine in (flagged, plain):
        run_program(machine, 0)
    np.testing.assert_array_equal(flagged.act, plain.act)
    program = [Instruction(Opcode.LOAD, dict(space=Space.ACT, spad_addr=0, count=512,
                                             dram_addr=64)), GEMM]
    done = Instruction(Opcode.DONE, {})
    together = program_cycles(CONFIG, [*program, softmax(), done])
    apart = program_cycles(CONFIG, [*program, softmax(beside=0), done])
    side = unit_cycles(CONFIG, softmax())
    stall = max(0, SIDE_START_DELAY + side - unit_cycles(CONFIG, GEMM))
    assert together.side_cycles["softmax"] == side - stall
    assert together.class_cycles["softmax"] == 0
    assert together.class_cycles["stall"] == stall
    assert apart.class_cycles["softmax"] == side
    # Apart, the SOFTMAX issues on its own; DONE is fetched ahead either way (by the
    # SOFTMAX as a host, or by the GEMM's look-up of a load beside it and the SOFTMAX).
    assert apart.cycles - together.cycles == side - stall + ISSUE_CYCLES


def test_the_documented_start_delay_is_the_model_s():
    from pathlib import Path

    text = (Path(__file__).parents[3] / "docs" / "isa.md").read_text()
    assert f"`SIDE_START_DELAY` = {SIDE_START_DELAY} cycles" in text
