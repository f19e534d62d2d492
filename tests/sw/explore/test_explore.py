"""``vitforge explore``: spaces, marked points, resuming, interruption, the front, best.json."""

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from vitforge.boards.presets import PRESETS, config_hash, load_shell_config
from vitforge.errors import ConfigError, OutputError
from vitforge.sw.accel.compiler import compile_model
from vitforge.sw.accel.cycles import predict
from vitforge.sw.explore.workload import Study, accuracy, loaded_model, model_sized
from vitforge.sw.explore.results import pareto_front
from vitforge.sw.explore.run import explore
from vitforge.sw.explore.space import (MAX_POINTS, check_space, load_space,
                                      point_config, space_points)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_cli import run  # noqa: E402

SIZED = {key: ["model"] for key in ("act_depth", "wgt_depth", "prm_depth", "lnp_depth",
                                    "k_max")}


def study(**overrides):
    return Study(**{"model": "tiny", "board": "zcu102", "base": PRESETS["zcu102"],
                    **overrides})


def quiet(*_):
    pass


@pytest.mark.parametrize("space, message", [
    ([4, 8], r"^space must be a mapping of config fields to lists of values, not list$"),
    ({"arrays": [4]}, r"^space: key 'arrays' is not a config field; the fields are array, "),
    ({"array": 4}, r"^space: array must be a non-empty list of values, not 4$"),
    ({"array": []}, r"^space: array must be a non-empty list of values, not \[\]$"),
    ({"array": [4, "8"]}, r"^space: array values must be integers, not '8'$"),
    ({"array": [True]}, r"^space: array values must be integers, not True$"),
    ({"act_depth": ["big"]}, r'^space: act_depth values must be integers or "model", not '),
    ({"array": [4, 4]}, r"^space: array lists a value twice: \[4, 4\]$"),
    ({"array": list(range(1, 1001)), "act_depth": list(range(1, 1001))},
     rf"^space has 1000000 points, more than {MAX_POINTS}$"),
])
def test_a_malformed_space_is_refused_naming_the_key(space, message):
    with pytest.raises(ConfigError, match=message):
        check_space(space)


def test_spaces_from_toml_and_json_and_the_product_of_their_values(tmp_path):
    toml = tmp_path / "space.toml"
    toml.write_text('array = [8, 16]\nclock_mhz = [200, 250, 300]\nact_depth = ["model"]\n')
    space = load_space(toml)
    points = space_points(space)
    assert len(points) == 6
    assert points[:2] == [{"array": 8, "clock_mhz": 200, "act_depth": "model"},
                          {"array": 8, "clock_mhz": 250, "act_depth": "model"}]
    assert space_points(check_space({})) == [{}]               # the preset alone
    broken = tmp_path / "space.json"
    broken.write_text('{"array": [8,')
    with pytest.raises(ConfigError, match=rf"^space {broken} is not valid JSON: "):
        load_space(broken)
    with pytest.raises(ConfigError, match=rf"^space {tmp_path / 'none.toml'} cannot be read"):
        load_space(tmp_path / "none.toml")


def test_invalid_and_unfitting_points_are_marked_and_the_rest_predicted_exactly(tmp_path):
    space = {"array": [0, 4, 8, 80], **SIZED, "act_depth": ["model", 256],
             "clock_mhz": [200, 1000]}
    result = explore(study(), space, tmp_path / "out", workers=2, log=quiet)
    by_point = {tuple(json.loads(row["point"])[key] for key in ("array", "act_depth",
                                                                "clock_mhz")): row
                for row in result.rows}
    statuses = [row["status"] for row in result.rows]
    assert statuses.count("invalid") == 4 + 4 + 4  # arrays 0 and 80; 1000 MHz on the others
    errors = {row["error"] for row in result.rows}
    assert {"clock_mhz must be from 10 to 500, not 1000",
            "array must be at most 64 (the widest array vitforge builds), not 80"} <= errors
    no_fit = by_point[8, 256, 200]
    assert no_fit["status"] == "no-fit", no_fit
    assert no_fit["error"].endswith("beyond act_depth=256"), no_fit["error"]
    assert by_point[8, "model", 200]["status"] == "ok"
    # The row's cycles are the cycle model's for the model compiled on that config.
    config = load_shell_config(tmp_path / "out" / "best.json")
    model = loaded_model(study())[2]
    best = next(row for row in result.rows if row["config_hash"] == json.loads(
        (tmp_path / "out" / "best.json").read_text())["config_hash"])
    assert best["cycles"] == predict(compile_model(config.accelerator, model)).cycles
    assert best["fps"] == pytest.approx(200e6 / best["cycles"], rel=1e-6)
    csv_lines = (tmp_path / "out" / "points.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(space_points(space)) == 1 + 16
    assert (tmp_path / "out" / "pareto.png").stat().st_size > 10_000


def test_the_cascade_array_is_a_dimension_of_the_space(tmp_path):
    """k_per_cycle needs two MACs per DSP (one invalid point); the cascades take fewer cycles
    and more DSPs, each row's cycles the cycle model's for its compiled program."""
    space = {"array": [8], **SIZED, "macs_per_dsp": [2], "k_per_cycle": [1, 2, 4]}
    result = explore(study(), space, tmp_path / "out", workers=1, log=quiet)
    rows = {json.loads(row["point"])["k_per_cycle"]: row for row in result.rows}
    assert [rows[k]["status"] for k in (1, 2, 4)] == ["ok"] * 3, result.rows
    assert rows[1]["cycles"] > rows[2]["cycles"] > rows[4]["cycles"]
    assert rows[1]["dsp"] < rows[2]["dsp"] < rows[4]["dsp"]
    config = point_config(PRESETS["zcu102"], json.loads(rows[4]["point"]),
                          model_sized(study()))
    assert rows[4]["config_hash"] == config_hash(config)
    assert rows[4]["cycles"] == predict(compile_model(config.accelerator,
                                                      loaded_model(study())[2])).cycles
    invalid = explore(study(), {"array": [8], **SIZED, "macs_per_dsp": [1], "k_per_cycle": [2]},
                      tmp_path / "bad", workers=1, log=quiet).rows
    assert [row["status"] for row in invalid] == ["invalid"]
    assert invalid[0]["error"].startswith("macs_per_dsp must be 2 when k_per_cycle is 2")


def test_resuming_evaluates_only_the_missing_points_and_survives_a_torn_line(tmp_path):
    out = tmp_path / "out"
    first = explore(study(), {"array": [4, 8], **SIZED}, out, workers=1, log=quiet)
    assert (first.evaluated, first.reused) == (2, 0)
    with open(out / "points.jsonl", "a") as lines:
        lines.write('{"index": 5, "point": "{\\"arr')                  # a crash mid-write
    second = explore(study(), {"array": [4, 8, 16], **SIZED}, out, workers=1, log=quiet)
    assert (second.evaluated, second.reused) == (1, 2)
    assert [row["cycles"] for row in second.rows[:2]] == [row["cycles"] for row in first.rows]


def test_an_interrupted_run_keeps_its_finished_points_and_resumes(tmp_path):
    out = tmp_path / "out"
    space = {"array": [4, 6, 8, 10, 12], **SIZED}

    def interrupt_after_two(done, total, what):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        explore(study(), space, out, workers=1, progress=interrupt_after_two, log=quiet)
    kept = json.loads((out / "points.json").read_text())
    assert [row["status"] for row in kept] == ["ok", "ok"]
    resumed = explore(study(), space, out, workers=1, log=quiet)
    assert (resumed.evaluated, resumed.reused) == (3, 2)
    assert len(json.loads((out / "points.json").read_text())) == 5


def test_a_folder_explore_did_not_make_or_another_study_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match=r"did not create \(no explore.json\)"):
        explore(study(), {}, tmp_path / "mine", workers=1, log=quiet)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    explore(study(), {}, tmp_path / "out", workers=1, log=quiet)
    with pytest.raises(ConfigError, match=r"holds an exploration with another model; choose "):
        explore(study(model="tiny-random"), {}, tmp_path / "out", workers=1, log=quiet)


def row(index, fps, dsp, lut, bram36, fits=True):
    return {"index": index, "status": "ok", "fps": fps, "dsp": dsp, "lut": lut,
            "bram36": bram36, "fits": fits, "headroom": fits, "accuracy": None}


def test_the_pareto_front_keeps_exactly_the_undominated_fitting_points():
    rows = [row(0, 100, 10, 10, 10), row(1, 90, 10, 10, 10),      # 1: dominated by 0
            row(2, 80, 5, 20, 20), row(3, 200, 50, 50, 50),
            row(4, 300, 1, 1, 1, fits=False), row(5, 100, 10, 10, 10)]
    assert [r["index"] for r in pareto_front(rows)] == [3, 0, 5, 2]


def test_the_golden_accuracy_is_that_of_the_whole_test_split():
    assert 0.9 < accuracy(study()) <= 1.0
    assert accuracy(study(model="deit-tiny")) is None       # random images: no labels


def test_the_command_line(tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"array": [4, 8], **SIZED}))
    completed = run("explore", "--space", str(space), "--out", str(tmp_path / "out"),
                    "--workers", "1")
    assert completed.returncode == 0, completed.stderr
    assert "2 points (2 evaluated, 0 from" in completed.stdout
    assert "] 2/2 points evaluated\n" in completed.stderr
    best = tmp_path / "out" / "best.json"
    generated = run("generate", "--config", str(best), "--out", str(tmp_path / "rtl"),
                    "--no-resources")
    assert generated.returncode == 0, generated.stderr
    assert json.loads((tmp_path / "rtl" / "config.json").read_text())["config_hash"] == \
        json.loads(best.read_text())["config_hash"]


def evaluate_or_die(study, index, point, resource_model):
    """Kills its worker on array 6, every time; evaluates the rest."""
    from vitforge.sw.explore.evaluate import evaluate_point

    if point.get("array") == 6:
        os.kill(os.getpid(), signal.SIGKILL)
    return evaluate_point(study, index, point, resource_model)


def test_a_point_that_kills_its_worker_is_marked_failed_and_the_run_completes(
        tmp_path, monkeypatch):
    import vitforge.sw.explore.run as run_module

    monkeypatch.setattr(run_module, "evaluate_point", evaluate_or_die)
    result = explore(study(), {"array": [4, 6, 8], **SIZED}, tmp_path, workers=2, log=quiet)
    assert [row["status"] for row in result.rows] == ["ok", "failed", "ok"]
    assert result.rows[1]["error"] == "its worker died 3 times"
    assert [row["pareto"] for row in json.loads((tmp_path / "points.json").read_text())
            if row["status"] != "ok"] == [False]
    again = explore(study(), {"array": [4, 6, 8], **SIZED}, tmp_path, workers=2, log=quiet)
    assert (again.evaluated, again.reused) == (1, 2)              # the failed point runs again


def test_keep_ratios_prune_tokens_at_top_k_and_change_accuracy_and_cycles(tmp_path):
    # One step of K per cycle: on the zcu102 preset's cascade the digits model's GEMMs are so
    # short at 8 lanes that its selector costs more than the pruned tokens save.
    space = {"array": [8], **SIZED, "keep": ["none", [0.3], [0.5, 0.2]]}
    result = explore(study(base=PRESETS["zcu102-k1"]), space, tmp_path, workers=1, log=quiet)
    dense, pruned, wrong = result.rows
    assert (dense["keep"], pruned["keep"]) == ("none", "[0.3]")
    assert pruned["cycles"] < dense["cycles"]
    assert pruned["accuracy"] != dense["accuracy"]
    assert wrong["status"] == "invalid"
    assert wrong["error"] == ("keep must have one ratio per selector stage (1, before blocks "
                              "[1]), not [0.5, 0.2]")
    with pytest.raises(ConfigError, match=r'^space: keep values must be "none" or a list of '):
        check_space({"keep": [[1.5]]})


def test_ctrl_c_stops_the_command_with_one_line_and_keeps_the_finished_points(tmp_path):
    import subprocess
    import time

    space = tmp_path / "space.json"
    space.write_text(json.dumps({"array": list(range(8, 61, 4)),
                                 "clock_mhz": list(range(100, 301, 10)), **SIZED}))
    out = tmp_path / "out"
    command = subprocess.Popen(
        [sys.executable, "-m", "vitforge.sw.cli", "explore", "--model", "deit-tiny",
         "--space", str(space), "--out", str(out), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C as in a terminal, even when the tests run in the background, whose shell
        # starts them with SIGINT ignored (Python then installs no handler for it).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = out / "points.jsonl"
    deadline = time.monotonic() + 120
    while not (lines.exists() and lines.read_text().count("\n") >= 3):
        assert time.monotonic() < deadline and command.poll() is None, command.stderr.read()
        time.sleep(0.05)
    command.send_signal(signal.SIGINT)
    stdout, stderr = command.communicate(timeout=60)
    assert command.returncode == 130, stderr
    assert stderr.splitlines()[-1].startswith("vitforge: interrupted; the finished points "), \
        stderr
    assert "Traceback" not in stderr
    kept = json.loads((out / "points.json").read_text())
    assert 3 <= len(kept) < 294
    assert all(row["status"] == "ok" for row in kept)


def test_sparsity_prunes_weights_on_the_point_s_array_and_runs_them_sparse(tmp_path):
    # One step of K per cycle: on the zcu102 preset's two, half the rows run dense (as fast).
    space = {"array": [8], **SIZED, "sparsity": [0, 0.5]}
    dense, sparse = explore(study(base=PRESETS["zcu102-k1"]), space, tmp_path, workers=1,
                            log=quiet).rows
    assert (dense["sparsity"], sparse["sparsity"]) == (0, 0.5)
    assert sparse["status"] == "ok" and sparse["cycles"] < 0.8 * dense["cycles"], sparse
    assert sparse["accuracy"] != dense["accuracy"]
    with pytest.raises(ConfigError, match=r"^space: sparsity values must be numbers in "
                                          r"\[0, 1\), not 1\.5$"):
        check_space({"sparsity": [1.5]})
