"""Testbench logic for :class:`~vitforge.hw.nonlinear.layernorm.LayerNormUnit`, for both simulators."""

import numpy as np
from amaranth.lib import data

from ..stream import stream_through
from ..words import pack_fields, pack_int8, unpack_int8

__all__ = ["run_layernorm"]


async def run_layernorm(pins, *, lanes, channels, values, gamma, beta, scalars, rng=None,
                        valid_rate=1.0, ready_rate=1.0):
    """Load per-channel ``gamma``/``beta`` and ``scalars = [eps, multiplier, shift]``,
    stream the rows in ``values`` (rows of ``channels``, concatenated) and return
    ``(outputs, cycles)``.
    """
    from vitforge.hw.nonlinear.layernorm import ChannelParams, LayerNormParamsLayout

    eps, multiplier, shift = (int(v) for v in scalars)
    pins.set("params", pack_fields(data.Layout.cast(LayerNormParamsLayout),
                                   {"eps": eps, "multiplier": multiplier, "shift": shift}))
    channel_layout = data.Layout.cast(ChannelParams)
    for word in range(channels // lanes):
        packed = 0
        for lane in range(lanes):
            channel = word * lanes + lane
            fields = {"gamma": gamma[channel], "beta": beta[channel]}
            packed |= pack_fields(channel_layout, fields) << (lane * channel_layout.size)
        pins.set("channel_write.addr", word)
        pins.set("channel_write.data", packed)
        pins.set("channel_write.en", 1)
        await pins.tick()
    pins.set("channel_write.en", 0)
    beats = [pack_int8(word) for word in np.asarray(values, np.int8).reshape(-1, lanes)]
    rows = len(values) // channels
    budget = 20 * len(beats) + 200 * rows + 200
    outputs, cycles = await stream_through(pins, beats, len(beats), rng=rng,
                                           valid_rate=valid_rate, ready_rate=ready_rate,
                                           max_cycles=budget)
    return np.concatenate([unpack_int8(beat, lanes) for beat in outputs]), cycles
