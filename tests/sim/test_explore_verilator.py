"""On the RTL: explore's ``--fidelity sim``, and the regression farm (seeds x configs co-verified
in parallel, the first mismatch reproduced)."""

import json
import shlex
import sys
from pathlib import Path

import pytest

from vitforge.boards.presets import PRESETS
from vitforge.errors import ConfigError
from vitforge.sw.explore.workload import Study, model_sized
from vitforge.sw.explore.farm import FarmJob, MAX_SEEDS, parse_seeds, run_farm
from vitforge.sw.explore.space import point_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sw"))
from test_cli import run  # noqa: E402

pytestmark = pytest.mark.verilator


def tiny_config(array=4):
    sized = model_sized(Study(model="tiny-random", board="zcu102", base=PRESETS["zcu102"]))
    fields = ("act_depth", "wgt_depth", "prm_depth", "lnp_depth", "k_max")
    return point_config(PRESETS["zcu102"], {"array": array, **dict.fromkeys(fields, "model")},
                        sized)


@pytest.mark.parametrize("text, message", [
    ("3..1", r"^seeds must be A\.\.B with 0 <= A <= B, not '3\.\.1'$"),
    ("a..b", r"^seeds must be A\.\.B or one seed, not 'a\.\.b'$"),
    ("-1", r"^seeds must be A\.\.B with 0 <= A <= B, not '-1'$"),
    (f"0..{MAX_SEEDS}", rf"^seeds must be at most {MAX_SEEDS} in all, not {MAX_SEEDS + 1}$"),
])
def test_bad_seed_ranges_are_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_seeds(text)
    assert parse_seeds("2..4") == [2, 3, 4] and parse_seeds(7) == [7]


def test_every_job_is_checked_and_the_first_mismatch_comes_with_its_reproducer(
        tmp_path, monkeypatch):
    import vitforge.sim.model_run as model_run

    real_run_model = model_run.run_model

    def planted(name, **options):       # seed 1 "fails"; the workers fork with this patch
        run = real_run_model(name, **options)
        if options["seed"] == 1:
            run.bit_exact, run.mismatch = False, "planted mismatch"
        return run

    monkeypatch.setattr(model_run, "run_model", planted)
    config = tiny_config()
    jobs = [FarmJob(model="tiny-random", seed=seed, config=config, images=1)
            for seed in range(3)]
    summary = run_farm(jobs, tmp_path, workers=2, log=lambda line: None)
    assert [result["status"] for result in summary["results"]] == ["pass", "mismatch", "pass"]
    first = summary["first_mismatch"]
    assert (first["seed"], first["mismatch"]) == (1, "planted mismatch")
    command = shlex.split(first["reproducer"])
    assert command[:6] == ["vitforge", "verify", "--model", "tiny-random", "--seed", "1"]
    written = json.loads((tmp_path / f"config-{first['config_hash']}.json").read_text())
    assert written == config.to_dict()
    assert first["vcd"] == str(tmp_path / "mismatch.vcd")
    assert "$var wire 1" in (tmp_path / "mismatch.vcd").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["mismatch"] == 1


def test_the_command_line_farm(tmp_path):
    configs = tmp_path / "configs.json"
    configs.write_text(json.dumps({"array": [4], "act_depth": ["model"], "wgt_depth": ["model"],
                                   "prm_depth": ["model"], "lnp_depth": ["model"],
                                   "k_max": ["model"]}))
    completed = run("verify", "--model", "tiny-random", "--seeds", "0..1", "--configs",
                    str(configs), "--images", "1", "--workers", "2", "--out",
                    str(tmp_path / "farm"))
    assert completed.returncode == 0, completed.stderr
    assert "2 jobs: 2 pass, 0 mismatch, 0 do not fit" in completed.stdout


def test_fidelity_sim_co_verifies_the_pareto_points(tmp_path):
    from vitforge.sw.explore.run import explore

    study = Study(model="tiny", board="zcu102", base=PRESETS["zcu102"])
    sized = {key: ["model"] for key in ("act_depth", "wgt_depth", "prm_depth", "lnp_depth",
                                        "k_max")}
    # Two ports are faster than one for the same DSPs and LUTs (more BRAM); pruning keeps
    # fewer tokens, at another accuracy: several points on the front, each simulated.
    space = {"array": [4], "act_read_ports": [1, 2], "keep": ["none", [0.3]], **sized}
    result = explore(study, space, tmp_path, fidelity="sim", workers=2,
                     log=lambda line: None)
    simulated = [row for row in result.rows if row["simulated_cycles"] is not None]
    assert len(simulated) == len(result.front) >= 2
    assert {row["keep"] for row in simulated} == {"none", "[0.3]"}
    for row in simulated:
        assert (row["simulated_cycles"], row["bit_exact"]) == (row["cycles"], True), row
