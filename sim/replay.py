"""Replay files: one program and its configuration, to run again on both executors.

The differential fuzzer (:mod:`vitforge.sim.fuzz`) saves every failing program
as one; ``vitforge replay FILE`` runs it on the golden interpreter and on the
RTL and says where they differ.
"""

import hashlib
import json
from pathlib import Path
import zipfile

import numpy as np

from vitforge.errors import ConfigError
from vitforge.hw.accel.config import DRAM_WORD_BYTES, AcceleratorConfig
from vitforge.sw.accel.cycles import program_cycles
from vitforge.sw.golden.accel.interpreter import run_program

__all__ = ["run_golden", "difference", "save_replay", "load_replay"]


def run_golden(machine, program_addr=0):
    """Run the program at ``program_addr`` on ``machine`` (a golden ``Machine``); return the
    cycle model's :class:`~vitforge.sw.accel.cycles.ProgramCycles` for it.

    Raises
    ------
    vitforge.errors.ProgramError
        If the interpreter refuses the program (``machine.executed - 1`` is the instruction).
    """
    executed = []
    run_program(machine, program_addr, executed=executed)
    return program_cycles(machine.config, executed)


def difference(golden, predicted, rtl):
    """What the RTL's run ``rtl`` (a :func:`~vitforge.sim.accel.batch.run_batch` result) did
    differently from the golden memory ``golden`` and the cycle model's ``predicted``
    (:class:`~vitforge.sw.accel.cycles.ProgramCycles`: the total, per class and beside a
    GEMM); "" if nothing."""
    if rtl["hung"]:
        return f"the RTL did not finish within {rtl['cycles']} cycles"
    if rtl["error"]:
        return f"the RTL stopped with error {rtl['error']} at instruction {rtl['error_pc']}"
    rtl_bytes, golden_bytes = (np.frombuffer(image, np.uint8) for image in (rtl["dram"], golden))
    differ = np.nonzero(rtl_bytes != golden_bytes)[0]
    if differ.size:
        first = int(differ[0])
        return (f"external byte {first} (word {first // DRAM_WORD_BYTES}): RTL "
                f"{rtl_bytes[first]}, golden {golden_bytes[first]}; {differ.size} bytes differ")
    if rtl["cycles"] != predicted.cycles:
        return (f"the RTL took {rtl['cycles']} cycles, the cycle model predicts "
                f"{predicted.cycles}")
    for what, counters, model in (("per class", rtl["class_cycles"], predicted.class_cycles),
                                  ("beside a GEMM", rtl["side_cycles"], predicted.side_cycles)):
        if counters != model:
            return f"cycles {what}: the RTL counted {counters}, the cycle model predicts {model}"
    return ""


def save_replay(folder, config, image, program_addr=0):
    """Write a replay file into ``folder`` (named by its content); return its path."""
    digest = hashlib.sha256(bytes(image) + json.dumps(config.to_dict()).encode()).hexdigest()
    path = Path(folder) / f"replay-{digest[:16]}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.npz")
    np.savez(partial, image=np.frombuffer(bytes(image), np.uint8), program_addr=program_addr,
             config=json.dumps(config.to_dict()))
    partial.replace(path)
    return path


def load_replay(path):
    """``(config, image, program_addr)`` of a replay file.

    Raises
    ------
    vitforge.errors.ConfigError
        If the file is not a replay file (the message names it and what is wrong).
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = sorted({"image", "program_addr", "config"} - set(archive.files))
            if missing:
                raise ConfigError(f"{path} is not a replay file: it lacks {missing}")
            fields = json.loads(str(archive["config"]))
            image, program_addr = archive["image"], int(archive["program_addr"])
    except (OSError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        raise ConfigError(f"{path} is not a readable replay file: {error}") from None
    if not isinstance(fields, dict):
        raise ConfigError(f"{path}: config must be a JSON object, not {fields!r}")
    try:
        config = AcceleratorConfig(**fields)
    except TypeError as error:
        raise ConfigError(f"{path}: config: {error}") from None
    if image.dtype != np.uint8 or image.ndim != 1 or image.size % DRAM_WORD_BYTES:
        raise ConfigError(f"{path}: image must be bytes in whole {DRAM_WORD_BYTES}-byte words")
    return config, image.tobytes(), program_addr
