"""Weight entries packed back to back in external words, taken apart one word at a time."""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import DRAM_WORD_BYTES

__all__ = ["EntryGearbox", "gearbox_fills"]


def gearbox_fills(entry_bytes, word_bytes=DRAM_WORD_BYTES):
    """The bytes an :class:`EntryGearbox` can hold before a word arrives: each word adds
    ``word_bytes`` and each entry completed takes ``entry_bytes`` (sorted)."""
    fills, fill = set(), 0
    while fill not in fills:
        fills.add(fill)
        fill += word_bytes
        if fill >= entry_bytes:
            fill -= entry_bytes
    return sorted(fills)


class EntryGearbox(wiring.Component):
    """Entries of ``entry_bytes`` (wider than a word), lying back to back in a stream of
    ``DRAM_WORD_BYTES``-byte words, the first entry from the first word's byte 0.

    Each word taken (``take``) goes behind the bytes held from the words before
    it. When they reach a whole entry, ``complete`` is high in that cycle and
    ``entry`` holds it (its lowest byte first), combinationally from ``word``;
    the bytes past it stay held for the next entry. An entry is wider than a
    word, so at most one completes per word: a word per cycle gives an entry every
    ``entry_bytes / DRAM_WORD_BYTES`` cycles on average, where entries padded to
    whole words would take ``ceil(entry_bytes / DRAM_WORD_BYTES)``. ``restart``
    (a cycle without ``take``) drops what is held: the bytes past a run's last entry
    are the padding of its last word. Held bytes are placed by a multiplexer over the
    few fills that occur (:func:`gearbox_fills`; five for 40-byte entries).

    Parameters
    ----------
    entry_bytes : int
        More than ``DRAM_WORD_BYTES``.
    """

    def __init__(self, entry_bytes):
        if entry_bytes <= DRAM_WORD_BYTES:
            raise ValueError(f"entry_bytes must be more than a word ({DRAM_WORD_BYTES}), not "
                             f"{entry_bytes}")
        self._entry_bytes = entry_bytes
        super().__init__({"word": In(8 * DRAM_WORD_BYTES), "take": In(1), "restart": In(1),
                          "entry": Out(8 * entry_bytes), "complete": Out(1)})

    def elaborate(self, platform):
        m = Module()
        entry_bytes = self._entry_bytes
        fills = gearbox_fills(entry_bytes)
        held = Signal(8 * max(fills), name="held")     # bytes above the fill are zero
        fill = Signal(range(max(fills) + 1))
        joined = Signal(8 * (max(fills) + DRAM_WORD_BYTES))
        whole = Signal()
        with m.Switch(fill):
            for value in fills:
                with m.Case(value):
                    m.d.comb += [joined.eq(held | (self.word << 8 * value)),
                                 whole.eq(value + DRAM_WORD_BYTES >= entry_bytes)]
        m.d.comb += [self.entry.eq(joined[:8 * entry_bytes]),
                     self.complete.eq(self.take & whole)]
        with m.If(self.restart):
            m.d.sync += [held.eq(0), fill.eq(0)]
        with m.Elif(self.take & whole):
            m.d.sync += [held.eq(joined[8 * entry_bytes:]),
                         fill.eq(fill + DRAM_WORD_BYTES - entry_bytes)]
        with m.Elif(self.take):
            m.d.sync += [held.eq(joined), fill.eq(fill + DRAM_WORD_BYTES)]
        return m
