"""Every catalogued bad input (``bad_inputs.py``): one line, its exit status, nothing touched.

Each case runs in this process through :func:`vitforge.sw.cli.main`, in an empty working
folder and with a temporary folder of its own, while anything that would start work (a
Verilog, Verilator or Yosys build, a simulation, a child process) fails the test.
"""

import os
from pathlib import Path
import re
import signal
import sys
import tempfile

import pytest

from vitforge.sw import cli
from vitforge.sw.processes import descendants

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bad_inputs import CASES, CLASSES, markdown_table  # noqa: E402

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"

#: What starts work: builds, simulations and processes. A bad input must not reach them.
WORK = ["vitforge.sim.runner.build", "vitforge.sim.runner.run_test",
        "vitforge.sim.verilog_cache.cached_verilog", "vitforge.sim.gemm.cosim.cached_verilog",
        "vitforge.sim.accel.cosim.cached_verilog", "vitforge.sim.nonlinear.cosim.cached_verilog",
        "vitforge.sim.accel.shell_session.cached_verilog", "vitforge.sw.resources._synthesize",
        "amaranth.back.verilog.convert", "subprocess.Popen",
        "multiprocessing.process.BaseProcess.start"]


class StartedWork(BaseException):
    """Raised where a bad input reached work; not an ``Exception``, so the CLI cannot
    turn it into an exit status."""


def forbid_work(monkeypatch):
    for target in WORK:
        def started(*args, target=target, **kwargs):
            raise StartedWork(f"the command started work: {target}")
        monkeypatch.setattr(target, started)


def snapshot(folder):
    """``{relative path: bytes, "folder" or ("link", target)}`` of everything in ``folder``."""
    found = {}
    for root, folders, files in os.walk(folder):
        for name in folders + files:
            path = Path(root, name)
            relative = str(path.relative_to(folder))
            if path.is_symlink():
                found[relative] = ("link", os.readlink(path))
            elif path.is_dir():
                found[relative] = "folder"
            else:
                found[relative] = path.read_bytes()
    return found


def test_the_catalogue_is_large_unique_and_classified():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)) >= 120
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", id) for id in ids)
    assert {case.kind for case in CASES} == set(CLASSES)
    inputs = [(case.argv, case.files, case.hidden) for case in CASES]
    assert len(set(map(repr, inputs))) == len(inputs), "two cases try the same input"
    commands = {case.argv[0] for case in CASES if case.argv}
    assert commands >= {"doctor", "gemm", "nonlinear", "block", "simulate", "verify", "demo",
                        "generate", "quantize", "prune", "explore", "replay"}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_bad_input_is_one_line_and_its_status_and_changes_nothing(case, tmp_path, monkeypatch,
                                                                     capsys):
    work, temp = tmp_path / "work", tmp_path / "temp"
    work.mkdir()
    temp.mkdir()
    argv, message = case.prepare(work)
    before = snapshot(work)
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))
    for name in case.hidden:
        monkeypatch.setitem(sys.modules, name, None)
    forbid_work(monkeypatch)
    children = set(descendants())
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        try:
            status = cli.main(argv)
        except SystemExit as exit:          # argparse's own exits, if any
            status = exit.code
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"vitforge: error: {message}"), err
    assert status == case.status, err
    assert out == ""
    assert snapshot(work) == before, "the command changed, added or deleted files"
    assert list(temp.iterdir()) == [], "the command left files in the temporary folder"
    assert set(descendants()) - children == set(), "the command left processes behind"


def test_the_documentation_lists_exactly_the_catalogue():
    text = DOCS.read_text()
    section = text.split("\n## Bad inputs tried\n", 1)[1].split("\n## ", 1)[0]
    tables = re.findall(r"(?:^\|.*\|\n)+", section, re.M)
    assert tables and tables[0] == markdown_table(), (
        "docs/reliability.md's table of bad inputs must read (python -c 'import sys; "
        "sys.path.insert(0, \"tests/sw\"); import bad_inputs; print(bad_inputs.markdown_table()"
        ", end=\"\")'):\n" + markdown_table())
