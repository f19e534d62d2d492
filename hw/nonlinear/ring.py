"""Row buffers used as a ring: the slot indices of the row-pipelined units."""

from amaranth import Mux

__all__ = ["next_slot"]


def next_slot(slot, slots):
    """The slot after ``slot`` in a ring of ``slots``."""
    return Mux(slot == slots - 1, 0, slot + 1)
