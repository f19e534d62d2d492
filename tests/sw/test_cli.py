"""The command line: exit codes, one-line errors, JSON output."""

import json
import subprocess
import sys

import pytest

from vitforge.boards.presets import PRESETS
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


@pytest.mark.parametrize("args, message", [
    (["gemm", "--rows", "0"], "rows must be a positive integer, not 0"),
    (["gemm", "--rows", "4", "--cols", "4", "--m", "-2"], "m must be a positive integer, not -2"),
    (["gemm", "--rows", "4", "--cols", "4", "--k", "769"],
     "GEMM reduction depth k must be at most k_max=768, not 769"),
    (["gemm", "--rows", "x"], "argument --rows: invalid int value: 'x'"),
    (["gemm", "--pattern", "noise"], "pattern must be one of random, min, max, alternating, "
                                     "zeros, not 'noise'"),
    (["frobnicate"], "argument command: invalid choice: 'frobnicate'"),
])
def test_bad_arguments_give_one_line_and_exit_2(args, message):
    assert_usage_error(args, message)


def test_unwritable_json_is_refused_before_simulating(tmp_path, capsys, monkeypatch):
    def no_simulation(*args, **kwargs):
        raise AssertionError("simulated although the output cannot be written")
    monkeypatch.setattr("vitforge.sim.gemm.cosim.simulate", no_simulation)
    missing = tmp_path / "missing"
    code = cli.main(["gemm", "--rows", "4", "--cols", "4", "--json", str(missing / "out.json")])
    assert code == 2
    assert capsys.readouterr().err == f"vitforge: error: output folder must exist, " \
                                      f"not {str(missing)!r}\n"


def test_doctor_lists_the_toolchain():
    completed = run("doctor")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for tool in ("python", "amaranth", "cocotb", "verilator", "yosys"):
        assert any(line.startswith(tool) for line in completed.stdout.splitlines()), tool


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


@pytest.mark.parametrize("args, message", [
    (["nonlinear", "--op", "tanh"], "argument --op: invalid choice: 'tanh'"),
    (["nonlinear", "--op", "gelu", "--scale", "0"], "scale must be positive and finite, not 0.0"),
    (["nonlinear", "--op", "softmax", "--lanes", "0"], "lanes must be a positive integer, not 0"),
    (["nonlinear", "--op", "layernorm", "--length", "2000"],
     "length must be at most 1024, not 2000"),
    (["nonlinear", "--op", "layernorm", "--length", "10", "--lanes", "4"],
     "length must be a multiple of lanes=4, not 10"),
])
def test_nonlinear_bad_arguments(args, message):
    assert_usage_error(args, message)


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


@pytest.mark.parametrize("args, message", [
    (["block", "--rows", "4", "--cols", "8"],
     "cols must equal rows (the accelerator's array is square), not 8 and 4"),
    (["block", "--dim", "30", "--heads", "4"], "dim must be a multiple of heads=4, not 30"),
    (["block", "--tokens", "0"], "tokens must be a positive integer, not 0"),
    (["block", "--rows", "8", "--dim", "32", "--heads", "8"],
     "head dimension must be a multiple of the array size 8, not 4 (block 0)"),
])
def test_block_bad_arguments(args, message):
    assert_usage_error(args, message)


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


@pytest.mark.parametrize("args, message", [
    (["verify", "--images", "0"], "images must be a positive integer, not 0"),
    (["verify", "--model", "resnet"], "model must be one of tiny, deit-tiny, deit-small, "
                                      "deit-base or an existing .npz file, not 'resnet'"),
    (["simulate", "--clock-mhz", "0"], "clock-mhz must be positive, not 0.0"),
    (["verify", "--images", "400"], "images must be at most 359 for model 'tiny', not 400"),
])
def test_model_commands_bad_arguments(args, message):
    assert_usage_error(args, message)


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
    folder = tmp_path / "demo"
    completed = run("demo", "--images", "2", "--out", str(folder))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert {p.name for p in folder.iterdir()} == {"report.md", "summary.json", "cycles.png",
                                                   "digits.png"}
    assert "RTL == golden model, bit for bit: **yes**" in (folder / "report.md").read_text()


@pytest.mark.verilator
def test_simulate_dumps_waves(tmp_path):
    waves = tmp_path / "tiny.vcd"
    completed = run("simulate", "--images", "1", "--waves", str(waves))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert waves.stat().st_size < 200_000_000
    head = waves.read_bytes()[:100_000]
    assert b"$enddefinitions" in head and b"retire" in head


@pytest.mark.parametrize("args, message", [
    (["generate", "--board", "kcu105", "--out", "x", "--no-resources"],
     "board must be one of zcu102, not 'kcu105'"),
    (["generate", "--preset", "huge", "--out", "x"], "preset must be one of small, zcu102, "
                                                     "not 'huge'"),
    (["generate", "--preset", "small", "--config", "c.json", "--out", "x"],
     "give --preset or --config, not both"),
    (["generate", "--config", "missing.json", "--out", "x"],
     "config file 'missing.json' does not exist"),
])
def test_bad_generate_arguments(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_usage_error(args, message)
    assert not (tmp_path / "x").exists()


def test_bad_config_file_and_unwritable_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    values = {"board": "zcu102", **PRESETS["small"].to_dict()}
    (tmp_path / "extra.json").write_text(json.dumps({**values, "lanes": 3}))
    assert_usage_error(["generate", "--config", "extra.json", "--out", "x"],
                       "config file 'extra.json' has unknown keys: lanes")
    values["accelerator"]["array"] = 0
    (tmp_path / "zero.json").write_text(json.dumps(values))
    assert_usage_error(["generate", "--config", "zero.json", "--out", "x"],
                       "array must be a positive integer, not 0")
    (tmp_path / "file").write_text("")
    assert_usage_error(["generate", "--preset", "small", "--out", "file/sub", "--no-resources"],
                       "out must be a folder that can be created, not 'file/sub' "
                       "(File exists)")
