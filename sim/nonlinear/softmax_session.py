"""Testbench logic for :class:`~vitforge.hw.nonlinear.softmax.SoftmaxUnit`, for both simulators."""

import numpy as np
from amaranth import signed
from amaranth.lib import data

from ..stream import stream_through
from ..words import pack_fields, pack_int8, unpack_fields

__all__ = ["run_softmax", "row_beats", "check_row_lengths"]


def check_row_lengths(lengths, max_length):
    """Raise :exc:`ValueError` unless every row length lies in ``[1, max_length]``."""
    for length in lengths:
        if not 1 <= length <= max_length:
            raise ValueError(f"softmax row length must lie in [1, max_length={max_length}], "
                             f"not {length}")


def row_beats(row, lanes):
    """The input beats of one row: ``(data, last, count)`` per beat."""
    beats = []
    for start in range(0, len(row), lanes):
        chunk = np.zeros(lanes, dtype=np.int8)
        part = row[start:start + lanes]
        chunk[:len(part)] = part
        last = start + lanes >= len(row)
        beats.append({"data": pack_int8(chunk), "last": int(last),
                      "count": len(part) if last else lanes})
    return beats


async def run_softmax(pins, *, lanes, max_length, out_bits, values, lengths, exp_params,
                      rng=None, valid_rate=1.0, ready_rate=1.0):
    """Stream rows (``values`` cut into ``lengths``) through the unit.

    ``exp_params`` is ``[ratio, alpha, beta, gamma]``. Returns the
    probabilities of all rows, concatenated, and the cycles from the first
    accepted beat to the last output beat.
    """
    from vitforge.hw.nonlinear.exp import ExpParamsLayout
    from vitforge.hw.nonlinear.softmax import softmax_beat_layout

    check_row_lengths(lengths, max_length)
    in_layout = data.Layout.cast(softmax_beat_layout(lanes, signed(8)))
    out_layout = data.Layout.cast(softmax_beat_layout(lanes, signed(out_bits)))
    names = ("ratio", "alpha", "beta", "gamma")
    pins.set("params", pack_fields(data.Layout.cast(ExpParamsLayout),
                                   dict(zip(names, np.asarray(exp_params).tolist()))))
    beats = []
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for start, end in zip(offsets[:-1], offsets[1:]):
        beats += [pack_fields(in_layout, beat)
                  for beat in row_beats(np.asarray(values[start:end], np.int8), lanes)]
    budget = 20 * len(beats) + 200 * len(lengths) + 200
    outputs, cycles = await stream_through(pins, beats, len(beats), rng=rng,
                                           valid_rate=valid_rate, ready_rate=ready_rate,
                                           max_cycles=budget)
    probabilities = []
    element_mask = (1 << out_bits) - 1
    for word in outputs:
        fields = unpack_fields(out_layout, word)
        lanes_data = [(fields["data"] >> (lane * out_bits)) & element_mask
                      for lane in range(fields["count"])]
        probabilities += lanes_data
    return np.array(probabilities, dtype=np.int64), cycles
