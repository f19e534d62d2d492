"""Output folders: vitforge replaces only what it wrote, checks before working, and says why.

Every command's refusal of a bad output path is a case of ``test_bad_inputs.py``.
"""

import os
from pathlib import Path
import sys

import pytest

from vitforge.errors import OutputError
from vitforge.sw.files import FOLDER_MARKER, atomic_folder, check_replaceable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_cli import run  # noqa: E402


def user_folder(path):
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    return path


def test_only_new_empty_or_marked_folders_are_replaced(tmp_path, monkeypatch):
    check_replaceable(tmp_path / "new")
    check_replaceable(user_folder(tmp_path / "forced"), force=True)
    (tmp_path / "empty").mkdir()
    with atomic_folder(tmp_path / "empty") as staging:
        (staging / "a.txt").write_text("1")
    with atomic_folder(tmp_path / "empty") as staging:          # marked by the first write
        (staging / "b.txt").write_text("2")
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == [FOLDER_MARKER, "b.txt"]
    user = user_folder(tmp_path / "user")
    with pytest.raises(OutputError, match=rf"^'.*user' is a folder vitforge did not write \(no "
                                          rf"{FOLDER_MARKER}\); give another path, or --force "
                                          rf"to replace it$"):
        with atomic_folder(user):
            pass
    (tmp_path / "file.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"^'.*file.txt' is a file, not an output folder"):
        check_replaceable(tmp_path / "file.txt", force=True)
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    with pytest.raises(OutputError, match=r"^'.*link' is a symbolic link; vitforge does not "):
        check_replaceable(tmp_path / "link", force=True)
    monkeypatch.chdir(tmp_path / "empty")
    for here in (".", "..", str(tmp_path)):
        with pytest.raises(OutputError, match=r"is the current folder or holds it; give a new"):
            check_replaceable(here, force=True)
    assert (tmp_path / "user" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "file.txt").read_text() == "mine"
    assert os.readlink(tmp_path / "link") == str(tmp_path / "empty")


def test_generate_replaces_its_own_folder_and_force_replaces_another(tmp_path):
    out = tmp_path / "out"
    for _ in range(2):
        completed = run("generate", "--preset", "small", "--no-resources", "--out", str(out))
        assert completed.returncode == 0, completed.stderr
    user = user_folder(tmp_path / "user")
    completed = run("generate", "--preset", "small", "--no-resources", "--out", str(user),
                    "--force")
    assert completed.returncode == 0, completed.stderr
    assert not (user / "notes.txt").exists() and (user / FOLDER_MARKER).is_file()
    assert (user / "config.json").is_file()


def test_sigterm_mid_generate_stops_its_children_and_leaves_nothing_behind(tmp_path):
    """The estimate runs Yosys for about a minute: SIGTERM to vitforge alone stops it, with
    one line, exit 130, no staging folder and no orphan."""
    import signal
    import subprocess
    import time

    from vitforge.sw.processes import descendants

    command = subprocess.Popen(
        [sys.executable, "-m", "vitforge.sw.cli", "generate", "--preset", "small", "--out",
         str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not descendants(command.pid):           # yosys started
        assert time.monotonic() < deadline and command.poll() is None, command.stderr.read()
        time.sleep(0.05)
    children = descendants(command.pid)
    command.send_signal(signal.SIGTERM)
    _, stderr = command.communicate(timeout=60)
    assert command.returncode == 130
    assert stderr.splitlines()[-1] == "vitforge: interrupted", stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []
    time.sleep(0.2)
    assert [pid for pid in children if Path(f"/proc/{pid}").exists()
            and "zombie" not in Path(f"/proc/{pid}/status").read_text()] == []
