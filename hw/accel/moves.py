"""COPY_TO_WGT and TRANSPOSE_TO_WGT: activation words into the weight scratchpad."""

from amaranth import Array, Module, Mux, Signal, signed
from amaranth.lib import data

from .config import SCRATCHPAD_ADDRESS_BITS, SIZE_BITS
from .isa import ISA, Opcode
from .ports import Unit, scratchpad_ports

__all__ = ["Moves", "move_cycles"]

#: Cycles from ``start`` to ``done`` beyond the moving itself: start and the FINISH state.
_OVERHEAD = 2
#: A copy's last word is written from a register, a cycle after it arrives; a transpose's
#: last block starts out a cycle after its last word arrives.
_DRAIN = 1


def move_cycles(config, instruction):
    """Cycles from ``start`` to ``done`` of a COPY_TO_WGT (one per word, and the last
    word's write) or TRANSPOSE_TO_WGT (``array`` per block read, and the last block's
    ``array + 1`` writes) ``instruction``."""
    if instruction.opcode == Opcode.COPY_TO_WGT:
        return instruction.tiles * instruction.words + _DRAIN + _OVERHEAD
    blocks = instruction.token_tiles * instruction.channel_tiles
    return (blocks + 1) * config.array + _DRAIN + _OVERHEAD


class Moves(Unit):
    """Executes COPY_TO_WGT (one word per cycle) and TRANSPOSE_TO_WGT.

    A transpose turns ``array x array`` blocks around through two register
    blocks in turn: while one takes a block's ``array`` words (channels, a
    token per lane), one per cycle, the other gives the block before it, a
    word per token, to the weight scratchpad. So it reads one word per cycle
    throughout, and the last block's writes follow its reads
    (:func:`move_cycles`). Every word written leaves a register. Semantics in
    ``docs/isa.md``.

    Parameters
    ----------
    config : AcceleratorConfig
    """

    def __init__(self, config):
        super().__init__(config, scratchpad_ports(config, "act_read", "wgt_write"))

    def elaborate(self, platform):
        m = Module()
        lanes = self._config.array
        copy = ISA[Opcode.COPY_TO_WGT].view(self.instruction)
        turn = ISA[Opcode.TRANSPOSE_TO_WGT].view(self.instruction)

        tile = Signal(SIZE_BITS)          # copy: tile; transpose: token tile read
        outer = Signal(SIZE_BITS)         # transpose: channel tile read
        step = Signal(SIZE_BITS)          # copy: word in tile; transpose: channel read in block
        written = Signal(SCRATCHPAD_ADDRESS_BITS)
        pending = Signal()         # a copied word arrives from the activation scratchpad
        pending_address = Signal(SCRATCHPAD_ADDRESS_BITS)
        # Every word is written from a register a cycle after it is known (in FINISH for
        # the last), so that no block RAM output or block multiplexer drives another
        # memory's input in one cycle.
        out_en = Signal()
        out_address = Signal(SCRATCHPAD_ADDRESS_BITS)
        out_word = Signal.like(self.act_read.data)
        # Running addresses instead of products of the counters: the first word of the
        # tile (copy) or block (transpose) read, and of the transpose's channel tile
        # read; the word read next (no adder before the port).
        read_base = Signal(SCRATCHPAD_ADDRESS_BITS)
        read_word = Signal(SCRATCHPAD_ADDRESS_BITS)
        channel_read = Signal(SCRATCHPAD_ADDRESS_BITS)     # turn.src + outer * lanes

        m.d.sync += [self.done.eq(0), pending.eq(0), out_en.eq(pending)]
        with m.If(pending):
            m.d.sync += [out_word.eq(self.act_read.data), out_address.eq(pending_address)]
        m.d.comb += [self.wgt_write.addr.eq(out_address),
                     self.wgt_write.data.eq(out_word),
                     self.wgt_write.en.eq(out_en)]
        turned = self._turn_blocks(m, turn, step, out_en, out_address, out_word)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), tile.eq(0), outer.eq(0), step.eq(0),
                                 written.eq(0), channel_read.eq(turn.src)]
                    with m.If(copy.opcode == Opcode.COPY_TO_WGT):
                        m.d.sync += [read_base.eq(copy.src), read_word.eq(copy.src)]
                        m.next = "COPY"
                    with m.Else():
                        m.d.sync += [read_base.eq(turn.src), read_word.eq(turn.src)]
                        m.next = "GATHER"
            with m.State("COPY"):
                m.d.comb += [
                    self.act_read.addr.eq(read_word),
                    self.act_read.en.eq(1),
                ]
                m.d.sync += [pending.eq(1), pending_address.eq(copy.dst + written),
                             written.eq(written + 1), step.eq(step + 1),
                             read_word.eq(read_word + 1)]
                with m.If(step + 1 == copy.words):
                    m.d.sync += [step.eq(0), tile.eq(tile + 1),
                                 read_base.eq(read_base + copy.src_stride),
                                 read_word.eq(read_base + copy.src_stride)]
                    with m.If(tile + 1 == copy.tiles):
                        m.next = "DRAIN"
            with m.State("GATHER"):
                # Read channel `step` of token tile `tile`, channel tile `outer`.
                m.d.comb += [
                    self.act_read.addr.eq(read_word),
                    self.act_read.en.eq(1),
                ]
                m.d.sync += [step.eq(step + 1), read_word.eq(read_word + 1)]
                with m.If(step == lanes - 1):
                    m.d.sync += [step.eq(0), tile.eq(tile + 1),
                                 read_base.eq(read_base + turn.src_stride),
                                 read_word.eq(read_base + turn.src_stride)]
                    with m.If(tile + 1 == turn.token_tiles):
                        m.d.sync += [tile.eq(0), outer.eq(outer + 1),
                                     channel_read.eq(channel_read + lanes),
                                     read_base.eq(channel_read + lanes),
                                     read_word.eq(channel_read + lanes)]
                        with m.If(outer + 1 == turn.channel_tiles):
                            m.next = "TURN"
            with m.State("TURN"):
                # The last block arrives and goes out, its last word written in FINISH.
                with m.If(turned):
                    m.next = "FINISH"
            with m.State("DRAIN"):
                # A copy's last word arrives; it is written in FINISH.
                m.next = "FINISH"
            with m.State("FINISH"):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                m.next = "IDLE"
        return m

    def _turn_blocks(self, m, turn, step, out_en, out_address, out_word):
        """The transpose's two register blocks: each word read lands in the block being
        filled, a cycle later; a block full, the other takes the next while this one is
        written, a token per cycle, into the next ``array`` words of the channel tile's
        rows in WGT (``dst`` and ``dst_stride`` apart per channel tile). Returns a signal
        high in the cycle the last block's last word goes to the output register."""
        lanes = self._config.array
        blocks = [Array(Signal(data.ArrayLayout(signed(8), lanes), name=f"block{b}_{c}")
                        for c in range(lanes)) for b in range(2)]
        capture, capture_channel, filling = Signal(), Signal(range(lanes)), Signal()
        m.d.sync += capture.eq(self.act_read.en & (turn.opcode == Opcode.TRANSPOSE_TO_WGT))
        with m.If(self.act_read.en):
            m.d.sync += capture_channel.eq(step)
        with m.If(capture):
            with m.If(filling):
                m.d.sync += blocks[1][capture_channel].eq(self.act_read.data)
            with m.Else():
                m.d.sync += blocks[0][capture_channel].eq(self.act_read.data)
            with m.If(capture_channel == lanes - 1):
                m.d.sync += filling.eq(~filling)
        with m.If(self.start):
            m.d.sync += filling.eq(0)

        # Writing: the block filled last (`giving`), token `token`, at `write_word` of WGT.
        writing, giving, last = Signal(), Signal(), Signal()
        token, token_tile, channel_tile = Signal(range(lanes)), Signal(SIZE_BITS), Signal(SIZE_BITS)
        write_base = Signal(SCRATCHPAD_ADDRESS_BITS)      # turn.dst + channel_tile * dst_stride
        write_word = Signal(SCRATCHPAD_ADDRESS_BITS)
        with m.If(self.start):
            m.d.sync += [token_tile.eq(0), channel_tile.eq(0), write_base.eq(turn.dst),
                         write_word.eq(turn.dst)]
        with m.If(writing):
            token_word = Signal(data.ArrayLayout(signed(8), lanes))
            for channel in range(lanes):
                m.d.comb += token_word[channel].eq(Mux(giving, blocks[1][channel][token],
                                                       blocks[0][channel][token]))
            m.d.sync += [out_en.eq(1), out_address.eq(write_word), out_word.eq(token_word),
                         token.eq(token + 1), write_word.eq(write_word + 1)]
            with m.If(token == lanes - 1):
                m.d.sync += [writing.eq(0), token_tile.eq(token_tile + 1)]
                with m.If(token_tile + 1 == turn.token_tiles):
                    m.d.sync += [token_tile.eq(0), channel_tile.eq(channel_tile + 1),
                                 write_base.eq(write_base + turn.dst_stride),
                                 write_word.eq(write_base + turn.dst_stride)]
                    m.d.comb += last.eq(channel_tile + 1 == turn.channel_tiles)
        # A block full: it goes out from the next cycle on, as the block before it has.
        with m.If(capture & (capture_channel == lanes - 1)):
            m.d.sync += [writing.eq(1), giving.eq(filling), token.eq(0)]
        return last
