"""What the command-line handlers share: log lines, progress, JSON and output checks."""

import json
import os
from pathlib import Path
import sys

from vitforge.errors import ConfigError, OutputError

__all__ = ["log", "progress", "write_json", "check_output_folder", "prepare_out_folder"]


def log(line):
    print(f"vitforge: {line}", file=sys.stderr, flush=True)


def progress(done, total, width=30):
    """A progress bar on stderr: ``vitforge: [#####.....] 3/6 images``."""
    filled = width * done // total
    print(f"vitforge: [{'#' * filled}{'.' * (width - filled)}] {done}/{total} images",
          file=sys.stderr, flush=True)


def write_json(path, summary):
    """Write ``summary`` as JSON to ``path`` (atomically), if a path was given."""
    from vitforge.sw.files import write_atomic

    if path:
        write_atomic(path, json.dumps(summary, indent=2) + "\n")


def check_output_folder(path):
    """Fail before a long run, not after it, when an output cannot be written."""
    if path is None:
        return
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise OutputError(f"output folder must exist, not {str(folder)!r}")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output folder must be writable, not {str(folder)!r}")


def prepare_out_folder(path):
    """Check ``--out`` before a long run: create its parent, make sure a folder can go there.

    Returns
    -------
    pathlib.Path
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out must be a folder, not the file {str(out)!r}")
    try:
        out.resolve().parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"out must be a folder that can be created, not {str(out)!r} "
                          f"({error.strerror})") from None
    check_output_folder(out)
    return out
