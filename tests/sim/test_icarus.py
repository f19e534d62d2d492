"""A second simulator: the small configs on Icarus Verilog (4-state) against Verilator and the
golden model, and no X or Z on any port, register or net after reset.

Marked ``icarus``; ``make test`` installs ``iverilog`` where it may (apt, as root), and without
it these tests are skipped, saying how to get it. Each test runs one design on both simulators
(``VITFORGE_SIMULATOR``) and compares them with each other and with the golden model.
"""

import shutil

import numpy as np
import pytest

from vitforge.hw.gemm.config import GemmConfig
from vitforge.sim import fuzz
from vitforge.sim.accel.cosim import coverify, system_verilog
from vitforge.sim.gemm.cosim import TOPLEVEL as GEMM_TOPLEVEL, engine_verilog, simulate
from vitforge.sim.nonlinear.evaluate import evaluate
from vitforge.sim.reset_check import unresolved_after_reset
from vitforge.sw.accel.compiler import compile_blocks, compile_model, config_for, config_for_model
from vitforge.sw.gemm.plan import plan_gemm
from vitforge.sw.gemm.problems import random_problem
from vitforge.sw.model.quantized_selector import random_pruned_vit
from vitforge.sw.model.random_block import random_blocks
from vitforge.sw.model.selector import SelectorConfig
from vitforge.sw.model.vit import VitShape

pytestmark = [pytest.mark.icarus, pytest.mark.skipif(
    shutil.which("iverilog") is None or shutil.which("vvp") is None,
    reason="Icarus Verilog is not installed: apt-get install iverilog (make test does it as root)")]


#: Fuzzed programs run on Icarus (slower than Verilator by about two orders of magnitude).
ICARUS_PROGRAMS = 10


def on_both(monkeypatch, run):
    """``{simulator: run()}`` for Verilator and Icarus."""
    results = {}
    for simulator in ("verilator", "icarus"):
        monkeypatch.setenv("VITFORGE_SIMULATOR", simulator)
        results[simulator] = run()
    return results


@pytest.mark.parametrize("macs_per_dsp", [1, 2])
def test_gemm_engine(monkeypatch, macs_per_dsp):
    config = GemmConfig(rows=4, cols=4, k_max=64, a_depth=256, b_depth=256, c_depth=256,
                        param_depth=64, macs_per_dsp=macs_per_dsp)
    rng = np.random.default_rng(30 + macs_per_dsp)
    jobs = [plan_gemm(config, random_problem(rng, 9, 13, 7)),
            plan_gemm(config, random_problem(rng, 5, 64, 6, pattern="min"))]
    reports = on_both(monkeypatch, lambda: simulate(config, jobs))
    for verilator, icarus in zip(reports["verilator"].jobs, reports["icarus"].jobs):
        assert verilator.match and icarus.match
        assert icarus.cycles == verilator.cycles
        np.testing.assert_array_equal(icarus.rtl, verilator.rtl)


@pytest.mark.parametrize("op", ["gelu", "softmax", "layernorm"])
def test_nonlinear_units(monkeypatch, op):
    length = None if op == "gelu" else 16
    runs = on_both(monkeypatch, lambda: evaluate(op, rows=4, lanes=2, length=length, seed=3))
    assert runs["verilator"].match and runs["icarus"].match, op
    assert runs["icarus"].cycles == runs["verilator"].cycles
    np.testing.assert_array_equal(runs["icarus"].rtl, runs["verilator"].rtl)


def test_accelerator_on_blocks_and_a_pruned_model(monkeypatch):
    x, blocks, _ = random_blocks(np.random.default_rng(0), tokens=9, dim=16, heads=2, hidden=32,
                                 count=1)
    programs = [compile_blocks(config_for(blocks, 9, 4), blocks, x)]
    shape = VitShape(image_size=4, patch_size=1, in_channels=1, dim=16, depth=2, heads=2, mlp=32,
                     classes=3)
    model, selectors, patches = random_pruned_vit(
        shape, SelectorConfig(blocks=(1,), ratios=(0.5,), mode="threshold"), 2, images=1)
    programs.append(compile_model(config_for_model(model, 4, selectors=selectors), model,
                                  patches[0], selectors=selectors))
    for program in programs:
        reports = on_both(monkeypatch, lambda: coverify(program))
        for report in reports.values():
            assert report.match and not report.error, report.mismatch
            assert not report.prediction_mismatch(), report.prediction_mismatch()
        assert reports["icarus"].cycles == reports["verilator"].cycles
        assert reports["icarus"].class_cycles == reports["verilator"].class_cycles


def test_the_axi_shell(monkeypatch):
    from test_shell_verilator import test_registers_and_a_block_with_and_without_back_pressure

    monkeypatch.setenv("VITFORGE_SIMULATOR", "icarus")
    test_registers_and_a_block_with_and_without_back_pressure()


def test_random_programs(monkeypatch, tmp_path):
    """The differential fuzzer's programs on Icarus too (Verilator: ``test_fuzz.py``)."""
    monkeypatch.setenv("VITFORGE_SIMULATOR", "icarus")
    assert fuzz.fuzz_rtl(ICARUS_PROGRAMS, replay_folder=tmp_path) == ICARUS_PROGRAMS


def test_no_signal_is_x_or_z_after_reset():
    """Nothing holds X or Z after reset but the memories' read registers not yet read, which
    ``unresolved_after_reset`` lists apart and sets to 0, their value on the device, before it
    reads the rest: no register took X from them, and no other source of X or Z exists."""
    gemm = GemmConfig(rows=4, cols=4, k_max=64, a_depth=256, b_depth=256, c_depth=256,
                      param_depth=64)
    x, blocks, _ = random_blocks(np.random.default_rng(0), tokens=9, dim=16, heads=2, hidden=32,
                                 count=1)
    designs = {"GEMM engine": (engine_verilog(gemm).text, GEMM_TOPLEVEL),
               "accelerator": (system_verilog(config_for(blocks, 9, 4), 1 << 12).text,
                               "accelerator_system")}
    for name, (verilog, toplevel) in designs.items():
        unresolved = unresolved_after_reset(verilog, toplevel)
        assert unresolved["ports"] == [], (name, unresolved["ports"])
        assert unresolved["internal"] == [], (name, unresolved["internal"])
