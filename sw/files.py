"""Writing outputs so that a reader never sees half a file.

An :exc:`OSError` while an output is written becomes a
:exc:`~vitforge.errors.OutputError` (still an ``OSError``) whose one-line
message names the output and the reason.
"""

import contextlib
import os
from pathlib import Path
import shutil
import tempfile

from vitforge.errors import OutputError

__all__ = ["atomic_output", "write_atomic", "atomic_folder"]


@contextlib.contextmanager
def _reported_as_output_error(path):
    """Re-raise an :exc:`OSError` in the block as an :exc:`OutputError` naming ``path``."""
    try:
        yield
    except OutputError:
        raise
    except OSError as error:
        raise OutputError(f"cannot write {str(path)!r} ({error.strerror or error})") from error


@contextlib.contextmanager
def atomic_output(path, suffix=".tmp"):
    """Yield a temporary file object beside ``path``; it replaces ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as it
    was.

    Raises
    ------
    vitforge.errors.OutputError
        If the folder does not exist or the file cannot be written.
    """
    path = Path(path)
    with _reported_as_output_error(path):
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


@contextlib.contextmanager
def atomic_folder(path):
    """Yield an empty staging folder beside ``path``; it replaces ``path`` whole on success.

    On an exception the staging folder is removed and ``path`` is left as it
    was: a reader sees the old folder or the complete new one, never a mix.
    The parent folder is created if needed. The block should only write into
    the staging folder: any :exc:`OSError` in it is reported as one about
    ``path``.

    Raises
    ------
    vitforge.errors.OutputError
        If the parent folder cannot be created or the folder cannot be written.
    """
    path = Path(path)
    with _reported_as_output_error(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            yield staging
            os.chmod(staging, 0o755)
            if path.exists():
                retired = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
                os.replace(path, retired / path.name)
                os.replace(staging, path)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.replace(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
