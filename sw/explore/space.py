"""Design spaces: a TOML or JSON file of config fields, each with the values to try.

A space maps field names of :class:`~vitforge.hw.accel.config.AcceleratorConfig`
(``array``, ``act_depth``, ``act_read_ports``, ``macs_per_dsp``, ...) or of
:class:`~vitforge.boards.presets.ShellConfig` (``clock_mhz``, ``max_burst``, ...) to
lists of values; the points are every combination (the product), in the
file's key order with the last key varying fastest. Fields a space does not
name keep the board preset's values. ``{}`` is the preset alone. A value that
breaks a config rule makes its point *invalid* (kept in the results with the
reason), not the space.

The sizes of :data:`MODEL_SIZED` may also be ``"model"``: as large as the
model needs on the point's array (what ``simulate`` sizes an accelerator to),
so a space over ``array`` need not list a scratchpad depth per array.

Two keys are not config fields: ``keep``, token pruning, whose values are
``"none"`` (dense) or a list of keep ratios, one per selector stage of the
model's selectors, which then run in ``topk`` mode at those ratios; and
``sparsity``, HP weight sparsity in [0, 1) (0: dense), to which the encoder
layers are pruned by magnitude in column groups of the point's array.
"""

from dataclasses import fields, replace
import itertools
import json
from pathlib import Path
import tomllib

from vitforge.errors import ConfigError
from vitforge.hw.checks import check_lanes

__all__ = ["load_space", "check_space", "space_points", "point_config", "SPACE_KEYS",
           "MAX_POINTS", "MODEL_SIZED"]

#: The most points one space may have.
MAX_POINTS = 100_000
#: The fields whose value may be ``"model"``.
MODEL_SIZED = ("act_depth", "wgt_depth", "prm_depth", "lnp_depth", "k_max")


def _keys():
    from vitforge.boards.presets import ShellConfig
    from vitforge.hw.accel.config import AcceleratorConfig

    accelerator = tuple(field.name for field in fields(AcceleratorConfig))
    shell = tuple(field.name for field in fields(ShellConfig) if field.name != "accelerator")
    return accelerator, shell


#: The keys a space may have: AcceleratorConfig's fields, ShellConfig's, ``keep`` and
#: ``sparsity``.
SPACE_KEYS = sum(_keys(), ()) + ("keep", "sparsity")


def load_space(path):
    """The space in ``path`` (``.toml``, else JSON) as ``{key: [values]}``.

    Raises
    ------
    vitforge.errors.ConfigError
        If the file is missing or malformed, a key is not a config field, a value
        is not a non-empty list of integers, or the space has more than
        :data:`MAX_POINTS` points; the message names the file and the key.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"space {path} cannot be read: "
                          f"{getattr(error, 'strerror', None) or error}") from None
    try:
        space = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as error:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise ConfigError(f"space {path} is not valid {kind}: {error}") from None
    return check_space(space, f"space {path}")


def check_space(space, where="space"):
    """``space`` if it is a valid ``{key: [values]}`` mapping (see :func:`load_space`)."""
    if not isinstance(space, dict):
        raise ConfigError(f"{where} must be a mapping of config fields to lists of values, "
                          f"not {type(space).__name__}")
    points = 1
    for key, values in space.items():
        if key not in SPACE_KEYS:
            raise ConfigError(f"{where}: key {key!r} is not a config field; the fields are "
                              f"{', '.join(SPACE_KEYS)}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: {key} must be a non-empty list of values, not "
                              f"{values!r}")
        for value in values:
            if key == "keep":
                _check_keep(where, value)
                continue
            if key == "sparsity":
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or not 0 <= value < 1:
                    raise ConfigError(f"{where}: sparsity values must be numbers in [0, 1), "
                                      f"not {value!r}")
                continue
            if value == "model" and key in MODEL_SIZED:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                sized = ' or "model"' if key in MODEL_SIZED else ""
                raise ConfigError(f"{where}: {key} values must be integers{sized}, not "
                                  f"{value!r}")
        if len(set(map(json.dumps, values))) != len(values):
            raise ConfigError(f"{where}: {key} lists a value twice: {values}")
        points *= len(values)
    if points > MAX_POINTS:
        raise ConfigError(f"{where} has {points} points, more than {MAX_POINTS}")
    return space


def _check_keep(where, value):
    if value == "none":
        return
    if (not isinstance(value, list) or not value or any(
            isinstance(ratio, bool) or not isinstance(ratio, (int, float))
            or not 0 < ratio <= 1 for ratio in value)):
        raise ConfigError(f"{where}: keep values must be \"none\" or a list of ratios in "
                          f"(0, 1], one per selector stage, not {value!r}")


def space_points(space):
    """Every point of ``space``: a list of ``{key: value}`` dicts (one empty dict for ``{}``)."""
    keys = list(space)
    return [dict(zip(keys, values)) for values in itertools.product(*space.values())]


def point_config(base, point, model_sized=None):
    """The :class:`~vitforge.boards.presets.ShellConfig` ``base`` with ``point``'s fields,
    a ``"model"`` value taken from ``model_sized(array)`` (an AcceleratorConfig sized to the
    model on that array), which is asked only for a valid array.

    Raises
    ------
    vitforge.errors.ConfigError
        If a value breaks a config rule (the point is invalid), or what ``model_sized``
        raises.
    """
    accelerator_keys, shell_keys = _keys()
    accelerator = {key: value for key, value in point.items() if key in accelerator_keys}
    shell = {key: value for key, value in point.items() if key in shell_keys}
    sized = [key for key, value in accelerator.items() if value == "model"]
    if sized:
        if model_sized is None:
            raise ConfigError(f"{', '.join(sized)} \"model\" needs the model")
        array = accelerator.get("array", base.accelerator.array)
        check_lanes("array", array)
        fitted = model_sized(array)
        accelerator.update({key: getattr(fitted, key) for key in sized})
    return replace(base, accelerator=replace(base.accelerator, **accelerator), **shell)
