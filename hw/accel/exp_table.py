"""SOFTMAX's ``exp_q15`` as a table per lane, filled by one shared :class:`ExpUnit`."""

from amaranth import Cat, Module, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..nonlinear.exp import EXP_LATENCY, ExpParamsLayout, ExpUnit
from ..numerics import EXP_BITS, OPERAND_BITS

__all__ = ["ExpTable", "TABLE_LATENCY", "FILL_CYCLES"]

#: Cycles from :attr:`ExpTable.n` to :attr:`ExpTable.e`: the table's registered read, then
#: the entry chosen from its word into a register (so that the product after the table
#: starts at a register).
TABLE_LATENCY = 2
_ENTRIES = 1 << OPERAND_BITS                 # n = max - x: 0 to 255
_PER_WORD = 8                                # entries per table word (distributed RAM)
_WORDS = _ENTRIES // _PER_WORD
#: Cycles from ``start`` to ``busy`` falling: one entry fed per cycle, the exp pipeline,
#: the last word's write.
FILL_CYCLES = 1 + _ENTRIES + EXP_LATENCY + 1


class ExpTable(wiring.Component):
    """``e = exp_q15(n)`` (``docs/numerics.md``) for ``lanes`` values ``0 <= n <= 255`` per
    cycle, by lookup.

    ``start`` (while not :attr:`busy`) fills the table for :attr:`params`: one
    :class:`ExpUnit` of one lane computes the 256 entries, one a cycle, and
    every lane's copy takes them (32 words of eight 16-bit entries, which
    Yosys maps to distributed RAM: a read port per copy). :attr:`busy`
    falls :data:`FILL_CYCLES` cycles after ``start``; :attr:`params` must
    hold until then. Afterwards :attr:`e` is ``exp_q15`` of :attr:`n`
    :data:`TABLE_LATENCY` cycles later, one vector per cycle, exact (the same
    unit computed each entry). Replaces :class:`ExpUnit`'s four multipliers
    per lane. A lookup is made in the cycles :attr:`en` is high (by default
    every cycle); otherwise :attr:`e` holds.

    With ``reads=2`` each copy has a second read port, :attr:`pair_n` to
    :attr:`pair_e` under :attr:`pair_en`, the same latency: two values per lane
    and cycle (SOFTMAX's sums pass, two words a cycle).

    Parameters
    ----------
    lanes : int
    reads : int
        1 or 2 lookups per lane and cycle.

    Attributes
    ----------
    start : ``In(1)``
    params : ``In(ExpParamsLayout)``
    busy : ``Out(1)``
    en : ``In(1, init=1)``
        Look :attr:`n` up: low while it is undefined, as a memory's read data before the
        first read (X in a 4-state simulator), so that no register takes it.
    n : ``In(ArrayLayout(unsigned(8), lanes))``
    e : ``Out(ArrayLayout(unsigned(16), lanes))``
    pair_en, pair_n, pair_e
        The second read's (``reads=2`` only).
    """

    def __init__(self, *, lanes, reads=1):
        if reads not in (1, 2):
            raise ValueError(f"reads must be 1 or 2 lookups per lane and cycle, not {reads!r}")
        self._lanes = lanes
        self._prefixes = ("", "pair_")[:reads]
        super().__init__({
            "start": In(1),
            "params": In(ExpParamsLayout),
            "busy": Out(1),
            **{member: port for prefix in self._prefixes for member, port in (
                (f"{prefix}en", In(1, init=1)),
                (f"{prefix}n", In(data.ArrayLayout(unsigned(OPERAND_BITS), lanes))),
                (f"{prefix}e", Out(data.ArrayLayout(unsigned(EXP_BITS), lanes))))},
        })

    def elaborate(self, platform):
        m = Module()

        # Fill: n = 0, 1, ... 255 through the exp pipeline, eight entries to a word.
        m.submodules.exp = exp = ExpUnit(lanes=1)
        feed = Signal(OPERAND_BITS)
        feeding = Signal()
        valid = Signal(EXP_LATENCY)
        m.d.comb += [exp.enable.eq(1), exp.params.eq(self.params), exp.n[0].eq(feed)]
        m.d.sync += valid.eq(Cat(feeding, valid[:-1]))
        with m.If(feeding):
            m.d.sync += feed.eq(feed + 1)
            with m.If(feed == _ENTRIES - 1):
                m.d.sync += feeding.eq(0)
        entry = Signal(OPERAND_BITS)                 # the entry leaving the pipeline
        word = Signal(_PER_WORD * EXP_BITS)
        write = Signal()
        address = Signal(range(_WORDS))
        m.d.sync += write.eq(0)
        with m.If(valid[-1]):
            m.d.sync += [word.eq(Cat(word[EXP_BITS:], exp.e[0])), entry.eq(entry + 1),
                         address.eq(entry // _PER_WORD)]
            with m.If(entry % _PER_WORD == _PER_WORD - 1):
                m.d.sync += write.eq(1)
        with m.If(write & (address == _WORDS - 1)):
            m.d.sync += self.busy.eq(0)
        with m.If(self.start):
            m.d.sync += [self.busy.eq(1), feeding.eq(1), feed.eq(0), entry.eq(0)]

        # A copy per lane, read in the cycles of en; its entry registered a cycle later.
        tables = []
        for lane in range(self._lanes):
            m.submodules[f"table_{lane}"] = table = memory.Memory(
                shape=len(word), depth=_WORDS, init=[])
            writer = table.write_port()
            m.d.comb += [writer.addr.eq(address), writer.data.eq(word), writer.en.eq(write)]
            tables.append(table)
        for prefix in self._prefixes:
            enable, n, e = (getattr(self, f"{prefix}{name}") for name in ("en", "n", "e"))
            looked_up = Signal(name=f"{prefix}looked_up")
            m.d.sync += looked_up.eq(enable)
            for lane, table in enumerate(tables):
                reader = table.read_port()
                select = Signal(range(_PER_WORD), name=f"{prefix}select_{lane}")
                m.d.comb += [reader.addr.eq(n[lane] // _PER_WORD), reader.en.eq(enable)]
                with m.If(enable):
                    m.d.sync += select.eq(n[lane] % _PER_WORD)
                with m.If(looked_up):
                    m.d.sync += e[lane].eq(reader.data.word_select(select, EXP_BITS))
        return m
