"""``vitforge explore``: every point of a space evaluated, resumable, on a local pool or Ray.

The output folder holds ``explore.json`` (what is explored: the model, board,
seed, data, selectors and base config), ``points.jsonl`` (one line per evaluated point,
appended and flushed as each finishes) and, with ``--fidelity sim``,
``simulated.jsonl`` (the Pareto points co-verified on the RTL). An interrupted
run (Ctrl-C, a crash, a lost machine) keeps every finished line; running the
same command again evaluates only the points that are missing or failed. The summary
files (:func:`~.results.write_results`) are rewritten from the lines at the end
of every run, also an interrupted one.
"""

from dataclasses import dataclass
import json
import os
from pathlib import Path

from vitforge.errors import ConfigError, OutputError

from .backends import TaskFailed, run_tasks
from .evaluate import blank_row, evaluate_point, row_key, simulate_point
from .results import pareto_front, write_results
from .space import space_points

__all__ = ["explore", "open_folder", "ExploreResult", "MARKER"]

#: The file that makes a folder an exploration folder.
MARKER = "explore.json"


@dataclass
class ExploreResult:
    """What :func:`explore` did: every row of the space (in its order), the front (fastest
    first), and how many rows were evaluated now and taken from the folder."""

    rows: list
    front: list
    evaluated: int
    reused: int

    def count(self, status):
        return sum(row["status"] == status for row in self.rows)


def _identity(study):
    return {"model": study.model, "board": study.board, "seed": study.seed,
            "data": None if study.data is None else study.data.path,
            "observer": study.observer, "prune": study.prune, "base": study.base.to_dict()}


def open_folder(study, out, create=True):
    """Create ``out`` or check that it holds an exploration of ``study`` (before any work);
    with ``create`` false, only check.

    Raises
    ------
    vitforge.errors.OutputError, vitforge.errors.ConfigError
        For a file, a folder explore did not create, or one holding another study.
    """
    identity = _identity(study)
    out = Path(out)
    marker = out / MARKER
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} exists and is not a folder")
    if out.is_dir() and not marker.exists() and any(out.iterdir()):
        raise OutputError(f"--out {out} is a folder that vitforge explore did not create "
                          f"(no {MARKER}); choose a new or empty folder")
    if marker.exists():
        try:
            previous = json.loads(marker.read_text())
        except (OSError, ValueError) as error:
            raise OutputError(f"--out {out}: {MARKER} cannot be read ({error})") from None
        changed = sorted(key for key in identity if previous.get(key) != identity[key])
        if changed:
            raise ConfigError(f"--out {out} holds an exploration with another "
                              f"{', '.join(changed)}; choose another folder to explore "
                              f"this one")
        return out
    if not create:
        return out
    from vitforge.sw.files import write_atomic

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create {str(out)!r} ({error.strerror or error})") from None
    write_atomic(marker, json.dumps(identity, indent=2, sort_keys=True) + "\n")
    return out


def _read_lines(path):
    """Rows of a ``.jsonl`` file by point key; a torn last line (a crash mid-write) is
    skipped."""
    rows = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                rows[row["point"]] = row
            except (ValueError, KeyError, TypeError):
                continue
    return rows


class _Appender:
    """Appends rows to a ``.jsonl`` file, each flushed to disk before the next."""

    def __init__(self, path):
        self._file = open(path, "a")

    def write(self, row):
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self):
        self._file.close()


def explore(study, space, out, *, fidelity="model", backend="local", workers=None,
            address=None, progress=None, log=print):
    """Evaluate every point of ``space`` for ``study`` into folder ``out``.

    ``progress(done, total, what)`` is called as points finish. Points already
    in ``out`` (same study, same point) are not evaluated again. With
    ``fidelity="sim"`` the Pareto points are then co-verified on the RTL (those not
    co-verified in ``out`` before: a folder explored with ``model`` can go on with ``sim``).

    Returns
    -------
    ExploreResult

    Raises
    ------
    KeyboardInterrupt
        After the summary files of the finished points have been written.
    """
    if fidelity not in ("model", "sim"):
        raise ConfigError(f"fidelity must be model or sim, not {fidelity!r}")
    out = open_folder(study, out)
    points = space_points(space)
    done = _read_lines(out / "points.jsonl")
    simulated = _read_lines(out / "simulated.jsonl")
    rows = {}
    for index, point in enumerate(points):
        key = row_key(point)
        if key in done and done[key]["status"] != "failed":     # failed points run again
            rows[key] = {**done[key], "index": index}
    todo = [(index, point) for index, point in enumerate(points) if row_key(point) not in rows]
    reused = len(rows)
    try:
        _evaluate(study, todo, rows, out, backend, workers, address, progress, len(points))
        if fidelity == "sim":
            front = [row for row in pareto_front(list(rows.values()))
                     if row["point"] not in simulated]
            _simulate(study, front, simulated, out, backend, workers, address, progress)
    finally:
        final = [{**row, **{key: simulated[row["point"]][key]
                            for key in ("simulated_cycles", "bit_exact")}}
                 if row["point"] in simulated else row for row in rows.values()]
        front = write_results(out, final, study, log=log)
    return ExploreResult(sorted(final, key=lambda row: row["index"]), front,
                         len(todo), reused)


def _evaluate(study, todo, rows, out, backend, workers, address, progress, total):
    from .resource_model import ResourceModel

    resource_model = ResourceModel.load()
    appender = _Appender(out / "points.jsonl")
    done = total - len(todo)
    if progress:
        progress(done, total, "points evaluated")
    try:
        tasks = [(study, index, point, resource_model) for index, point in todo]
        for position, row in run_tasks(evaluate_point, tasks, backend=backend,
                                       workers=workers, address=address):
            if isinstance(row, TaskFailed):
                index, point = todo[position]
                row = {**blank_row(index, point), "status": "failed", "error": row.reason}
            rows[row["point"]] = row
            appender.write(row)
            done += 1
            if progress:
                progress(done, total, "points evaluated")
    finally:
        appender.close()


def _simulate(study, front, simulated, out, backend, workers, address, progress):
    appender = _Appender(out / "simulated.jsonl")
    if progress:
        progress(0, len(front), "Pareto points co-verified")
    try:
        tasks = [(study, row) for row in front]
        for count, (position, row) in enumerate(
                run_tasks(simulate_point, tasks, backend=backend, workers=workers,
                          address=address), start=1):
            if isinstance(row, TaskFailed):
                row = {**front[position], "simulated_cycles": None, "bit_exact": False,
                       "error": f"co-verification failed: {row.reason}"}
            simulated[row["point"]] = row
            appender.write(row)
            if progress:
                progress(count, len(front), "Pareto points co-verified")
    finally:
        appender.close()
