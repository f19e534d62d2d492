"""Writing outputs so that a reader never sees half a file, and nothing of the user's is lost.

An :exc:`OSError` while an output is written becomes a
:exc:`~vitforge.errors.OutputError` (still an ``OSError``) whose one-line
message names the output and the reason.

An output folder (``generate --out``, ``demo --out``, ``quantize --report``) is
replaced whole, so vitforge replaces only what it made: a folder that carries
:data:`FOLDER_MARKER` (written into every folder :func:`atomic_folder` makes)
or an empty one. Any other folder needs ``force``; a file, a symbolic link,
and the current folder or one that holds it are never replaced
(:func:`check_replaceable`).
"""

import contextlib
import os
from pathlib import Path
import shutil
import tempfile

from vitforge.errors import OutputError

__all__ = ["atomic_output", "write_atomic", "atomic_folder", "check_replaceable",
           "FOLDER_MARKER"]

#: The file that marks a folder as one vitforge wrote, and may replace.
FOLDER_MARKER = ".vitforge-output"


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


def check_replaceable(path, force=False):
    """Raise unless an output folder may be written at ``path``: nothing is there, or an
    empty folder, or a folder with :data:`FOLDER_MARKER`, or with ``force`` any folder.

    Raises
    ------
    vitforge.errors.OutputError
        For a symbolic link (not followed: give the folder it points to), a file, the
        current folder or a folder that holds it, or a folder vitforge did not write.
    """
    path = Path(path)
    if path.is_symlink():
        raise OutputError(f"{str(path)!r} is a symbolic link; vitforge does not replace links: "
                          f"give the folder it points to, or a new path")
    if not path.exists():
        return
    if not path.is_dir():
        raise OutputError(f"{str(path)!r} is a file, not an output folder; vitforge replaces "
                          f"only folders it wrote")
    here = Path.cwd().resolve()
    if path.resolve() == here or path.resolve() in here.parents:
        raise OutputError(f"{str(path)!r} is the current folder or holds it; give a new "
                          f"subfolder")
    if force or (path / FOLDER_MARKER).is_file() or not any(path.iterdir()):
        return
    raise OutputError(f"{str(path)!r} is a folder vitforge did not write (no {FOLDER_MARKER}); "
                      f"give another path, or --force to replace it")


@contextlib.contextmanager
def atomic_folder(path, force=False):
    """Yield an empty staging folder beside ``path``; it replaces ``path`` whole on success.

    On an exception the staging folder is removed and ``path`` is left as it
    was: a reader sees the old folder or the complete new one, never a mix.
    The parent folder is created if needed. The block should only write into
    the staging folder: any :exc:`OSError` in it is reported as one about
    ``path``. The new folder carries :data:`FOLDER_MARKER`.

    Raises
    ------
    vitforge.errors.OutputError
        If ``path`` may not be replaced (:func:`check_replaceable`, with ``force``), the
        parent folder cannot be created or the folder cannot be written.
    """
    path = Path(path)
    check_replaceable(path, force)
    with _reported_as_output_error(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            (staging / FOLDER_MARKER).write_text(
                "vitforge wrote this folder and replaces it whole when asked to write it "
                "again.\n")
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
