"""COPY_TO_WGT and TRANSPOSE_TO_WGT: activation words into the weight scratchpad."""

from amaranth import Array, Module, Signal, signed
from amaranth.lib import data

from .config import SCRATCHPAD_ADDRESS_BITS, SIZE_BITS
from .isa import ISA, Opcode
from .ports import Unit, scratchpad_ports

__all__ = ["Moves", "move_cycles"]

#: Cycles from ``start`` to ``done`` beyond the moving itself: start and the FINISH state.
_OVERHEAD = 2
#: A copy's last word is written from a register, a cycle after it arrives.
_COPY_DRAIN = 1


def move_cycles(config, instruction):
    """Cycles from ``start`` to ``done`` of a COPY_TO_WGT (one per word, and the last
    word's write) or TRANSPOSE_TO_WGT (``2 * array + 1`` per block) ``instruction``."""
    if instruction.opcode == Opcode.COPY_TO_WGT:
        return instruction.tiles * instruction.words + _COPY_DRAIN + _OVERHEAD
    blocks = instruction.token_tiles * instruction.channel_tiles
    return blocks * (2 * config.array + 1) + _OVERHEAD


class Moves(Unit):
    """Executes COPY_TO_WGT (one word per cycle) and TRANSPOSE_TO_WGT.

    A transpose turns ``array x array`` blocks around through a register
    block: ``array`` reads, one cycle for the last word, then ``array``
    writes (``2 * array + 1`` cycles per block). Semantics in ``docs/isa.md``.

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

        tile = Signal(SIZE_BITS)          # copy: tile; transpose: token tile
        outer = Signal(SIZE_BITS)         # transpose: channel tile
        step = Signal(SIZE_BITS)          # copy: word in tile; transpose: channel or token in block
        written = Signal(SCRATCHPAD_ADDRESS_BITS)
        pending = Signal()         # a copied word arrives from the activation scratchpad
        pending_address = Signal(SCRATCHPAD_ADDRESS_BITS)
        # ... and is written from a register a cycle later (in FINISH for the last), so that
        # no block RAM output drives another's input in one cycle.
        copying = Signal()
        copy_address = Signal(SCRATCHPAD_ADDRESS_BITS)
        copy_word = Signal.like(self.act_read.data)
        # Running addresses instead of products of the counters: the first word of the
        # tile (copy) or block (transpose) read, and of the transpose's channel tile
        # read and its block written; the word read next (no adder before the port).
        read_base = Signal(SCRATCHPAD_ADDRESS_BITS)
        read_word = Signal(SCRATCHPAD_ADDRESS_BITS)
        write_base = Signal(SCRATCHPAD_ADDRESS_BITS)
        channel_read = Signal(SCRATCHPAD_ADDRESS_BITS)     # turn.src + outer * lanes
        channel_write = Signal(SCRATCHPAD_ADDRESS_BITS)    # turn.dst + outer * dst_stride
        block = Array(Signal(data.ArrayLayout(signed(8), lanes), name=f"block_{c}")
                      for c in range(lanes))

        m.d.sync += [self.done.eq(0), pending.eq(0), copying.eq(pending),
                     copy_address.eq(pending_address)]
        with m.If(pending):
            m.d.sync += copy_word.eq(self.act_read.data)
        m.d.comb += [self.wgt_write.addr.eq(copy_address),
                     self.wgt_write.data.eq(copy_word),
                     self.wgt_write.en.eq(copying)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), tile.eq(0), outer.eq(0), step.eq(0),
                                 written.eq(0), channel_read.eq(turn.src),
                                 channel_write.eq(turn.dst), write_base.eq(turn.dst)]
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
                        m.next = "COPY_DRAIN"
            with m.State("COPY_DRAIN"):
                # The last word arrives; it is written in FINISH.
                m.next = "FINISH"
            with m.State("GATHER"):
                # Read channel `step` of token tile `tile`, channel tile `outer`.
                m.d.comb += [
                    self.act_read.addr.eq(read_word),
                    self.act_read.en.eq(1),
                ]
                m.d.sync += [step.eq(step + 1), read_word.eq(read_word + 1)]
                with m.If(step == lanes - 1):
                    m.d.sync += step.eq(0)
                    m.next = "SETTLE"
            with m.State("SETTLE"):
                # The last gathered word is captured in this cycle.
                m.next = "SCATTER"
            with m.State("SCATTER"):
                token_word = Signal(data.ArrayLayout(signed(8), lanes))
                for channel in range(lanes):
                    m.d.comb += token_word[channel].eq(block[channel][step])
                m.d.comb += [
                    self.wgt_write.addr.eq(write_base + step),
                    self.wgt_write.data.eq(token_word),
                    self.wgt_write.en.eq(1),
                ]
                m.d.sync += step.eq(step + 1)
                with m.If(step == lanes - 1):
                    m.d.sync += [step.eq(0), tile.eq(tile + 1),
                                 read_base.eq(read_base + turn.src_stride),
                                 read_word.eq(read_base + turn.src_stride),
                                 write_base.eq(write_base + lanes)]
                    m.next = "GATHER"
                    with m.If(tile + 1 == turn.token_tiles):
                        m.d.sync += [tile.eq(0), outer.eq(outer + 1),
                                     channel_read.eq(channel_read + lanes),
                                     channel_write.eq(channel_write + turn.dst_stride),
                                     read_base.eq(channel_read + lanes),
                                     read_word.eq(channel_read + lanes),
                                     write_base.eq(channel_write + turn.dst_stride)]
                        with m.If(outer + 1 == turn.channel_tiles):
                            m.next = "FINISH"
            with m.State("FINISH"):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                m.next = "IDLE"

        # Capture gathered words: the word read in GATHER step c arrives a cycle later.
        capture = Signal()
        capture_channel = Signal(range(lanes))
        m.d.sync += [capture.eq(0)]
        with m.If(self.act_read.en & (turn.opcode == Opcode.TRANSPOSE_TO_WGT)):
            m.d.sync += [capture.eq(1), capture_channel.eq(step)]
        with m.If(capture):
            m.d.sync += block[capture_channel].eq(self.act_read.data)
        return m
