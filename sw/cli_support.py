"""What the command-line handlers share: log lines, progress, JSON, output checks, configs."""

import argparse
import json
import os
from pathlib import Path
import sys

from vitforge.errors import ConfigError, OutputError

__all__ = ["log", "progress", "write_json", "check_output_folder", "prepare_out_folder",
           "shell_config", "data_files", "add_data_options", "add_force_option",
           "seed_argument"]


def log(line):
    print(f"vitforge: {line}", file=sys.stderr, flush=True)


def progress(done, total, what="images", width=30):
    """A progress bar on stderr: ``vitforge: [#####.....] 3/6 images``."""
    filled = width * done // max(total, 1)
    print(f"vitforge: [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {what}",
          file=sys.stderr, flush=True)


def print_class_cycles(class_cycles, beside, total, *, indent, width):
    """The cycles per instruction class, their share, and the cycles each class ran beside a
    GEMM (hidden by it, so not in the class's own count)."""
    print(f"{' ' * (indent - 2)}cycles per instruction class{' ' * (width - 14)}"
          f"   share  beside a GEMM")
    for name, cycles in class_cycles.items():
        share = cycles / total if total else 0
        hidden = f"{beside[name]:13.0f}" if beside.get(name) else ""
        print(f"{' ' * indent}{name:{width}} {cycles:10.0f}  {share:6.1%}  {hidden}".rstrip())


def seed_argument(text):
    """The ``--seed`` type: a non-negative integer, what NumPy's generators accept."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, not {seed}")
    return seed


def write_json(path, summary):
    """Write ``summary`` as JSON to ``path`` (atomically), if a path was given."""
    from vitforge.sw.files import write_atomic

    if path:
        write_atomic(path, json.dumps(summary, indent=2) + "\n")


def check_output_folder(path, file=True):
    """Fail before a long run, not after it, when an output cannot be written: its folder
    must exist and be writable, and an output ``file`` must not be a folder."""
    if path is None:
        return
    if file and Path(path).is_dir():
        raise OutputError(f"cannot write {str(path)!r} (Is a directory)")
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise OutputError(f"output folder must exist, not {str(folder)!r}")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output folder must be writable, not {str(folder)!r}")


def prepare_out_folder(path, force=False):
    """Check ``--out`` before a long run: create its parent, make sure a folder can go there
    and may replace what is there (:func:`~vitforge.sw.files.check_replaceable`).

    Returns
    -------
    pathlib.Path
    """
    from vitforge.sw.files import check_replaceable

    out = Path(path)
    if out.exists() and not out.is_dir() and not out.is_symlink():
        raise ConfigError(f"out must be a folder, not the file {str(out)!r}")
    check_replaceable(out, force)
    try:
        out.resolve().parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"out must be a folder that can be created, not {str(out)!r} "
                          f"({error.strerror})") from None
    check_output_folder(out, file=False)
    return out


def add_force_option(parser, what="--out"):
    """``--force``: replace a folder vitforge did not write."""
    parser.add_argument("--force", action="store_true",
                        help=f"replace {what} even if it is a folder vitforge did not write")


def add_data_options(parser):
    """``--data``, ``--calibration``, ``--mean``, ``--std`` and ``--observer``, as simulate,
    verify, demo and quantize take them."""
    from vitforge.sw.model.observers import OBSERVERS

    parser.add_argument("--data", metavar="FILE.npz",
                        help="your images: an .npz with 'images' (n, C, H, W) float and "
                             "optional 'labels' (n,); the first fifth (at most 64) calibrate "
                             "unless --calibration is given (default: the model's own data, "
                             "else random images)")
    parser.add_argument("--calibration", metavar="FILE.npz",
                        help="calibrate on this file's images instead (needs --data)")
    parser.add_argument("--mean", help="subtract from every image: one number or one per "
                                       "channel, comma-separated (needs --data)")
    parser.add_argument("--std", help="then divide by: one number or one per channel "
                                      "(needs --data)")
    parser.add_argument("--observer", default="auto", choices=("auto", *OBSERVERS),
                        help="how activations' int8 scales are chosen: auto (the rule of "
                             "docs/quantization.md) or one observer for all (default auto)")


def data_files(args):
    """The :class:`~vitforge.sw.model.data.DataFiles` of ``args``, or ``None`` without
    ``--data``."""
    from vitforge.sw.model.data import DataFiles

    if args.data is None:
        given = [f"--{name}" for name in ("calibration", "mean", "std")
                 if getattr(args, name) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} need --data")
        return None
    for option, path in (("data", args.data), ("calibration", args.calibration)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{option} must be an existing .npz file, not {path!r}")
    return DataFiles(path=args.data, calibration=args.calibration, mean=args.mean, std=args.std)


def shell_config(preset, path):
    """The hardware config that ``--preset NAME`` or ``--config FILE`` names, and which it was.

    Returns
    -------
    (vitforge.boards.presets.ShellConfig, str or None)
        The config and ``"preset NAME"`` or ``"config FILE"``; with neither
        option, :data:`~vitforge.boards.presets.DEFAULT_PRESET`'s config and ``None``.

    Raises
    ------
    vitforge.errors.ConfigError
        For both options, an unknown preset or a bad config file.
    """
    from vitforge.boards.presets import DEFAULT_PRESET, PRESETS, load_shell_config

    if preset and path:
        raise ConfigError("give --preset or --config, not both")
    if path:
        return load_shell_config(path), f"config {path}"
    if preset is None:
        return PRESETS[DEFAULT_PRESET], None
    if preset not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, not {preset!r}")
    return PRESETS[preset], f"preset {preset}"
