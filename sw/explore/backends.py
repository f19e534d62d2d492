"""Where the points run: a process pool on this machine, or Ray (local or a cluster).

:func:`run_tasks` calls ``function(*task)`` for every task and yields each result
as it finishes, in completion order. Both backends survive a worker that dies
mid-task (killed, out of memory): the task is retried, and after ``retries``
more deaths it is given up as a :class:`TaskFailed`, and the run goes on. An
exception the function raises is a :class:`TaskFailed` at once (it would
raise again). Stopping the iteration (Ctrl-C) stops the workers: nothing keeps
running after the caller has returned.

``local`` runs at most ``workers`` tasks at once in forked processes, which
inherit what the caller loaded; after a worker death the tasks that were
running are retried one at a time, each in a fresh process of its own, so only
the task that kills its worker is charged. ``ray`` submits every task to
``ray.init(address=...)`` (a local instance of ``workers`` CPUs when no address
is given); Ray retries tasks whose worker died itself (``max_retries``).
"""

from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
import multiprocessing
import os
import signal

from vitforge.errors import ConfigError, ToolchainError

__all__ = ["BACKENDS", "TaskFailed", "run_tasks", "default_workers"]

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class TaskFailed:
    """What a task that did not complete yields instead of its result."""

    reason: str


def default_workers():
    """The CPUs this process may use."""
    return len(os.sched_getaffinity(0))


def run_tasks(function, tasks, *, backend="local", workers=None, address=None, retries=2):
    """Yield ``(position, result)`` for ``function(*tasks[position])`` as each finishes.

    ``result`` is a :class:`TaskFailed` for a task whose worker died more than
    ``retries`` times or that raised. ``function`` must be importable by name
    (a module-level function) for both backends.

    Raises
    ------
    vitforge.errors.ConfigError
        For an unknown backend, or an address without the ``ray`` backend.
    vitforge.errors.ToolchainError
        If the ``ray`` backend is asked for and Ray is not installed.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if address is not None and backend != "ray":
        raise ConfigError(f"address needs the ray backend, not {backend}")
    workers = workers or default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, not {workers!r}")
    tasks = list(tasks)
    if not tasks:                       # nothing to do: start no pool and no Ray
        return iter(())
    if backend == "ray":
        return _ray(function, tasks, workers, address, retries)
    return _local(function, tasks, workers, retries)


def _quiet_worker():
    """Ctrl-C goes to the caller, which stops the workers; a worker prints nothing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool(workers):
    return ProcessPoolExecutor(max_workers=workers, initializer=_quiet_worker,
                               mp_context=multiprocessing.get_context("fork"))


def _stop(executor):
    """Shut ``executor`` down without waiting for running tasks: kill its processes."""
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()


def _local(function, tasks, workers, retries):
    pending = deque(enumerate(tasks))
    suspects = deque()              # ran when a worker died: retried one at a time
    deaths = {}
    while pending or suspects:
        if suspects:
            position, task = suspects.popleft()
            yield from _isolated(function, position, task, suspects, deaths, retries)
            continue
        executor = _pool(workers)
        running = {}
        try:
            while pending or running:
                while pending and len(running) < workers:
                    future = executor.submit(function, *pending[0][1])   # raises if broken
                    running[future] = pending.popleft()
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    position, task = running.pop(future)
                    try:
                        outcome = _outcome(future)
                    except BrokenProcessPool:
                        suspects.append((position, task))
                        raise
                    yield position, outcome
        except BrokenProcessPool:
            suspects.extend(running.values())
        finally:
            _stop(executor)


def _isolated(function, position, task, suspects, deaths, retries):
    """Run one suspect in a process of its own; charge it if that process dies too."""
    executor = _pool(1)
    try:
        future = executor.submit(function, *task)
        wait([future])
        try:
            outcome = _outcome(future)
        except BrokenProcessPool:
            deaths[position] = deaths.get(position, 0) + 1
            if deaths[position] > retries:
                yield position, TaskFailed(f"its worker died {deaths[position]} times")
            else:
                suspects.append((position, task))
        else:
            yield position, outcome
    finally:
        _stop(executor)


def _outcome(future):
    """The future's result, or a :class:`TaskFailed` for an exception the task raised
    (:exc:`BrokenProcessPool`, a dead worker, propagates)."""
    error = future.exception()
    if error is None:
        return future.result()
    if isinstance(error, BrokenProcessPool):
        raise error
    return TaskFailed(f"{type(error).__name__}: {error}")


def _call(function, *arguments):
    """What a Ray task runs: ``function`` is any picklable callable, builtins included."""
    return function(*arguments)


def _ray(function, tasks, workers, address, retries):
    try:
        import ray
    except ImportError:
        raise ToolchainError("the ray backend needs Ray: pip install 'vitforge[ray]' "
                             "(or pip install ray)") from None
    started_here = not ray.is_initialized()
    if started_here:
        options = dict(address=address, include_dashboard=False, log_to_driver=False,
                       configure_logging=False)
        if address is None:
            options.update(num_cpus=workers, object_store_memory=256 * 1024 * 1024)
        ray.init(**options)
    remote = ray.remote(num_cpus=1, max_retries=retries)(_call)
    running = {}
    try:
        for position, task in enumerate(tasks):
            running[remote.remote(function, *task)] = position
        while running:
            (reference,), _ = ray.wait(list(running), num_returns=1)
            position = running.pop(reference)
            try:
                result = ray.get(reference)
            except ray.exceptions.WorkerCrashedError:
                result = TaskFailed(f"its worker died {retries + 1} times")
            except ray.exceptions.RayError as error:
                cause = getattr(error, "cause", None) or error
                result = TaskFailed(f"{type(cause).__name__}: {cause}".splitlines()[0])
            yield position, result
    finally:
        for reference in running:
            ray.cancel(reference, force=True)
        if started_here:
            ray.shutdown()
