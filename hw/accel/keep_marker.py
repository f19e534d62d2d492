"""TOKEN_SELECT's keep decision: the top-k threshold search and the marking of rows."""

from functools import reduce
import operator

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..numerics import (KEEP_SCORE_BITS, PACKAGE_WEIGHT_BITS, PACKAGE_WEIGHT_SHIFT,
                        SIGMOID_FRACTION_BITS)
from .config import MAX_SELECT_TOKENS, SIZE_BITS
from .keep_scorer import WEIGHT_SUM_BITS

__all__ = ["ROW_INFO", "KeepMarker", "SEARCH_DIGIT_BITS", "SEARCH_PASSES", "STEP_DELAY"]

#: The top-k search settles this many bits of the threshold per pass over the scores...
SEARCH_DIGIT_BITS = 4
#: ... so it takes this many passes (9 for 35-bit scores).
SEARCH_PASSES = -(-KEEP_SCORE_BITS // SEARCH_DIGIT_BITS)
_RADIX = 1 << SEARCH_DIGIT_BITS
#: Cycles from a pass's last ``compare`` to its ``step``, without one of either.
STEP_DELAY = 5

#: What the selector knows of a row: kept, or its weight in the package token (0 if kept).
ROW_INFO = data.StructLayout({"keep": 1, "weight": PACKAGE_WEIGHT_BITS})

#: A row whose ``K_i`` is read in this cycle: valid, a scored patch (not the class token or a
#: row past the alive patches), a row at all (below ``T``), the last lane of its tile.
_MARK = data.StructLayout({"valid": 1, "scored": 1, "present": 1, "last": 1})


class KeepMarker(wiring.Component):
    """Decides, row by row, what TOKEN_SELECT keeps, into a memory of row info words.

    Takes the keep scores ``K_i`` from the score memory, read by the unit:
    ``score`` is the score read in the previous cycle.

    ``topk`` only, first: an exact radix search for the k-th largest score
    ``tau``, the largest value that at least ``k`` scores reach. A pass is
    one read of every score (``compare`` in each cycle of one) and, after
    :data:`STEP_DELAY` more cycles (a score is registered as it arrives
    from its block RAM, compared in the next cycle, counted in the one after,
    and the counts give the digit in the next), a ``step``; each pass settles
    one 4-bit digit of ``tau`` from the top
    (:data:`SEARCH_PASSES` = 9 passes for 35 bits): 16 comparators and
    counters count the scores at least ``tau + j place`` for ``j = 1 .. 16``
    (``place`` the digit's weight, ``tau`` holding the digits settled so
    far), and the digit is the number of those counts that reach ``k``. The
    last pass (``place`` 1) also counts the scores above ``tau``; after its
    step ``searched`` is high, and the ``k - #{K_i > tau}`` scores equal to
    ``tau`` met first are kept as well.

    Then marking, one row per cycle, in order from row 0 (``mark``), the
    score registered before it is compared (it leaves a block RAM late in
    its cycle): a scored patch is kept when ``K_i > tau`` or it is one of those ties
    (``topk``) or when ``2 K_i >= 2**15 weight_sum`` (``threshold``); other
    rows are kept while below ``T``. A dropped patch's package weight is
    ``(K_i >> 15) + 1``, a kept row's 0. The keep bits and weights of a
    tile's ``array`` rows make one row info word (layout
    ``ArrayLayout(ROW_INFO, array)``), written to the next address when its
    last row is marked, two cycles after its ``mark``; ``info_read`` reads them back (one
    cycle latency), ``ceil(MAX_SELECT_TOKENS / array)`` words deep. ``dropped`` gives each
    marked row's weight three cycles after its ``mark`` (from a register) and
    ``kept`` counts the patches kept.

    ``start`` (one cycle, at an instruction's start) clears ``kept``, the
    search and the next info address.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    start : ``In(1)``
    topk : ``In(1)``
        The ``topk`` mode, else ``threshold``.
    k : ``In(16)``
        ``min(keep, A)``.
    weight_sum : ``In(20)``
        ``sum_h w_h``.
    score : ``In(35)``
    compare : ``In(1)``
        A score is read for the search in this cycle.
    step : ``In(1)``
        A search pass has ended.
    searched : ``Out(1)``
        The search is over (the counting pass is the current one).
    mark : ``In(StructLayout)``
        ``valid``, ``scored``, ``present``, ``last``: the row whose score is
        read in this cycle.
    info_read : ``Out(ReadPort.Signature)``
    dropped : ``Out(StructLayout)``
        ``valid``: a row was marked; ``weight``: its package weight.
    kept : ``Out(16)``
    """

    def __init__(self, config):
        self._lanes = config.array
        self._info_depth = -(-MAX_SELECT_TOKENS // config.array)
        super().__init__({
            "start": In(1),
            "topk": In(1),
            "k": In(SIZE_BITS),
            "weight_sum": In(WEIGHT_SUM_BITS),
            "score": In(KEEP_SCORE_BITS),
            "compare": In(1),
            "step": In(1),
            "searched": Out(1),
            "mark": In(_MARK),
            "info_read": Out(memory.ReadPort.Signature(
                addr_width=(self._info_depth - 1).bit_length(),
                shape=data.ArrayLayout(ROW_INFO, config.array))),
            "dropped": Out(data.StructLayout({"valid": 1, "weight": PACKAGE_WEIGHT_BITS})),
            "kept": Out(SIZE_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.row_info = row_info = memory.Memory(
            shape=data.ArrayLayout(ROW_INFO, self._lanes), depth=self._info_depth, init=[])
        info_write = row_info.write_port()
        wiring.connect(m, wiring.flipped(self.info_read), row_info.read_port())

        # The search: a pass counts the scores at least `threshold + j place`, j = 1 .. 16;
        # `threshold` is zero from the digit down, so below 16 the sum is an OR. The
        # candidates are registered when the threshold changes, each comparison in the
        # cycle after its score arrives, and counted in the next.
        threshold = Signal(KEEP_SCORE_BITS)
        place = Signal(KEEP_SCORE_BITS)               # one-hot: the digit's lowest bit
        candidates = [Signal(KEEP_SCORE_BITS + 1, name=f"candidate_{j}")
                      for j in range(1, _RADIX + 1)]
        hits = [Signal(name=f"hit_{j}") for j in range(1, _RADIX + 1)]
        counts = [Signal(range(MAX_SELECT_TOKENS + 1), name=f"count_{j}")
                  for j in range(1, _RADIX + 1)]
        ties = Signal(range(MAX_SELECT_TOKENS + 1))   # scores equal to tau still kept
        arriving, compared = Signal(), Signal()       # `score` (`held`) is one of the pass
        held = Signal.like(self.score)
        for j, candidate in zip(range(1, _RADIX + 1), candidates):
            multiple = reduce(operator.or_, (place << bit for bit in range(SEARCH_DIGIT_BITS + 1)
                                             if j >> bit & 1))
            m.d.sync += candidate.eq(threshold + multiple if j == _RADIX else threshold | multiple)
        m.d.sync += [arriving.eq(self.compare), compared.eq(arriving),
                     *(hit.eq(compared & (held >= candidate))
                       for hit, candidate in zip(hits, candidates))]
        with m.If(arriving):
            m.d.sync += held.eq(self.score)
        digit = Signal(SEARCH_DIGIT_BITS)
        m.d.sync += digit.eq(_ones_of_thermometer([count >= self.k for count in counts[:-1]]))
        # The scores above the final tau: the count at the digit, taken at the last step and
        # subtracted from k in the cycle after it (`settling`).
        digit_count = Signal.like(counts[0])
        settling = Signal()
        m.d.sync += [digit_count.eq(Array(counts)[digit]), settling.eq(0)]
        m.d.comb += self.searched.eq(place == 1)
        with m.If(self.start):
            m.d.sync += [threshold.eq(0), place.eq(1 << (SEARCH_PASSES - 1) * SEARCH_DIGIT_BITS),
                         *(count.eq(0) for count in counts)]
        with m.Elif(self.step):
            m.d.sync += [place.eq(place >> SEARCH_DIGIT_BITS), *(count.eq(0) for count in counts)]
            for index in range(SEARCH_PASSES):
                low = index * SEARCH_DIGIT_BITS
                with m.If(place[low]):
                    m.d.sync += threshold[low:low + SEARCH_DIGIT_BITS].eq(digit)
            with m.If(place == 1):                    # the scores above the new tau
                m.d.sync += settling.eq(1)
        with m.Else():
            m.d.sync += [count.eq(count + hit) for count, hit in zip(counts, hits)]
        with m.If(settling):
            m.d.sync += ties.eq(self.k - digit_count)

        # Marking: the row and its score, both registered, appended to the tile's word.
        arrived, row = Signal(_MARK), Signal(_MARK)
        k_i = Signal.like(self.score)
        m.d.sync += [arrived.eq(self.mark), row.eq(arrived), k_i.eq(self.score)]
        tie_kept = (k_i == threshold) & (ties != 0)
        chosen = Mux(self.topk, (k_i > threshold) | tie_kept,
                     (k_i << 1) >= (self.weight_sum << SIGMOID_FRACTION_BITS))
        info = Signal(ROW_INFO)
        m.d.comb += [info.keep.eq(Mux(row.scored, chosen, row.present)),
                     info.weight.eq(Mux(row.scored & ~chosen,
                                        (k_i >> PACKAGE_WEIGHT_SHIFT) + 1, 0))]
        assembled = Signal(data.ArrayLayout(ROW_INFO, self._lanes))
        appended = Cat(assembled.as_value()[ROW_INFO.size:], info)
        tiles = Signal(range(self._info_depth))
        m.d.comb += [info_write.addr.eq(tiles), info_write.data.eq(appended),
                     info_write.en.eq(row.valid & row.last)]
        m.d.sync += [self.dropped.valid.eq(row.valid), self.dropped.weight.eq(info.weight)]
        with m.If(self.start):
            m.d.sync += [self.kept.eq(0), tiles.eq(0)]
        with m.Elif(row.valid):
            m.d.sync += assembled.eq(appended)
            with m.If(row.scored & chosen):
                m.d.sync += self.kept.eq(self.kept + 1)
                with m.If(self.topk & tie_kept):
                    m.d.sync += ties.eq(ties - 1)
            with m.If(row.last):
                m.d.sync += tiles.eq(tiles + 1)
        return m


def _ones_of_thermometer(bits):
    """How many of the 1-bit values ``bits`` are high, given that no high bit follows a low one.

    The counts fall as ``j`` (their threshold) rises, so the comparisons are
    such a code, and its count is where it ends: bit ``b`` of the count is high
    when the code ends in the upper half of a ``2**(b + 1)`` block. Two LUT
    levels, instead of an adder tree.
    """
    count = len(bits)
    digits = []
    for half in (1 << b for b in range(count.bit_length())):
        ends = [bits[start + half - 1] & ~bits[start + 2 * half - 1]
                if start + 2 * half - 1 < count else bits[start + half - 1]
                for start in range(0, count, 2 * half) if start + half - 1 < count]
        digits.append(reduce(operator.or_, ends))
    return Cat(*digits)
