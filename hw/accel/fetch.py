"""Instruction fetch with two instructions of look-ahead, sharing external memory with a unit."""

from amaranth import Array, C, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .isa import INSTRUCTION_BITS, INSTRUCTION_WORDS
from .ports import MEMORY_DATA_BITS, control_members, memory_port

__all__ = ["InstructionFetch", "FETCH_CONTROL"]

#: The controller's side of the fetch: what to read, and when it has arrived.
FETCH_CONTROL = wiring.Signature({
    "pc": Out(32),             # index of the current instruction
    "fetch": Out(1),           # read instruction pc into `instruction`
    "look_ahead": Out(1),      # read instruction pc + 1 into `next_instruction`
    "look_far": Out(1),        # read instruction pc + 2 into `far_instruction`
    "advance": Out(1),         # instruction <= next_instruction
    "advance_far": Out(1),     # instruction <= far_instruction
    "arrived": In(1),          # the instruction asked for is complete after this cycle
})



#: Bits of a word's number within an instruction.
_WORD_BITS = (INSTRUCTION_WORDS - 1).bit_length()
assert INSTRUCTION_WORDS == 1 << _WORD_BITS, "an instruction is a power of two of words"


class InstructionFetch(wiring.Component):
    """Reads instructions from external memory; otherwise passes a unit's accesses through.

    Instruction ``i`` is the two external words at ``program_addr + 2 * i``,
    low word first. While ``control.fetch`` is high, instruction
    ``control.pc`` is read into :attr:`instruction`; while
    ``control.look_ahead`` is high, instruction ``control.pc + 1`` into
    :attr:`next_instruction`; while ``control.look_far`` is high, instruction
    ``control.pc + 2`` into :attr:`far_instruction`. Both words are requested
    as fast as the memory accepts them and stored as they arrive; ``control.arrived`` is high in
    the cycle the second word arrives, and the register holds the whole
    instruction from the next cycle on (a fetch takes three cycles from a
    memory that answers one cycle after each request). ``control.advance``
    copies :attr:`next_instruction` into :attr:`instruction` in one cycle,
    ``control.advance_far`` :attr:`far_instruction`.
    The fetch holds external memory only while it reads; the rest of the
    time, ``unit_mem`` (the DMA's port) has it.

    Attributes
    ----------
    mem : external memory port
    unit_mem : ``In`` external memory port
        The port of the unit that shares external memory with the fetch.
    program_addr : ``In(32)``
        External word of instruction 0.
    control : ``In(FETCH_CONTROL)``
    instruction, next_instruction, far_instruction : ``Out(256)``
    """

    def __init__(self):
        super().__init__({
            "mem": memory_port(),
            "unit_mem": memory_port().flip(),
            "program_addr": control_members()["program_addr"],
            "control": In(FETCH_CONTROL),
            "instruction": Out(INSTRUCTION_BITS),
            "next_instruction": Out(INSTRUCTION_BITS),
            "far_instruction": Out(INSTRUCTION_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        control, mem, unit = self.control, self.mem, self.unit_mem
        ahead_reading = control.look_ahead | control.look_far
        reading = control.fetch | ahead_reading
        requested = Signal(range(INSTRUCTION_WORDS + 1))
        received = Signal(range(INSTRUCTION_WORDS + 1))
        # The controller's state only selects an address: the current instruction's
        # through one adder from registers (a word's address is the instruction number's
        # bits above the word's, requested < INSTRUCTION_WORDS whenever it is requested),
        # the look-aheads' from registers alone, each word's computed every cycle from
        # pc + 1 and pc + 2 (pc changes as an instruction retires, at least five cycles
        # before the next one's EXECUTE and its look-ahead).
        word = requested[:_WORD_BITS]
        current = self.program_addr + Cat(word, control.pc)
        following = []
        for distance in (1, 2):
            ahead = Array(Signal.like(self.program_addr, name=f"ahead_{distance}_{index}")
                          for index in range(INSTRUCTION_WORDS))
            m.d.sync += [address.eq(self.program_addr + Cat(C(index, _WORD_BITS),
                                                            control.pc + distance))
                         for index, address in enumerate(ahead)]
            following.append(ahead[word])
        ahead_address = Mux(control.look_far, following[1], following[0])
        m.d.comb += [
            mem.req.valid.eq(Mux(reading, requested < INSTRUCTION_WORDS, unit.req.valid)),
            mem.req.payload.addr.eq(Mux(reading, Mux(ahead_reading, ahead_address, current),
                                        unit.req.payload.addr)),
            mem.req.payload.write.eq(Mux(reading, 0, unit.req.payload.write)),
            mem.req.payload.wdata.eq(unit.req.payload.wdata),
            unit.req.ready.eq(~reading & mem.req.ready),
            mem.resp.ready.eq(Mux(reading, 1, unit.resp.ready)),
            unit.resp.valid.eq(~reading & mem.resp.valid),
            unit.resp.payload.eq(mem.resp.payload),
            control.arrived.eq(reading & mem.resp.valid
                               & (received == INSTRUCTION_WORDS - 1)),
        ]

        with m.If(reading & mem.req.valid & mem.req.ready):
            m.d.sync += requested.eq(requested + 1)
        for target, active in ((self.instruction, control.fetch),
                               (self.next_instruction, control.look_ahead),
                               (self.far_instruction, control.look_far)):
            with m.If(active & mem.resp.valid):
                m.d.sync += received.eq(received + 1)
                with m.Switch(received):
                    for word in range(INSTRUCTION_WORDS):
                        with m.Case(word):
                            m.d.sync += target.word_select(word, MEMORY_DATA_BITS).eq(
                                mem.resp.payload)
        with m.If(control.arrived):
            m.d.sync += [requested.eq(0), received.eq(0)]
        with m.If(control.advance):
            m.d.sync += self.instruction.eq(self.next_instruction)
        with m.If(control.advance_far):
            m.d.sync += self.instruction.eq(self.far_instruction)
        return m
