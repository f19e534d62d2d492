"""The Ray backend on a local two-CPU instance: the same results as the local one.

CI installs the ``ray`` extra (``make test``); without Ray these tests are skipped, naming it.
"""

import csv
import os

import pytest

from vitforge.boards.presets import PRESETS
from vitforge.sw.explore.backends import TaskFailed, run_tasks
from vitforge.sw.explore.workload import Study
from vitforge.sw.explore.run import explore

ray = pytest.importorskip("ray", reason="the ray backend needs Ray: pip install 'vitforge[ray]'")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 * 1024 * 1024)
    yield
    ray.shutdown()


def test_results_a_task_error_and_a_worker_that_always_dies(local_ray):
    assert dict(run_tasks(pow, [(2, 10), (3, 3)], backend="ray")) == {0: 1024, 1: 27}
    (_, failed), = run_tasks(int, [("x",)], backend="ray")
    assert isinstance(failed, TaskFailed) and failed.reason.startswith("ValueError: "), failed
    (_, died), = run_tasks(os.abort, [()], backend="ray", retries=1)
    assert died == TaskFailed("its worker died 2 times")


def rows(path):
    with open(path) as table:
        return [{key: value for key, value in row.items() if key != "seconds"}
                for row in csv.DictReader(table)]


def test_ray_gives_the_local_backend_s_points_row_for_row(local_ray, tmp_path):
    study = Study(model="tiny", board="zcu102", base=PRESETS["zcu102"])
    sized = {key: ["model"] for key in ("act_depth", "wgt_depth", "prm_depth", "lnp_depth")}
    space = {"array": [2, 4, 6, 8, 12], "act_read_ports": [1, 2], "clock_mhz": [150, 250],
             **sized}
    explore(study, space, tmp_path / "local", workers=2, log=lambda line: None)
    explore(study, space, tmp_path / "ray", backend="ray", log=lambda line: None)
    local, on_ray = rows(tmp_path / "local" / "points.csv"), rows(tmp_path / "ray" / "points.csv")
    assert len(local) == 20
    assert local == on_ray


@pytest.mark.verilator
def test_a_regression_farm_on_ray(local_ray, tmp_path):
    from vitforge.sw.explore.workload import model_sized
    from vitforge.sw.explore.farm import FarmJob, run_farm
    from vitforge.sw.explore.space import point_config

    study = Study(model="tiny-random", board="zcu102", base=PRESETS["zcu102"])
    sized = {key: "model" for key in ("act_depth", "wgt_depth", "prm_depth", "lnp_depth",
                                      "k_max")}
    config = point_config(study.base, {"array": 4, **sized}, model_sized(study))
    jobs = [FarmJob(model="tiny-random", seed=seed, config=config, images=1)
            for seed in (0, 1)]
    summary = run_farm(jobs, tmp_path, backend="ray", log=lambda line: None)
    assert [result["status"] for result in summary["results"]] == ["pass", "pass"], summary
    assert summary["first_mismatch"] is None
