"""Compiled programs on the golden interpreter == the directly computed integer encoder block."""

from dataclasses import replace

import numpy as np
import pytest

from vitforge.errors import ProgramError
from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.hw.accel.isa import Opcode, Space, encode
from vitforge.sw.accel.compiler import compile_blocks
from vitforge.sw.golden.accel.interpreter import Machine, run_program
from vitforge.sw.golden.encoder import encoder_block
from vitforge.sw.model.random_block import random_blocks


def make_blocks(seed, tokens, dim, heads, hidden, count):
    x, blocks, _ = random_blocks(np.random.default_rng(seed), tokens=tokens, dim=dim,
                                 heads=heads, hidden=hidden, count=count)
    return x, blocks


def reference(x, blocks):
    for block in blocks:
        x = encoder_block(x, block)
    return x


def run(config, program):
    machine = Machine(config, program.image)
    run_program(machine, program.program_addr)
    return program.read_output(machine.dram)


@pytest.mark.parametrize("act_banks", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("array, blocks_count", [(4, 2), (8, 1), (16, 1), (6, 1), (12, 1)])
def test_program_equals_reference_block(seed, array, blocks_count, act_banks):
    x, blocks = make_blocks(seed, 17, 32, 2, 128, blocks_count)
    config = AcceleratorConfig(array=array, act_depth=4096, wgt_depth=4096, prm_depth=1024,
                               lnp_depth=256, k_max=256, act_banks=act_banks)
    program = compile_blocks(config, blocks, x)
    assert program.overlap == (act_banks == 2)      # two banks: the heads overlap
    expected = reference(x, blocks)
    np.testing.assert_array_equal(run(config, program), expected,
                                  err_msg=f"seed {seed}, array {array}, {act_banks} banks")
    assert np.abs(expected).max() > 20 and np.unique(expected).size > 50   # not degenerate


def test_fc1_runs_with_its_gelu_in_the_write_back():
    """GELU costs no instruction: each FC1 GEMM (every column chunk) writes through the GELU
    table, the only GEMMs that do, and the program still equals the reference."""
    config = AcceleratorConfig(array=4, act_depth=4096, wgt_depth=4096, prm_depth=1024,
                               lnp_depth=256, k_max=256)
    x, blocks = make_blocks(3, 17, 32, 2, 128, 2)
    program = compile_blocks(config, blocks, x)
    opcodes = [opcode for opcode, _ in program.instructions]
    assert Opcode.GELU not in opcodes
    with_gelu = {section for (opcode, fields), section in zip(program.instructions,
                                                              program.sections)
                 if opcode == Opcode.GEMM and fields["gelu"]}
    assert with_gelu == {"block 0 mlp", "block 1 mlp"}
    # The chunks of the two FC1 layers cover their 128 hidden channels once.
    assert sum(fields["n"] for opcode, fields in program.instructions
               if opcode == Opcode.GEMM and fields["gelu"]) == 2 * 128
    np.testing.assert_array_equal(run(config, program), reference(x, blocks))


def test_token_count_is_a_program_operand():
    config = AcceleratorConfig(array=4, act_depth=4096, wgt_depth=4096, prm_depth=1024,
                               lnp_depth=256, k_max=256)
    x, blocks = make_blocks(5, 23, 32, 2, 64, 1)
    for tokens in (23, 9, 1):
        program = compile_blocks(config, blocks, x[:tokens])
        np.testing.assert_array_equal(run(config, program), reference(x[:tokens], blocks),
                                      err_msg=f"{tokens} tokens")


def test_weights_that_load_longer_than_the_gemm_before_them_are_cut_into_chunks():
    """Two token tiles on a 32-lane array: a 64-wide weight entry is four external words, so
    a load outlasts the GEMM beside it; the layers run as column chunks, same result."""
    from vitforge.sw.gemm.plan import command_cycles
    from vitforge.hw.gemm.descriptor import GemmDescriptor

    config = AcceleratorConfig(array=32, act_depth=4096, wgt_depth=16384, prm_depth=2048,
                               lnp_depth=256, k_max=512)
    x, blocks = make_blocks(6, 40, 64, 2, 256, 2)
    program = compile_blocks(config, blocks, x)
    np.testing.assert_array_equal(run(config, program), reference(x, blocks))
    instructions = program.instructions
    gemms = [index for index, (opcode, _) in enumerate(instructions) if opcode == Opcode.GEMM]
    assert len(gemms) > 2 * (2 + 2 * 2 + 2 + 1)         # more than one GEMM per layer
    for index in gemms:
        following, fields = instructions[index + 1]
        if following != Opcode.LOAD or fields["space"] != Space.WGT:
            continue
        cycles = command_cycles(config.gemm, GemmDescriptor.from_fields(instructions[index][1]))
        # A chunk loads in at most the GEMM beside it plus one tile of columns.
        assert config.weight_words(fields["count"]) <= cycles + 512 * 2, (index, fields)


def test_where_a_tiles_gemm_is_shorter_than_its_load_the_chunks_keep_every_gemm_busy():
    """One token tile on an 8-lane array taking two steps of K per cycle: a column tile's
    GEMM takes half its load. The layers still run as column chunks (same result), and each
    chunk's GEMM hosts the load of the next chunk of its layer at least as long as itself,
    so no GEMM time goes unused while the weights are the bottleneck."""
    config = AcceleratorConfig(array=8, act_depth=4096, wgt_depth=4096, prm_depth=1024,
                               lnp_depth=256, k_max=512, macs_per_dsp=2, k_per_cycle=2)
    x, blocks = make_blocks(7, 8, 64, 2, 256, 1)
    program = compile_blocks(config, blocks, x)
    np.testing.assert_array_equal(run(config, program), reference(x, blocks))
    instructions = program.instructions
    gemms = [index for index, (opcode, _) in enumerate(instructions) if opcode == Opcode.GEMM]
    hosts = 0
    for index in gemms:
        host = instructions[index][1]
        (following, load), (after, chunk) = instructions[index + 1:index + 3]
        if following != Opcode.LOAD or after != Opcode.GEMM or chunk["a_addr"] != host["a_addr"]:
            continue                    # not a load of the next chunk of the same layer
        issues = host["m_tiles"] * -(-host["n"] // 8) * max(-(-host["k"] // 2), 8)
        assert config.weight_words(load["count"]) >= issues, (index, host, load)
        hosts += 1
    assert hosts >= 4, f"{hosts} chunks of a layer loaded beside the chunk before them"


def test_deit_tiny_block_runs_quickly():
    import time
    x, blocks = make_blocks(0, 197, 192, 3, 768, 1)
    config = AcceleratorConfig()
    program = compile_blocks(config, blocks, x)
    started = time.perf_counter()
    output = run(config, program)
    elapsed = time.perf_counter() - started
    np.testing.assert_array_equal(output, reference(x, blocks))
    assert program.macs == 197 * 192 * 576 + 3 * 2 * 197 * 197 * 64 + 197 * 192 * 192 \
        + 2 * 197 * 192 * 768
    assert elapsed < 2.0      # goal 0.2 s, measured in bench; generous for a loaded CI machine


@pytest.mark.parametrize("config, message", [
    # 5 token tiles, by liveness: mlp (640) and qkv (480) from 0, context (160) after qkv,
    # x, normalized and sublayer (160 each) after mlp, then scores needs 1120..1204.
    (dict(act_depth=1000), r"^activation region scores needs ACT words 1120\.\.1204, "
                           r"beyond act_depth=1000$"),
    (dict(wgt_depth=512), r"^block 0 qkv needs 768 WGT words, but half of wgt_depth=512 "
                          r"holds 256$"),
    # Proj and fc2 add the residuals, so fc1's parameters load with attention's: qkv 96 +
    # proj 32 + score 17 + context 16 = 161 entries, and fc1's 128 overflow.
    (dict(prm_depth=192), r"^block 0 fc1 params needs PRM words 161\.\.288, beyond "
                          r"prm_depth=192$"),
    (dict(k_max=100), r"^hidden 128 exceeds k_max=100: a GEMM reduces over it$"),
    (dict(array=72), r"^array must be at most 64 \(the widest array vitforge builds\), "
                     r"not 72$"),
])
def test_shapes_that_do_not_fit_are_rejected(config, message):
    x, blocks = make_blocks(0, 17, 32, 2, 128, 1)
    settings = dict(array=4, act_depth=4096, wgt_depth=4096, prm_depth=1024, lnp_depth=256,
                    k_max=256)
    settings.update(config)
    with pytest.raises(ValueError, match=message):
        compile_blocks(AcceleratorConfig(**settings), blocks, x)


CONFIG = AcceleratorConfig(array=4, act_depth=64, wgt_depth=64, prm_depth=16, lnp_depth=16,
                           k_max=32)


def machine_with(*words):
    image = b"".join(word.to_bytes(32, "little") for word in words)
    return Machine(CONFIG, image)


@pytest.mark.parametrize("words, message", [
    ([0x7E], r"^instruction 0: unknown opcode 0x7e$"),
    ([encode(Opcode.GELU, src=60, dst=0, count=8)],
     r"^instruction 0 \(GELU\): ACT words 60\.\.67 \(src\) are beyond its depth 64$"),
    ([encode(Opcode.LOAD, space=Space.ACT, dram_addr=100, spad_addr=0, count=4)],
     r"^instruction 0 \(LOAD\): external words 100\.\.103 are beyond the image \(2 words\)$"),
    ([encode(Opcode.LOAD, space=7, dram_addr=0, spad_addr=0, count=1)],
     r"^instruction 0 \(LOAD\): unknown space 7$"),
    ([encode(Opcode.GEMM, a_addr=0, a_stride=4, b_addr=0, b_stride=4, c_addr=2, c_stride=4,
             p_addr=0, k=4, m_tiles=1, n=4)],
     r"^instruction 0 \(GEMM\): result words 2\.\.5 overlap operand A's words 0\.\.3$"),
    # B from ACT (b_act) is an operand the result must not overwrite either.
    ([encode(Opcode.GEMM, a_addr=0, a_stride=4, b_addr=8, b_stride=4, c_addr=10, c_stride=4,
             p_addr=0, k=4, m_tiles=1, n=4, b_act=1)],
     r"^instruction 0 \(GEMM\): result words 10\.\.13 overlap operand B's words 8\.\.11$"),
    ([encode(Opcode.GEMM, a_addr=0, a_stride=4, b_addr=0, b_stride=40, c_addr=8, c_stride=4,
             p_addr=0, k=40, m_tiles=1, n=4)],
     r"^instruction 0 \(GEMM\): descriptor field k must be at most k_max=32, not 40$"),
    ([encode(Opcode.NOP)], r"^instruction 1: program runs past the image without DONE$"),
    # exp_q15(0) = (2751 * 32768**2 >> 31) + 0 = 1375: a row's sum could be below 2**14,
    # where the hardware's reciprocal overflows (found by the differential fuzzer).
    ([encode(Opcode.SOFTMAX, src=0, src_stride=0, dst=8, dst_stride=0, m_tiles=1, length=1,
             ratio=1, alpha=2751, beta=1 << 15, gamma=0, probability_shift=0)],
     r"^instruction 0 \(SOFTMAX\): exp_q15\(0\) = \(\(alpha \* beta\*\*2\) >> 31\) \+ gamma "
     r"must lie in \[2\*\*14, 2\*\*16\), not 1375$"),
    ([encode(Opcode.SOFTMAX, src=0, src_stride=0, dst=8, dst_stride=0, m_tiles=1, length=1,
             ratio=1, alpha=0xFFFF, beta=0xFFFF, gamma=0, probability_shift=0)],
     r"^instruction 0 \(SOFTMAX\): exp_q15\(0\) = .* not 131066$"),        # above 16 bits
    # The second tile's results overwrite its source before the output pass reads it
    # again (found by the differential fuzzer), and tiles in place that overlap.
    ([encode(Opcode.LAYERNORM, src=20, src_stride=6, dst=15, dst_stride=12, m_tiles=2,
             channels=8, lnp_addr=0, eps=0, multiplier=1, shift=0)],
     r"^instruction 0 \(LAYERNORM\): its result must be in place \(dst = src, dst_stride = "
     r"src_stride, tiles apart\) or overlap none of its source words$"),
    ([encode(Opcode.SOFTMAX, src=0, src_stride=2, dst=0, dst_stride=2, m_tiles=2, length=4,
             ratio=1, alpha=0, beta=1 << 15, gamma=1 << 14, probability_shift=0)],
     r"^instruction 0 \(SOFTMAX\): its result must be in place"),
])
def test_malformed_programs_are_rejected_with_their_location(words, message):
    with pytest.raises(ProgramError, match=message):
        run_program(machine_with(*words), 0)


def piece(src, m_tiles=1, *, carry=0, resume=0, gamma=1 << 14):
    """A SOFTMAX of rows of 4 words, tiles 4 words apart, from ``src`` to ``32 + src``."""
    return encode(Opcode.SOFTMAX, src=src, src_stride=4, dst=32 + src, dst_stride=4,
                  m_tiles=m_tiles, length=4, ratio=1, alpha=0, beta=1 << 15, gamma=gamma,
                  probability_shift=0, carry=carry, resume=resume)


def test_pieces_that_resume_compute_the_whole_softmax():
    rng = np.random.default_rng(7)
    machines = [machine_with(*words, encode(Opcode.DONE)) for words in (
        [piece(0, carry=1), piece(4, 2, carry=1, resume=1), piece(12, resume=1)], [piece(0, 4)])]
    for machine in machines:
        machine.act[:16] = rng.integers(-128, 128, (16, 4)) if machine is machines[0] \
            else machines[0].act[:16]
        run_program(machine, 0)
    np.testing.assert_array_equal(machines[0].act, machines[1].act)


@pytest.mark.parametrize("words, message", [
    ([piece(0, resume=1)], r"that one did not set carry \(or there was none\)$"),
    ([piece(0, carry=1), piece(0, 2), piece(8, resume=1)], r"that one did not set carry"),
    ([piece(0, carry=1), piece(8, resume=1)],
     r"instruction 0 carried the maxima of ACT words 4\.\.7, not of src=8 and length=4$"),
    ([piece(0, carry=1), piece(4, resume=1, gamma=(1 << 14) + 1)],
     r"instruction 0 filled the exp table for ExpParams\(.*gamma=16384\), this one asks for "
     r"ExpParams\(.*gamma=16385\)$"),
    ([piece(0, carry=1), encode(Opcode.LOAD, space=Space.ACT, dram_addr=0, spad_addr=6,
                                count=1), piece(4, resume=1)],
     r"ACT words 4\.\.7 changed after instruction 0 found their maxima$"),
])
def test_a_resume_the_softmax_before_it_did_not_prepare_is_refused(words, message):
    """A SOFTMAX that resumes must follow, with no SOFTMAX between, one that carried the
    maxima of its first tile, with the same exp table, and the words must not have changed."""
    machine = machine_with(*words)
    machine.act[:16] = np.arange(64).reshape(16, 4) % 7
    index = len(words) - 1
    with pytest.raises(ProgramError, match=rf"^instruction {index} \(SOFTMAX\): its resume "
                                           rf"field asks for the maxima and exp table of the "
                                           rf"SOFTMAX before it, but {message}"):
        run_program(machine, 0)


def test_carry_needs_the_second_read_port_and_its_tile_in_act():
    one_port = Machine(replace(CONFIG, act_read_ports=1), piece(0, carry=1).to_bytes(32, "little"))
    with pytest.raises(ProgramError, match=r"^instruction 0 \(SOFTMAX\): carry and resume need "
                                           r"a second ACT read port \(act_read_ports=2\), not 1$"):
        run_program(one_port, 0)
    # Rows at 48..63, results at 0..15: the tile carried after them would be 64..67.
    carried_out = encode(Opcode.SOFTMAX, src=48, src_stride=4, dst=0, dst_stride=4, m_tiles=4,
                         length=4, ratio=1, alpha=0, beta=1 << 15, gamma=1 << 14,
                         probability_shift=0, carry=1)
    with pytest.raises(ProgramError, match=r"^instruction 0 \(SOFTMAX\): ACT words 48\.\.67 "
                                           r"\(src\) are beyond its depth 64$"):
        run_program(machine_with(carried_out), 0)


def test_b_from_act_equals_b_from_wgt_and_needs_the_second_read_port():
    """A GEMM with ``b_act`` reads B's words from ACT, laid out as in WGT: the result
    equals the same GEMM on a copy of them in WGT. One ACT read port refuses it."""
    rng = np.random.default_rng(7)
    fields = dict(a_addr=0, a_stride=6, b_stride=6, c_addr=40, c_stride=8, p_addr=0, k=6,
                  m_tiles=2, n=8)
    machines = [machine_with(encode(Opcode.GEMM, b_addr=b_addr, b_act=b_act, **fields),
                             encode(Opcode.DONE)) for b_addr, b_act in ((16, 1), (0, 0))]
    for machine in machines:
        machine.act[:28] = rng.integers(-128, 128, (28, 4)) if machine is machines[0] \
            else machines[0].act[:28]
        machine.bias[:8], machine.multiplier[:8], machine.shift[:8] = 5, 1 << 14, 20
    machines[1].wgt[:12] = machines[0].act[16:28]
    for machine in machines:
        run_program(machine, 0)
    np.testing.assert_array_equal(machines[0].act[40:56], machines[1].act[40:56],
                                  err_msg="B from ACT against B from WGT, seed 7")
    assert np.any(machines[0].act[40:56] != 0)
    one_port = Machine(replace(CONFIG, act_read_ports=1), encode(
        Opcode.GEMM, b_addr=16, b_act=1, **fields).to_bytes(32, "little"))
    with pytest.raises(ProgramError, match=r"^instruction 0 \(GEMM\): b_act needs a second ACT "
                                           r"read port \(act_read_ports=2\), not 1$"):
        run_program(one_port, 0)


def test_a_program_that_never_finishes_is_stopped():
    nops = [encode(Opcode.NOP)] * 4
    with pytest.raises(ProgramError, match=r"^no DONE within 3 instructions$"):
        run_program(machine_with(*nops), 0, max_instructions=3)


def test_trace_mode_keeps_the_result_and_locates_a_wrong_instruction():
    from vitforge.sim.accel.cosim import describe_mismatch

    x, blocks = make_blocks(2, 17, 32, 2, 128, 1)
    config = AcceleratorConfig(array=4, act_depth=4096, wgt_depth=4096, prm_depth=1024,
                               lnp_depth=256, k_max=256)
    program = compile_blocks(config, blocks, x, trace=True)
    machine = Machine(config, program.image)
    run_program(machine, program.program_addr)
    np.testing.assert_array_equal(program.read_output(machine.dram), reference(x, blocks))
    assert describe_mismatch(program, machine.dram, machine.dram) == ""
    softmax = next(t for t in program.trace
                   if t.opcode == Opcode.SOFTMAX and t.words >= 3 * t.stride)
    corrupted = machine.dram.copy()
    # Tile 2, column 5, lane 3 of the result of the first softmax (piece) of 3 tiles or more.
    offset = (softmax.dram_addr + 2 * softmax.stride + 5) * 16 + 3
    corrupted[offset] ^= 0x40
    message = describe_mismatch(program, corrupted, machine.dram)
    assert message.startswith(f"instruction {softmax.index} (SOFTMAX): tile 2, column 5, "
                              f"lane 3 (row 11 of its result): RTL "), message
    assert "1 bytes differ in all" in message
