"""Writing outputs so that a reader never sees half a file."""

import os
from pathlib import Path
import tempfile

__all__ = ["write_atomic"]


def write_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file renamed into place.

    Raises
    ------
    OSError
        If the folder does not exist or is not writable; ``path`` is then
        left as it was.
    """
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                     suffix=".tmp", delete=False) as out:
        out.write(text)
    try:
        os.replace(out.name, path)
    except OSError:
        os.unlink(out.name)
        raise
