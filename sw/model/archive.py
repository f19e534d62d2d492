"""Reading vitforge's model files: one ``.npz`` of arrays with a JSON ``meta`` entry."""

import json
import zipfile

import numpy as np

from vitforge.errors import ConfigError

__all__ = ["read_archive", "float_arrays"]


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
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as error:
        # TypeError: a plain .npy array is not an archive; EOFError: an empty file.
        raise ConfigError(f"{path} is not a {what} file ({error})") from None
    if "meta" not in arrays:
        hint = ("; it holds 'images': pass a data file as --data" if "images" in arrays
                else "")
        raise ConfigError(f"{path} has no 'meta' entry: not a {what} file{hint}")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError as error:
        raise ConfigError(f"{path} has a 'meta' entry that is not JSON ({error})") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{path} has a 'meta' entry that is a JSON {type(meta).__name__}, "
                          f"not an object: not a {what} file")
    found = meta.get("format")
    if found not in formats:
        raise ConfigError(f"{path} has format {found!r}, expected {formats[0]!r}")
    return arrays, meta


def float_arrays(path, arrays, expected, holder):
    """The arrays ``expected`` names, as float64, after checking keys, shapes and values.

    Parameters
    ----------
    path : str or os.PathLike
        The file, for the messages.
    arrays : dict of numpy.ndarray
        What :func:`read_archive` found.
    expected : dict
        Key -> shape of every array the file must hold, and no others.
    holder : str
        What the file holds, for the unexpected-key message (``"a model of shape ..."``).

    Raises
    ------
    vitforge.errors.ConfigError
        Naming the first key that is missing, unexpected, of the wrong shape (both
        shapes), not real numbers, or not finite.
    """
    for key in sorted(set(expected) - set(arrays)):
        raise ConfigError(f"{path}: key {key!r} is missing (expected shape {expected[key]})")
    for key in sorted(set(arrays) - set(expected)):
        raise ConfigError(f"{path}: unexpected key {key!r} for {holder}")
    values = {}
    for key, size in expected.items():
        array = arrays[key]
        if array.shape != size:
            raise ConfigError(f"{path}: key {key!r} has shape {array.shape}, expected {size}")
        if array.dtype.kind not in "fiu":
            raise ConfigError(f"{path}: key {key!r} has dtype {array.dtype}, expected real "
                              f"numbers")
        values[key] = array.astype(np.float64)
        if not np.isfinite(values[key]).all():
            raise ConfigError(f"{path}: key {key!r} has values that are not finite")
    return values
