"""The accelerator in Amaranth's simulator: a small compiled block, and error statuses."""

from dataclasses import replace

import numpy as np
import pytest

from vitforge.errors import WatchdogError
from vitforge.hw.accel.accelerator import ERROR_EMPTY, ERROR_LIVE, ERROR_NONE, ERROR_OPCODE
from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.hw.accel.isa import ISA, Instruction, Opcode, Space, encode
from vitforge.sim.accel.session import run_system
from vitforge.sim.accel.system import SimulatedSystem
from vitforge.sim.pins import run_in_amaranth
from vitforge.sw.accel.compiler import compile_blocks, config_for
from vitforge.sw.accel.cycles import SIDE_START_DELAY, program_cycles
from vitforge.sw.golden.accel.interpreter import Machine, run_program
from vitforge.sw.golden.encoder import encoder_block
from vitforge.sw.model.random_block import random_block, random_tokens

SMALL = AcceleratorConfig(array=4, act_depth=256, wgt_depth=256, prm_depth=64, lnp_depth=32,
                          k_max=64)


def simulate(config, image, program_addr, max_cycles=100_000):
    words = max(len(image) // 16, 16)
    return run_in_amaranth(SimulatedSystem(config, words), lambda pins: run_system(
        pins, image, program_addr, memory_words=words, max_cycles=max_cycles))


def program_image(*instructions):
    return b"".join(word.to_bytes(32, "little") for word in instructions)


@pytest.mark.parametrize("seed, heads, overrides", [
    (3, 1, {"act_read_ports": 2}),
    (3, 1, {"act_read_ports": 1}),
    # DSP cascades: interleaved ACT and WGT, aligned GEMM operands; 5 tokens, so P V reads
    # padded rows.
    (4, 2, {"macs_per_dsp": 2, "k_per_cycle": 2}),
    (4, 2, {"macs_per_dsp": 2, "k_per_cycle": 4}),
])
def test_small_block_equals_the_interpreter_byte_for_byte(seed, heads, overrides):
    rng = np.random.default_rng(seed)
    x = random_tokens(rng, 5, 16)
    block = random_block(rng, dim=16, heads=heads, hidden=32, calibration=x)
    config = replace(config_for([block], 5, 4), **overrides)
    program = compile_blocks(config, [block], x)
    machine = Machine(config, program.image)
    run_program(machine, program.program_addr)
    result = simulate(config, program.image, program.program_addr)
    assert (result.done, result.error) == (True, ERROR_NONE)
    np.testing.assert_array_equal(np.frombuffer(result.dram, np.uint8), machine.dram,
                                  err_msg=f"seed {seed}, {overrides}: external memory, "
                                          f"RTL vs golden")
    np.testing.assert_array_equal(program.read_output(result.dram), encoder_block(x, block))
    assert result.cycles == sum(result.class_cycles.values())
    # One head's softmax runs alone; with two, each runs beside a GEMM.
    softmax = result.class_cycles if heads == 1 else result.side_cycles
    assert result.class_cycles["gemm"] > 0 and softmax["softmax"] > 0
    predicted = program_cycles(config, program.instructions)
    assert (result.cycles, result.class_cycles) == (predicted.cycles, predicted.class_cycles)


def test_one_activation_read_port_costs_add_one_cycle_per_word():
    words = 8
    image = program_image(encode(Opcode.ADD, x=0, y=16, dst=32, count=words, x_multiplier=1,
                                 y_multiplier=1, shift=0), encode(Opcode.DONE))
    cycles = {}
    for ports in (2, 1):
        result = simulate(replace(SMALL, act_read_ports=ports), image, 0)
        assert (result.done, result.error) == (True, ERROR_NONE)
        cycles[ports] = result.class_cycles["eltwise"]
    assert cycles[1] - cycles[2] == words


@pytest.mark.parametrize("instructions, error, pc", [
    ([encode(Opcode.NOP), 0x7E], ERROR_OPCODE, 1),
    ([int(Opcode.GEMM_SPARSE)], ERROR_EMPTY, 0),            # no longer reserved: k = 0
    # Zero tables keep every token: T = 9, three tiles of 4 words > the 8 words written.
    ([encode(Opcode.TOKEN_SELECT, src=0, src_stride=1, dst=40, dst_stride=1, channels=1,
             scores=20, scores_stride=1, weights=30, heads=1, tokens=9, alive=8, keep=0, mode=0),
      encode(Opcode.GELU, src=0, dst=50, count=8, tile_words=4, live=1)], ERROR_LIVE, 1),
    ([encode(Opcode.GELU, src=0, dst=50, count=8, tile_words=4, live=1)], ERROR_EMPTY, 0),
    ([encode(Opcode.GELU, src=0, dst=0, count=0)], ERROR_EMPTY, 0),
    ([encode(Opcode.SYNC), encode(Opcode.GEMM, a_addr=0, a_stride=4, b_addr=0, b_stride=4,
                                  c_addr=8, c_stride=4, p_addr=0, k=4, m_tiles=0, n=4)],
     ERROR_EMPTY, 1),
])
def test_malformed_instructions_end_with_an_error_status(instructions, error, pc):
    result = simulate(SMALL, program_image(*instructions, encode(Opcode.DONE)), 0)
    assert (result.done, result.error, result.error_pc) == (True, error, pc)


def test_program_without_done_trips_the_watchdog():
    with pytest.raises(WatchdogError, match=r"^busy did not become 0 within 300 cycles$"):
        simulate(SMALL, program_image(*[encode(Opcode.NOP)] * 4), 0, max_cycles=300)


def test_arrays_above_16_use_entries_of_two_external_words():
    """array = 20: LOAD gathers two words per entry, STORE writes two, and a block still
    equals the interpreter byte for byte (GEMM, softmax and LayerNorm on 20 lanes)."""
    seed = 4
    rng = np.random.default_rng(seed)
    x = random_tokens(rng, 23, 40)
    block = random_block(rng, dim=40, heads=2, hidden=80, calibration=x)
    config = config_for([block], 23, 20)
    assert config.act_entry_words == 2
    program = compile_blocks(config, [block], x)
    machine = Machine(config, program.image)
    run_program(machine, program.program_addr)
    result = simulate(config, program.image, program.program_addr, max_cycles=200_000)
    assert (result.done, result.error) == (True, ERROR_NONE)
    np.testing.assert_array_equal(np.frombuffer(result.dram, np.uint8), machine.dram,
                                  err_msg=f"seed {seed}: external memory, RTL vs golden")
    np.testing.assert_array_equal(program.read_output(result.dram), encoder_block(x, block))


#: Each SIDE_ROWS opcode reading bank 1 and writing bank 0 of SMALL (ACT 256: banks at 128),
#: beside a GEMM that reads bank 0 (words 0..29) and writes bank 1 (words 128..151).
BESIDE = {
    Opcode.SOFTMAX: dict(src=160, src_stride=12, dst=40, dst_stride=12, m_tiles=3, length=12,
                         ratio=1000, alpha=100, beta=40000, gamma=20000, probability_shift=1),
    Opcode.LAYERNORM: dict(src=160, src_stride=8, dst=40, dst_stride=8, m_tiles=2, channels=8,
                           lnp_addr=0, eps=3, multiplier=3000, shift=12),
    Opcode.GELU: dict(src=160, dst=40, count=20),
    Opcode.ADD: dict(x=160, y=200, dst=40, count=20, x_multiplier=700, y_multiplier=900,
                     shift=10),
}


#: Hosts reading bank 0 (words 0..29 at most) and writing bank 1 or WGT.
HOSTS = {
    Opcode.GEMM: dict(a_addr=0, a_stride=10, b_addr=0, b_stride=10, c_addr=128, c_stride=8,
                      p_addr=0, k=10, m_tiles=3, n=8),
    Opcode.COPY_TO_WGT: dict(src=0, src_stride=10, dst=64, tiles=3, words=10),
    Opcode.TRANSPOSE_TO_WGT: dict(src=0, src_stride=10, dst=64, dst_stride=8, token_tiles=2,
                                  channel_tiles=2),
}


def loads(*spaces):
    """LOADs of ``(space, count)`` words each from external word 32, where the data is."""
    return [Instruction(Opcode.LOAD, dict(space=space, spad_addr=0, count=count, dram_addr=32))
            for space, count in spaces]


def run_against_the_models(config, instructions, seed, what):
    """``instructions``, then a STORE of all ACT and DONE, on data of ``seed``, in Amaranth:
    external memory byte for byte as the golden interpreter leaves it, and the cycles, per
    class and beside a host, as the cycle model predicts. Returns the run."""
    data = np.random.default_rng(seed).integers(0, 256, 256 * 16, np.uint8).tobytes()
    instructions = [*instructions,
                    Instruction(Opcode.STORE, dict(spad_addr=0, dram_addr=32, count=256)),
                    Instruction(Opcode.DONE, {})]
    image = program_image(*(encode(item.opcode, **item.fields) for item in instructions))
    image = image.ljust(32 * 16, b"\0") + data
    machine = Machine(config, image)
    run_program(machine, 0)
    result = simulate(config, image, 0)
    predicted = program_cycles(config, instructions)
    assert (result.done, result.error) == (True, ERROR_NONE)
    np.testing.assert_array_equal(np.frombuffer(result.dram, np.uint8), machine.dram,
                                  err_msg=f"{what}: external memory, RTL vs golden")
    assert (result.cycles, result.class_cycles, result.side_cycles) == \
        (predicted.cycles, predicted.class_cycles, predicted.side_cycles)
    return result


def moved_weights(host):
    """After a move, a GEMM that reads the WGT words it wrote (64..79) into ACT 224..239:
    STORE shows only ACT."""
    if host == Opcode.GEMM:
        return []
    return [Instruction(Opcode.GEMM, dict(a_addr=0, a_stride=8, b_addr=64, b_stride=8,
                                          c_addr=224, c_stride=8, p_addr=0, k=8, m_tiles=2,
                                          n=8))]


@pytest.mark.parametrize("host, opcode", [
    *((Opcode.GEMM, opcode) for opcode in BESIDE),
    (Opcode.COPY_TO_WGT, Opcode.SOFTMAX), (Opcode.TRANSPOSE_TO_WGT, Opcode.SOFTMAX),
    (Opcode.TRANSPOSE_TO_WGT, Opcode.ADD)])
@pytest.mark.parametrize("act_read_ports", [2, 1])
def test_a_row_instruction_beside_a_host_equals_the_interpreter_and_the_cycle_model(
        host, opcode, act_read_ports):
    """Two units at once on the two ACT banks: memory byte for byte as the interpreter
    leaves it (ACT and WGT stored at the end), and cycles, per class and beside the host
    too, as the cycle model predicts (the side's own cycles hidden behind the host's, and
    counted as such). Beside a GELU the GEMM writes through its own GELU table, so both
    copies are read at once."""
    config = replace(SMALL, act_read_ports=act_read_ports)
    seed = 6
    result = run_against_the_models(config, [
        *loads((Space.ACT, 256), (Space.WGT, 256), (Space.PRM, 64), (Space.LNP, 32),
               (Space.TBL, 16)),
        Instruction(host, dict(HOSTS[host], **({"gelu": 1} if opcode == Opcode.GELU else {}))),
        Instruction(opcode, dict(BESIDE[opcode], beside=1)),
        *moved_weights(host)], seed, f"seed {seed}: {opcode.name} beside {host.name}")
    assert result.side_cycles[ISA[opcode].counter] > 0
    assert result.class_cycles[ISA[opcode].counter] == 0


@pytest.mark.parametrize("words, side", [(1, None), (3, Opcode.SOFTMAX), (1, Opcode.ADD)])
def test_a_move_shorter_than_its_look_ahead_retires_after_it(words, side):
    """A host fetches the next instruction ahead and checks it (``SIDE_START_DELAY`` cycles,
    counted to its class) before it retires, however soon its unit is done: a copy of one
    word takes 4 cycles, but retires after 11 (or when the instruction beside it is done).
    Cycles per class and beside as the cycle model predicts (the RTL fuzz found the model
    short by 6 cycles here)."""
    instructions = [*loads((Space.ACT, 256), (Space.TBL, 16)),
                    Instruction(Opcode.COPY_TO_WGT, dict(src=0, src_stride=words, dst=0, tiles=1,
                                                         words=words))]
    if side is not None:
        instructions.append(Instruction(side, dict(BESIDE[side], beside=1)))
    result = run_against_the_models(SMALL, instructions, 7,
                                    f"COPY_TO_WGT of {words} words, {side} beside")
    assert result.class_cycles["move"] == SIDE_START_DELAY


#: The instructions after a load beside a host that read what it loaded: a LayerNorm on LNP
#: words 8..15 and a GEMM on PRM words 8..15.
READ_RELOADED = [Instruction(Opcode.LAYERNORM, dict(BESIDE[Opcode.LAYERNORM], lnp_addr=8,
                                                    dst=80)),
                 Instruction(Opcode.GEMM, dict(HOSTS[Opcode.GEMM], p_addr=8, c_addr=192))]


@pytest.mark.parametrize("host, space, spad_addr, count, beside", [
    (Opcode.LAYERNORM, Space.LNP, 8, 24, True),
    (Opcode.LAYERNORM, Space.LNP, 4, 8, False),      # LNP words 4..7, which it reads
    (Opcode.LAYERNORM, Space.PRM, 0, 64, True),
    (Opcode.ADD, Space.LNP, 0, 32, True),
    (Opcode.SOFTMAX, Space.WGT, 0, 128, True),
    (Opcode.GEMM, Space.PRM, 8, 56, True),
    (Opcode.GEMM, Space.PRM, 4, 8, False),           # PRM words 4..7, which it reads
    (Opcode.ADD, Space.TBL, 0, 16, False),           # the GELU table: never beside
])
def test_a_load_beside_a_gemm_or_a_row_instruction_equals_the_interpreter_and_the_cycle_model(
        host, space, spad_addr, count, beside):
    """A LOAD right after a GEMM or a row instruction runs beside it when it fills only
    WGT, IDX, PRM or LNP words that the host does not read, and after it otherwise: memory
    byte for byte as the interpreter leaves it (the instructions after it read the words it
    loaded, from other external words than the first loads), cycles as the model predicts."""
    seed = 8
    fields = HOSTS[host] if host in HOSTS else BESIDE[host]
    result = run_against_the_models(SMALL, [
        *loads((Space.ACT, 256), (Space.WGT, 256), (Space.PRM, 64), (Space.LNP, 32),
               (Space.TBL, 16)),
        Instruction(host, fields),
        Instruction(Opcode.LOAD, dict(space=space, spad_addr=spad_addr, count=count,
                                      dram_addr=100)),
        *READ_RELOADED], seed, f"seed {seed}: LOAD of {space.name} beside {host.name}")
    assert (result.side_cycles["load_store"] > 0) == beside


@pytest.mark.parametrize("opcode", [Opcode.LAYERNORM, Opcode.ADD, Opcode.SOFTMAX])
def test_a_row_host_keeps_its_fields_while_the_next_instruction_is_for_its_unit(opcode):
    """A row instruction looks ahead as a host does; the next instruction, for the same
    unit, starts after it, and the unit runs the first on its own fields meanwhile."""
    seed = 9
    first = BESIDE[opcode]
    second = {**first, **{name: value + 8 for name, value in first.items()
                          if name in ("dst", "src")}}
    run_against_the_models(SMALL, [
        *loads((Space.ACT, 256), (Space.LNP, 32)),
        Instruction(opcode, first), Instruction(opcode, second)], seed,
        f"seed {seed}: {opcode.name} after {opcode.name}")


#: A LOAD of LNP words 8..31 (read by READ_RELOADED's LayerNorm), from other external words.
FAR_LOAD = Instruction(Opcode.LOAD, dict(space=Space.LNP, spad_addr=8, count=24, dram_addr=100))
#: LOADs of WGT words the GEMM does not read, and of PRM words 8..63 (READ_RELOADED's).
WGT_LOAD = Instruction(Opcode.LOAD, dict(space=Space.WGT, spad_addr=100, count=40, dram_addr=100))
PRM_LOAD = Instruction(Opcode.LOAD, dict(space=Space.PRM, spad_addr=8, count=56, dram_addr=100))


@pytest.mark.parametrize("row, load, beside", [
    (Opcode.SOFTMAX, WGT_LOAD, True),
    (Opcode.GELU, WGT_LOAD, True),
    (Opcode.ADD, PRM_LOAD, True),
    (Opcode.LAYERNORM, WGT_LOAD, True),
    (Opcode.LAYERNORM, PRM_LOAD, True),
    # PRM words 4..7, which the GEMM reads.
    (Opcode.SOFTMAX, Instruction(Opcode.LOAD, dict(space=Space.PRM, spad_addr=4, count=8,
                                                   dram_addr=100)), False),
    (Opcode.LAYERNORM, FAR_LOAD, False),             # the far slot fills no LNP
    (Opcode.GELU, FAR_LOAD, False),
])
@pytest.mark.parametrize("shape", [{}, dict(k=1, m_tiles=1, n=1)])
def test_a_load_beside_a_gemm_and_the_row_instruction_beside_it(row, load, beside, shape):
    """A GEMM with a row instruction beside it (of FAR_ROWS) also runs the load after that
    one beside it when the load may run beside the GEMM and fills only WGT, IDX or PRM
    (FAR_LOADED, which no row instruction reads): all three retire together, memory
    byte for byte as the interpreter leaves it (the instructions after read what it loaded),
    cycles per class and beside as the cycle model predicts, for a GEMM longer than both
    look-ups and for one done between them (14 cycles: none of the load's hidden by it)."""
    seed = 10
    gemm = dict(HOSTS[Opcode.GEMM], **shape, **({"gelu": 1} if row == Opcode.GELU else {}))
    result = run_against_the_models(SMALL, [
        *loads((Space.ACT, 256), (Space.WGT, 256), (Space.PRM, 64), (Space.LNP, 32),
               (Space.TBL, 16)),
        Instruction(Opcode.GEMM, gemm), Instruction(row, dict(BESIDE[row], beside=1)), load,
        *READ_RELOADED], seed, f"seed {seed}: {row.name} and {load.space.name} beside a GEMM")
    assert result.side_cycles[ISA[row].counter] > 0
    if not shape:
        assert (result.side_cycles["load_store"] > 0) == beside


def test_a_move_hosts_no_load_beside_its_row_instruction():
    """A move writes WGT, so the load after the softmax beside it runs after both."""
    seed = 11
    result = run_against_the_models(SMALL, [
        *loads((Space.ACT, 256), (Space.LNP, 32), (Space.TBL, 16)),
        Instruction(Opcode.TRANSPOSE_TO_WGT, HOSTS[Opcode.TRANSPOSE_TO_WGT]),
        Instruction(Opcode.SOFTMAX, dict(BESIDE[Opcode.SOFTMAX], beside=1)), FAR_LOAD,
        Instruction(Opcode.LAYERNORM, dict(BESIDE[Opcode.LAYERNORM], lnp_addr=8, dst=80))],
        seed, f"seed {seed}: a LOAD after a softmax beside a transpose")
    assert result.side_cycles["softmax"] > 0
    assert result.side_cycles["load_store"] == 0


@pytest.mark.parametrize("gelu", [0, 1])
def test_a_gemm_adding_a_residual_right_after_another_gemm_waits_for_its_own_sums(gelu):
    """A GEMM with ``residual`` issued a few cycles after another GEMM's ``done`` (FC2's
    first GEMM on words loaded early, right after FC1's last): the first GEMM's done must
    not end the second before its sums are written (it did, while it was still in the
    residual's delay line). Memory and cycles as the models give them."""
    gemm = HOSTS[Opcode.GEMM]
    run_against_the_models(SMALL, [
        *loads((Space.ACT, 256), (Space.WGT, 256), (Space.PRM, 64), (Space.TBL, 16)),
        Instruction(Opcode.GEMM, dict(gemm, gelu=gelu)),
        Instruction(Opcode.GEMM, dict(gemm, a_addr=128, a_stride=8, k=8, c_addr=160,
                                      residual=1, r_addr=200, r_multiplier=700,
                                      c_multiplier=900, r_shift=10))],
        12, f"a residual GEMM after a GEMM with gelu={gelu}")
