"""The local backend: results as they finish, dead workers retried or given up, errors kept."""

import os
import signal

import pytest

from vitforge.errors import ConfigError
from vitforge.sw.explore.backends import TaskFailed, run_tasks


def square_or_die(value, marker):
    """``value**2``; 3 kills its worker once (the marker file remembers), 5 every time, and 6
    raises."""
    if value == 3 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    if value == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    if value == 6:
        raise ValueError("six is not allowed")
    return value * value


@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_worker_is_retried_or_given_up_and_the_run_completes(tmp_path, workers):
    marker = str(tmp_path / "killed")
    results = dict(run_tasks(square_or_die, [(value, marker) for value in range(8)],
                             workers=workers, retries=2))
    assert sorted(results) == list(range(8))
    assert [results[value] for value in (0, 1, 2, 3, 4, 7)] == [0, 1, 4, 9, 16, 49]
    assert results[5] == TaskFailed("its worker died 3 times")
    assert results[6] == TaskFailed("ValueError: six is not allowed")


def test_backend_arguments_are_checked():
    with pytest.raises(ConfigError, match=r"^backend must be one of local, ray, not 'slurm'$"):
        run_tasks(abs, [(1,)], backend="slurm")
    with pytest.raises(ConfigError, match=r"^address needs the ray backend, not local$"):
        run_tasks(abs, [(1,)], address="10.0.0.1:6379")
    with pytest.raises(ConfigError, match=r"^workers must be a positive integer, not -1$"):
        run_tasks(abs, [(1,)], workers=-1)
