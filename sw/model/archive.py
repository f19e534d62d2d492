"""Reading vitforge's model files: one ``.npz`` of arrays with a JSON ``meta`` entry."""

import json
import zipfile

import numpy as np

from vitforge.errors import ConfigError

__all__ = ["read_archive"]


def read_archive(path, what, formats):
    """The arrays and the ``meta`` dict of a ``.npz`` file in one of ``formats``.

    Parameters
    ----------
    path : str or os.PathLike
    what : str
        What error messages call the file (``"vitforge model"``).
    formats : sequence of str
        The ``meta["format"]`` values accepted; the first is the current one.

    Returns
    -------
    (dict of numpy.ndarray, dict)
        Every array but ``meta``, and ``meta`` decoded.

    Raises
    ------
    vitforge.errors.ConfigError
        If the file cannot be read as such an archive, has no JSON ``meta``,
        or is in another format.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, TypeError, zipfile.BadZipFile) as error:
        # TypeError: a plain .npy array is not an archive.
        raise ConfigError(f"{path} is not a {what} file ({error})") from None
    if "meta" not in arrays:
        raise ConfigError(f"{path} has no 'meta' entry: not a {what} file")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError as error:
        raise ConfigError(f"{path} has a 'meta' entry that is not JSON ({error})") from None
    found = meta.get("format") if isinstance(meta, dict) else None
    if found not in formats:
        raise ConfigError(f"{path} has format {found!r}, expected {formats[0]!r}")
    return arrays, meta
