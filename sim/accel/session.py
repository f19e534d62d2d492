"""Testbench logic for the simulated accelerator system, shared by both simulators."""

from dataclasses import dataclass

import numpy as np

from vitforge.hw.accel.isa import COUNTER_CLASSES, SIDE_CLASSES
from vitforge.hw.accel.profile import PROFILE_DEPTH
from vitforge.hw.gemm.core import COUNTER_BITS

__all__ = ["SystemResult", "run_system"]


@dataclass
class SystemResult:
    dram: bytes               # the whole external memory after the run
    done: bool
    error: int
    error_pc: int
    cycles: int
    class_cycles: dict
    side_cycles: dict
    retired_at: list = None   # cycle count when each instruction retired (0: retired with another)


def _counters(value, names):
    """Counter name -> value, from the bits of an array of counters named ``names``."""
    mask = (1 << COUNTER_BITS) - 1
    return {name: (value >> index * COUNTER_BITS) & mask for index, name in enumerate(names)}


def _words(image):
    raw = np.frombuffer(bytes(image), dtype=np.uint8).reshape(-1, 16)
    return [int.from_bytes(row.tobytes(), "little") for row in raw]


async def run_system(pins, image, program_addr, *, memory_words, max_cycles,
                     instructions=0):
    """Load ``image``, run the program at ``program_addr``, read all memory back,
    and the retirement cycles of its first ``instructions`` instructions.

    Raises
    ------
    WatchdogError
        If the accelerator does not finish within ``max_cycles``.
    """
    words = _words(image)
    if len(words) > memory_words:
        raise ValueError(f"image needs {len(words)} words, memory holds {memory_words}")
    pins.set("host_we", 1)
    for address, word in enumerate(words):
        pins.set("host_addr", address)
        pins.set("host_wdata", word)
        await pins.tick()
    pins.set("host_we", 0)
    pins.set("program_addr", program_addr)
    pins.set("start", 1)
    await pins.tick()
    pins.set("start", 0)
    await pins.wait_until("busy", 0, max_cycles)
    result = SystemResult(dram=b"", done=bool(pins.get("done")), error=pins.get("error"),
                          error_pc=pins.get("error_pc"), cycles=pins.get("cycles"),
                          class_cycles=_counters(pins.get("class_cycles"), COUNTER_CLASSES),
                          side_cycles=_counters(pins.get("side_cycles"), SIDE_CLASSES))
    out = bytearray()
    for address in range(len(words)):
        pins.set("host_addr", address)
        await pins.tick()
        out += pins.get("host_rdata").to_bytes(16, "little")
    result.dram = bytes(out)
    result.retired_at = []
    for index in range(min(instructions, PROFILE_DEPTH)):
        pins.set("profile_addr", index)
        await pins.tick()
        result.retired_at.append(pins.get("profile_data"))
    return result
