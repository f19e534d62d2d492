"""The hardware instruction decoder: the ISA table's rules as logic."""

from amaranth import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .isa import (COUNTER_CLASSES, INSTRUCTION_BITS, ISA, OPCODE_BITS, SIDE_HOSTS, SIDE_LOADS,
                  Opcode, weight_load_may_run_beside)
from .ports import registering

__all__ = ["InstructionDecoder", "DECODED", "NO_CLASS", "SIDE_LOAD_LATENCY"]

#: Cycles from ``instruction`` and ``next_instruction`` to ``decoded.side_load``.
SIDE_LOAD_LATENCY = 4

#: The ``counter`` of an instruction that counts to no class.
NO_CLASS = len(COUNTER_CLASSES)

#: What the controller learns about the current instruction (and the next one).
DECODED = wiring.Signature({
    "known": Out(1),          # a defined, not reserved opcode
    "empty": Out(1),          # a field that must not be zero is zero
    "ends": Out(1),           # DONE
    "at_once": Out(1),        # no unit runs it: it retires at once (NOP, SYNC)
    "side_capable": Out(1),   # a weight load may run beside it (SIDE_HOSTS: GEMM, GEMM_SPARSE)
    "side_load": Out(1),      # the next instruction is a SIDE_LOADS load that may run beside
                              # (SIDE_LOAD_LATENCY cycles after the instructions)
    "counter": Out(range(NO_CLASS + 1), init=NO_CLASS),   # COUNTER_CLASSES index
})


class InstructionDecoder(wiring.Component):
    """Decodes an instruction for the controller and selects its execution unit (:data:`ISA`).

    Combinational (no latency), except ``decoded.side_load``.
    ``decoded.known`` is low for an unknown or reserved opcode,
    ``decoded.empty`` high when one of the opcode's ``nonzero`` fields is
    zero; ``unit`` is one-hot over ``units`` (all low for what the
    controller does itself). ``decoded.side_capable`` is high
    for a :data:`SIDE_HOSTS` opcode, and ``decoded.side_load`` when
    ``next_instruction`` is a :data:`SIDE_LOADS` opcode and
    :func:`weight_load_may_run_beside` allows the pair (each instruction
    viewed with its own opcode's fields). That check multiplies fields, so it
    is cut by registers (see :func:`weight_load_may_run_beside`), and
    ``decoded.side_load`` is valid :data:`SIDE_LOAD_LATENCY` cycles after
    the two instructions, which must be held meanwhile.

    Parameters
    ----------
    array : int
        ``AcceleratorConfig.array``.
    units : tuple of str
        The accelerator's execution units, in the order of ``unit``'s bits.

    Attributes
    ----------
    instruction, next_instruction : ``In(256)``
    decoded : ``Out(DECODED)``
    unit : ``Out(len(units))``
    """

    def __init__(self, array, units):
        self._array = array
        self._units = tuple(units)
        missing = sorted({spec.unit for spec in ISA.values() if spec.unit} - set(self._units))
        if missing:
            raise ValueError(f"units must include every unit the ISA table names, but "
                             f"{missing} are missing from {self._units}")
        super().__init__({
            "instruction": In(INSTRUCTION_BITS),
            "next_instruction": In(INSTRUCTION_BITS),
            "decoded": Out(DECODED),
            "unit": Out(len(self._units)),
        })

    def elaborate(self, platform):
        m = Module()
        decoded = self.decoded
        with m.Switch(self.instruction[:OPCODE_BITS]):
            for code, spec in ISA.items():
                if spec.reserved:
                    continue
                with m.Case(code):
                    m.d.comb += [decoded.known.eq(1),
                                 decoded.empty.eq(spec.empty(spec.view(self.instruction)))]
                    if spec.unit is not None:
                        m.d.comb += [self.unit[self._units.index(spec.unit)].eq(1),
                                     decoded.counter.eq(COUNTER_CLASSES.index(spec.counter))]
                    elif code == Opcode.DONE:
                        m.d.comb += decoded.ends.eq(1)
                    else:
                        m.d.comb += decoded.at_once.eq(1)
        opcode = self.instruction[:OPCODE_BITS]
        next_opcode = self.next_instruction[:OPCODE_BITS]
        register = registering(m)

        m.d.comb += decoded.side_capable.eq(Cat(opcode == host for host in SIDE_HOSTS).any())
        side_load = 0
        for host in SIDE_HOSTS:
            for load in SIDE_LOADS:
                allowed = weight_load_may_run_beside(
                    host, ISA[host].view(self.instruction), load,
                    ISA[load].view(self.next_instruction), self._array, stage=register)
                side_load = side_load | (register((opcode == host) & (next_opcode == load))
                                         & allowed)
        m.d.sync += decoded.side_load.eq(side_load)
        return m
