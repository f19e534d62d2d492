"""TOKEN_SELECT's keep scores ``K_i``: head weights and score differences through SIG."""

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..numerics import KEEP_SCORE_BITS, MAX_SELECTOR_HEADS, SIGMOID_BITS
from .config import MAX_SELECT_TOKENS, SIGMOID_WORDS
from .ports import MEMORY_DATA_BITS, act_word

__all__ = ["KeepScorer", "WEIGHT_SUM_BITS"]

#: ``sum_h w_h`` over up to ``MAX_SELECTOR_HEADS`` heads.
WEIGHT_SUM_BITS = SIGMOID_BITS + (MAX_SELECTOR_HEADS - 1).bit_length()

#: Entries of a SIG word: the low bits of a table index.
_ENTRY_BITS = (MEMORY_DATA_BITS // SIGMOID_BITS - 1).bit_length()


class KeepScorer(wiring.Component):
    """The keep scores ``K_i = sum_h w_h s_h,i`` of TOKEN_SELECT, in a memory of its own.

    Holds the sigmoid tables SIG (``SIGMOID_WORDS`` = 64 words of 8 unsigned
    16-bit entries, written through ``sig_write``): an int8 read as unsigned
    indexes the keep table (words 0 .. 31) for a score difference, the
    weight table (words 32 .. 63) for a head-weight logit.

    Each cycle the unit may read one activation word and say on ``read``
    what it holds; the word is on ``data`` in the next cycle. A head-weight
    read (``read.weight``) looks lane 0 up in the weight table and keeps the
    entry as ``w_h`` of head ``read.head``; a difference read looks lane
    ``read.lane`` up in the keep table and multiplies the entry by ``w_h``
    (one 16 x 16 multiplier), and the products of a patch's heads, from
    ``read.first`` to ``read.last``, are summed into ``K_i``. The scores are
    written to the score memory (``MAX_SELECT_TOKENS`` x 35 bits) at 0, 1,
    ... in the order of the patches; ``score_read`` reads them back.
    ``weight_sum`` is ``sum_h w_h``. All exact: ``K_i`` holds 16 products
    of ``2**15 x 2**15``.

    Latency: a ``K_i`` is written 5 cycles after the read of its last
    difference (activation read, word register, table read, the product's operands, the
    product, sum); ``busy`` while
    a read is in the pipeline. Throughput: one read per cycle. ``start``
    (one cycle, before the first read) restarts the writes at score 0 and
    clears ``weight_sum``.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    start : ``In(1)``
    read : ``In(StructLayout)``
        ``valid``, ``weight``, ``head``, ``lane``, ``first``, ``last``: the
        activation read issued in this cycle.
    data : ``In(act_word(config))``
        The word read in the previous cycle.
    sig_write : ``Out(WritePort.Signature)``
        Writes into SIG.
    score_read : ``Out(ReadPort.Signature)``
        Reads of the score memory (one cycle latency).
    weight_sum : ``Out(20)``
    busy : ``Out(1)``
    """

    def __init__(self, config):
        self._read = data.StructLayout({
            "valid": 1, "weight": 1, "head": range(MAX_SELECTOR_HEADS),
            "lane": range(config.array), "first": 1, "last": 1})
        super().__init__({
            "start": In(1),
            "read": In(self._read),
            "data": In(act_word(config)),
            "sig_write": Out(memory.WritePort.Signature(
                addr_width=(SIGMOID_WORDS - 1).bit_length(), shape=MEMORY_DATA_BITS)),
            "score_read": Out(memory.ReadPort.Signature(
                addr_width=(MAX_SELECT_TOKENS - 1).bit_length(), shape=KEEP_SCORE_BITS)),
            "weight_sum": Out(WEIGHT_SUM_BITS),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.sigmoid = sigmoid = memory.Memory(
            shape=MEMORY_DATA_BITS, depth=SIGMOID_WORDS, init=[])
        table = sigmoid.read_port()
        wiring.connect(m, wiring.flipped(self.sig_write), sigmoid.write_port())
        m.submodules.scores = scores = memory.Memory(
            shape=KEEP_SCORE_BITS, depth=MAX_SELECT_TOKENS, init=[])
        score_write = scores.write_port()
        wiring.connect(m, wiring.flipped(self.score_read), scores.read_port())

        weights = Array(Signal(SIGMOID_BITS, name=f"weight_{h}")
                        for h in range(MAX_SELECTOR_HEADS))
        score = Signal(KEEP_SCORE_BITS)
        written = Signal(range(MAX_SELECT_TOKENS))
        looked_up = Signal(data.StructLayout({
            "valid": 1, "weight": 1, "head": range(MAX_SELECTOR_HEADS), "entry": _ENTRY_BITS,
            "first": 1, "last": 1}))
        operands = Signal(data.StructLayout({"valid": 1, "weight": SIGMOID_BITS,
                                             "entry": SIGMOID_BITS, "first": 1, "last": 1}))
        product = Signal(data.StructLayout({"valid": 1, "product": 2 * SIGMOID_BITS,
                                            "first": 1, "last": 1}))

        # Stage 1: the word arrives and is registered (it comes from a block RAM late in
        # its cycle). Stage 2: its byte indexes SIG. Read data, and the products of it,
        # are registered with their valid bit only (before a memory's first read its data
        # is undefined: X in a 4-state simulator).
        arrived = Signal(self._read)
        held = Signal(self._read)
        word = Signal.like(self.data)
        m.d.sync += [arrived.eq(self.read), held.eq(arrived)]
        with m.If(arrived.valid):
            m.d.sync += word.eq(self.data)
        byte = word[held.lane].as_unsigned()
        m.d.comb += table.addr.eq(Cat(byte[_ENTRY_BITS:], held.weight))
        m.d.sync += [looked_up.valid.eq(held.valid), looked_up.weight.eq(held.weight),
                     looked_up.head.eq(held.head), looked_up.first.eq(held.first),
                     looked_up.last.eq(held.last)]
        with m.If(held.valid):
            m.d.sync += looked_up.entry.eq(byte[:_ENTRY_BITS])
        # Stage 3: the entry is a head weight, kept, or a difference's, registered with its
        # head's weight. Stage 4: multiplied (the multiplier between registers).
        entry = table.data.word_select(looked_up.entry, SIGMOID_BITS)
        with m.If(self.start):
            m.d.sync += self.weight_sum.eq(0)
        with m.Elif(looked_up.valid & looked_up.weight):
            m.d.sync += [weights[looked_up.head].eq(entry),
                         self.weight_sum.eq(self.weight_sum + entry)]
        m.d.sync += [operands.valid.eq(looked_up.valid & ~looked_up.weight),
                     operands.first.eq(looked_up.first), operands.last.eq(looked_up.last),
                     product.valid.eq(operands.valid), product.first.eq(operands.first),
                     product.last.eq(operands.last)]
        with m.If(looked_up.valid):
            m.d.sync += [operands.weight.eq(weights[looked_up.head]), operands.entry.eq(entry)]
        with m.If(operands.valid):
            m.d.sync += product.product.eq(operands.weight * operands.entry)
        # Stage 5: a patch's products summed into K_i, written after its last head.
        total = Mux(product.first, 0, score) + product.product
        m.d.sync += score.eq(total)
        m.d.comb += [score_write.addr.eq(written), score_write.data.eq(total),
                     score_write.en.eq(product.valid & product.last)]
        with m.If(self.start):
            m.d.sync += written.eq(0)
        with m.Elif(score_write.en):
            m.d.sync += written.eq(written + 1)

        m.d.comb += self.busy.eq(arrived.valid | held.valid | looked_up.valid | operands.valid
                                 | product.valid)
        return m
