"""Lane vectors <-> the integers of a port's bits (lane 0 in the low bits)."""

import numpy as np

__all__ = ["pack_int8", "unpack_int8", "pack_fields", "unpack_fields"]


def pack_int8(word):
    """The int8 lanes of ``word`` as one unsigned integer."""
    return int.from_bytes(np.ascontiguousarray(word, dtype=np.int8).tobytes(), "little")


def unpack_int8(value, lanes):
    """Inverse of :func:`pack_int8`."""
    return np.frombuffer(int(value).to_bytes(lanes, "little"), dtype=np.int8)


def pack_fields(layout, values):
    """The integer of a struct ``layout`` whose fields hold ``values`` (a mapping)."""
    word = 0
    for name, field in layout:
        word |= (int(values[name]) & ((1 << field.width) - 1)) << field.offset
    return word


def unpack_fields(layout, word):
    """The fields of struct ``layout`` in the integer ``word``, as unsigned integers."""
    return {name: (int(word) >> field.offset) & ((1 << field.width) - 1)
            for name, field in layout}
