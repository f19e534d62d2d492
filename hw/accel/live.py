"""The live token registers, and instructions with their live fields filled in from them."""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import SIZE_BITS
from .isa import INSTRUCTION_BITS, ISA, OPCODE_BITS, LiveState
from .ports import LIVE_UPDATE, registering

__all__ = ["LiveFields"]


class LiveFields(wiring.Component):
    """Holds the run-time token count and resolves the live fields of the current instruction.

    The registers ``T`` (tokens), ``A`` (alive patches) and ``ceil(T /
    array)`` (tiles) are cleared by ``clear`` and loaded by ``update``
    (``TOKEN_SELECT``). ``resolved`` is ``instruction`` with every field
    whose ``live`` bit is set replaced by its value from the registers
    (:meth:`~vitforge.hw.accel.isa.OpcodeSpec.live_values`); ``exceeds`` is
    high when such a value is larger than the field as written (the most the
    program allows). Combinational from ``instruction`` and the registers,
    except a ``TILE_WORDS`` field: its ``SIZE_BITS x SIZE_BITS`` product is
    registered, so ``resolved`` is valid in the second cycle of an
    ``instruction`` (and of the registers); ``exceeds`` registers its
    comparisons, so it is valid in the third.

    Attributes
    ----------
    instruction : ``In(256)``
    clear : ``In(1)``
    update : ``In(LIVE_UPDATE)``
    resolved : ``Out(256)``
    exceeds : ``Out(1)``
    tokens, alive, tiles : ``Out(16)``
        The registers.
    """

    def __init__(self):
        super().__init__({
            "instruction": In(INSTRUCTION_BITS),
            "clear": In(1),
            "update": In(LIVE_UPDATE),
            "resolved": Out(INSTRUCTION_BITS),
            "exceeds": Out(1),
            "tokens": Out(SIZE_BITS),
            "alive": Out(SIZE_BITS),
            "tiles": Out(SIZE_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        registers = (self.tokens, self.alive, self.tiles)
        with m.If(self.clear):
            m.d.sync += [register.eq(0) for register in registers]
        with m.Elif(self.update.en):
            m.d.sync += [register.eq(getattr(self.update, name))
                         for register, name in zip(registers, LiveState._fields)]

        state = LiveState(*registers)

        m.d.comb += self.resolved.eq(self.instruction)
        with m.Switch(self.instruction[:OPCODE_BITS]):
            for code, spec in ISA.items():
                if not spec.live:
                    continue
                with m.Case(code):
                    written = spec.view(self.instruction)
                    resolved = spec.view(self.resolved)
                    for name, (flagged, value) in spec.live_values(written, state,
                                                                   registering(m)).items():
                        live_value = Signal.like(getattr(written, name), name=f"live_{name}")
                        m.d.comb += live_value.eq(value)
                        greater = Signal(name=f"greater_{name}")
                        m.d.sync += greater.eq(value > getattr(written, name))
                        with m.If(flagged):
                            m.d.comb += getattr(resolved, name).eq(live_value)
                            with m.If(greater):
                                m.d.comb += self.exceeds.eq(1)
        return m
