"""The accelerator shell in Verilator: the runtime driver through cocotbext-axi models.

Every program is compared with the golden interpreter over the whole memory
image; guard bands around each buffer must survive, and the AXI4 master must
really burst.
"""

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from vitforge.boards.presets import ShellConfig
from vitforge.hw.accel.isa import Opcode, encode
from vitforge.sim.accel.shell_session import run_on_shell
from vitforge.sim.model_run import load_model, load_pruning
from vitforge.sw.accel.compiler import compile_blocks, compile_model, config_for, config_for_model
from vitforge.sw.golden.accel.interpreter import Machine, run_program
from vitforge.sw.golden.encoder import pruned_vit_logits, vit_logits
from vitforge.sw.model.quantize import quantize_tensor, quantize_vit
from vitforge.sw.model.quantized_selector import quantize_selectors
from vitforge.sw.model.random_block import random_blocks
from vitforge.sw.model.vit import patchify

pytestmark = pytest.mark.verilator


def golden_image(program):
    machine = Machine(program.config, program.image)
    run_program(machine, program.program_addr)
    return bytes(machine.dram)


def test_registers_and_a_block_with_and_without_back_pressure():
    x, blocks, expected = random_blocks(np.random.default_rng(5), tokens=17, dim=32, heads=2,
                                        hidden=128, count=1)
    config = config_for(blocks, 17, 4)
    program = compile_blocks(config, blocks, x)
    bad = b"".join(word.to_bytes(32, "little") for word in (encode(Opcode.NOP), 0x7E))
    cycles = {}
    for back_pressure in (False, True):
        run = run_on_shell(ShellConfig(accelerator=config),
                           [(program.image, program.program_addr, len(program.instructions)),
                            (bad, 0)],
                           back_pressure=back_pressure, seed=5)
        assert run.registers == {"hw_config": config.to_dict(),
                                 "program_addr_round_trip": 0x1234_5678,
                                 "cycles_after_write": 0, "status_idle": 0,
                                 "bad_read_slverr": True, "bad_write_slverr": True}
        good, failed = run.runs
        assert good["driver_error"] == "", good["driver_error"]
        assert good["image"] == golden_image(program), f"back_pressure={back_pressure}, seed 5"
        np.testing.assert_array_equal(program.result(good["image"]), expected)
        assert good["cycles"] == sum(good["class_cycles"].values())
        sections = program.section_cycles(good["retired_at"], good["cycles"])
        assert sum(sections.values()) == good["cycles"]
        assert {"input", "block 0 attention", "block 0 mlp", "output"} <= set(sections)
        assert all(cycles > 0 for cycles in sections.values()), sections
        assert failed["driver_error"] == ("the program stopped with error 1 at instruction 1 "
                                          "(see docs/isa.md)")
        assert run.guards_damaged == []
        reads = Counter(run.bursts["read"])
        assert max(reads) == 16 and reads[16] > len(run.bursts["read"]) / 2, reads
        assert max(run.bursts["write"]) == 16
        cycles[back_pressure] = good["cycles"]
    assert cycles[True] > cycles[False]


def test_tiny_model_dense_and_pruned_runs_through_the_driver_bit_exactly():
    """Four runs in one simulation: two images dense, then the same two with the shipped
    selector, whose kept counts differ; each pruned run starts from cleared live registers."""
    vit, calibration, test_images, _ = load_model("tiny")
    model = quantize_vit(vit, calibration)
    selectors = quantize_selectors(vit, *load_pruning("default", None, "tiny", vit),
                                   calibration, model)
    config = config_for_model(model, 4, selectors=selectors)
    features = [quantize_tensor(patchify(image[None], vit.shape)[0], model.input_scale)
                for image in test_images[:20]]
    kept = [len(pruned_vit_logits(model, patches, selectors)[1][0]) for patches in features]
    # Image 0 and the first image whose kept count differs from it.
    chosen = [features[0], next(patches for patches, count in zip(features, kept)
                                if count != kept[0])]
    programs, expected = [], []
    for pruned in (None, selectors):
        compiled = compile_model(config, model, selectors=pruned)
        for patches in chosen:
            programs.append(compiled.with_input(patches))
            expected.append(vit_logits(model, patches, selectors=pruned))
    run = run_on_shell(ShellConfig(accelerator=config),
                       [(p.image, p.program_addr) for p in programs],
                       back_pressure=True, seed=1, use_interrupt=False)
    for index, (program, logits, result) in enumerate(zip(programs, expected, run.runs)):
        assert result["driver_error"] == ""
        assert result["image"] == golden_image(program), f"run {index}"
        np.testing.assert_array_equal(program.result(result["image"]), logits,
                                      err_msg=f"run {index}")
    assert run.guards_damaged == []


def test_short_bursts_one_outstanding_transaction_one_read_port():
    """The master's limits (bursts of at most 4 beats, one burst in flight per direction) and
    the zcu102 preset's single activation read port."""
    x, blocks, expected = random_blocks(np.random.default_rng(8), tokens=9, dim=16, heads=2,
                                        hidden=32, count=1)
    config = replace(config_for(blocks, 9, 4), act_read_ports=1)
    program = compile_blocks(config, blocks, x)
    run = run_on_shell(ShellConfig(accelerator=config, max_burst=4, max_outstanding=1),
                       [(program.image, program.program_addr)], back_pressure=True, seed=8)
    result, = run.runs
    assert result["driver_error"] == ""
    assert result["image"] == golden_image(program), "seed 8"
    np.testing.assert_array_equal(program.result(result["image"]), expected)
    assert max(run.bursts["read"]) == 4 and max(run.bursts["write"]) == 4
    assert run.guards_damaged == []


def test_bus_errors_a_watchdog_and_a_reset_stop_the_run_and_the_next_run_is_correct():
    """Faults on the AXI4 master: each stops its run cleanly with the driver's error, and
    the program after it leaves memory exactly as the golden interpreter does."""
    x, blocks, expected = random_blocks(np.random.default_rng(5), tokens=17, dim=32, heads=2,
                                        hidden=128, count=1)
    config = config_for(blocks, 17, 4)
    program = compile_blocks(config, blocks, x)
    faults = [{"kind": "read", "response": "SLVERR", "after_beats": 10},
              {"kind": "read", "response": "DECERR", "after_beats": 400},
              {"kind": "write", "response": "SLVERR", "after_beats": 3},
              {"kind": "write", "response": "DECERR", "after_beats": 0},
              {"kind": "watchdog", "max_cycles": 300},
              {"kind": "reset", "after_cycles": 600}]
    schedule = [None]
    for fault in faults:
        schedule += [fault, None]
    run = run_on_shell(ShellConfig(accelerator=config),
                       [(program.image, program.program_addr)] * len(schedule),
                       faults=schedule)
    expected_image = golden_image(program)
    clean = [result for result, fault in zip(run.runs, schedule) if fault is None]
    for index, result in enumerate(clean):
        assert result["driver_error"] == "", (index, result["driver_error"])
        assert result["image"] == expected_image, f"clean run {index} after a fault"
    np.testing.assert_array_equal(program.result(clean[-1]["image"]), expected)
    disturbed = [result for result, fault in zip(run.runs, schedule) if fault is not None]
    messages = [result["driver_error"] for result in disturbed]
    for message, (access, response) in zip(messages, [("read", "SLVERR"), ("read", "DECERR"),
                                                      ("write", "SLVERR"),
                                                      ("write", "DECERR")]):
        assert message.startswith(f"the accelerator's memory {access} got an AXI {response} "
                                  "response (image at 0x"), message
        assert message.endswith(f", {len(program.image)} bytes); the run was stopped"), message
    for result, fault in zip(disturbed[:5], faults):
        # Idle, done, and stopped early (STATUS bit 8); the error's response and direction.
        response = {"SLVERR": 2, "DECERR": 3}.get(fault.get("response"), 0)
        write = fault["kind"] == "write"
        assert result["status"] == 0b10 | (response != 0) << 4 | response << 5 | write << 7 \
            | 1 << 8, (fault, bin(result["status"]))
    # A read error at the tenth beat stops the run long before a clean run would end.
    assert disturbed[0]["host_cycles"] < clean[0]["host_cycles"] / 4
    assert messages[4] == ("no interrupt from the accelerator: irq did not rise within 300 "
                           "cycles; the run was aborted")
    assert disturbed[5] == {"driver_error": "", "reset_while_busy": True}
    assert run.guards_damaged == []
