"""Testbench logic for :class:`~vitforge.hw.nonlinear.gelu.GeluUnit`, for both simulators."""

import numpy as np

from ..stream import stream_through
from ..words import pack_int8, unpack_int8

__all__ = ["run_gelu"]


async def run_gelu(pins, *, lanes, table, values, rng=None, valid_rate=1.0, ready_rate=1.0):
    """Load ``table``, stream int8 ``values`` through the unit, return ``(outputs, cycles)``.

    ``values`` is padded with zeros to whole beats; the padding is dropped
    from the outputs. ``cycles`` counts from the first accepted beat to the
    last output beat.
    """
    for address, entry in enumerate(np.asarray(table, dtype=np.int8)):
        pins.set("table_write.addr", address)
        pins.set("table_write.data", int(entry) & 0xFF)
        pins.set("table_write.en", 1)
        await pins.tick()
    pins.set("table_write.en", 0)
    values = np.asarray(values, dtype=np.int8)
    padded = np.zeros(-(-len(values) // lanes) * lanes, dtype=np.int8)
    padded[:len(values)] = values
    beats = [pack_int8(word) for word in padded.reshape(-1, lanes)]
    budget = 20 * len(beats) + 100
    outputs, cycles = await stream_through(pins, beats, len(beats), rng=rng,
                                           valid_rate=valid_rate, ready_rate=ready_rate,
                                           max_cycles=budget)
    result = np.concatenate([unpack_int8(beat, lanes) for beat in outputs])
    return result[:len(values)], cycles
