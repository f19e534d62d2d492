"""Writing outputs so that a reader never sees half a file."""

import contextlib
import os
from pathlib import Path
import tempfile

__all__ = ["atomic_output", "write_atomic"]


@contextlib.contextmanager
def atomic_output(path, suffix=".tmp"):
    """Yield a temporary file object beside ``path``; it replaces ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as it
    was.

    Raises
    ------
    OSError
        If the folder does not exist or is not writable.
    """
    path = Path(path)
    handle = tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.",
                                         suffix=suffix, delete=False)
    try:
        with handle:
            yield handle
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise


def write_atomic(path, text):
    """Write ``text`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as out:
        out.write(text.encode())
