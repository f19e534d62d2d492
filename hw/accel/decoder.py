"""The hardware instruction decoder: the ISA table's rules as logic."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .isa import (COUNTER_CLASSES, FAR_HOSTS, FAR_ROWS, INSTRUCTION_BITS, ISA, LOAD_HOSTS,
                  OPCODE_BITS, ROW_HOSTS, SIDE_CLASSES, SIDE_HOSTS, SIDE_LOADS, SIDE_ROWS, Opcode,
                  far_load_fills, load_may_run_beside, row_starts_beside)
from .ports import registering

__all__ = ["InstructionDecoder", "DECODED", "DECODE_LATENCY", "NO_CLASS", "SIDE_CHECK_LATENCY"]

#: Cycles from ``instruction`` and ``next_instruction`` (``far_instruction`` with
#: ``far_check``) to ``decoded.side`` (``decoded.far_side``): the load rule's three stages
#: (:func:`~.isa.load_may_run_beside`), each (host, load) pair's answer, and their OR.
SIDE_CHECK_LATENCY = 5

#: Cycles from ``instruction`` to ``decoded`` (but ``side`` and ``side_class``) and ``unit``.
DECODE_LATENCY = 1

#: The ``counter`` of an instruction that counts to no class.
NO_CLASS = len(COUNTER_CLASSES)

#: What the controller learns about the current instruction (and the next one).
DECODED = wiring.Signature({
    "known": Out(1),          # a defined, not reserved opcode
    "empty": Out(1),          # a field that must not be zero is zero
    "ends": Out(1),           # DONE
    "at_once": Out(1),        # no unit runs it: it retires at once (NOP, SYNC)
    "side_capable": Out(1),   # another may run beside it (SIDE_HOSTS)
    "side": Out(1),           # the next instruction runs beside it
                              # (SIDE_CHECK_LATENCY cycles after the instructions)
    "far_capable": Out(1),    # a FAR_HOSTS GEMM and a FAR_ROWS instruction after it
    "far_side": Out(1),       # the far instruction (a load) may run beside the GEMM
                              # (SIDE_CHECK_LATENCY cycles after it, with far_check)
    "counter": Out(range(NO_CLASS + 1), init=NO_CLASS),   # COUNTER_CLASSES index
    "side_class": Out(range(len(SIDE_CLASSES))),  # the next one's SIDE_CLASSES index, if any
})


#: The members of ``decoded`` that describe ``instruction``, registered.
_REGISTERED = ("known", "empty", "ends", "at_once", "side_capable", "counter")


class InstructionDecoder(wiring.Component):
    """Decodes an instruction for the controller and selects its execution unit (:data:`ISA`).

    ``decoded`` (but ``side`` and ``side_class``) and ``unit`` are registered:
    valid :data:`DECODE_LATENCY` cycle after ``instruction``; ``side_class``
    and ``next_unit`` are combinational from ``next_instruction``.
    ``decoded.known`` is low for an unknown or reserved opcode,
    ``decoded.empty`` high when one of the opcode's ``nonzero`` fields is
    zero; ``unit`` is one-hot over ``units`` (all low for what the
    controller does itself), and ``next_unit`` the same for
    ``next_instruction``. ``decoded.side_capable`` is high
    for a :data:`SIDE_HOSTS` opcode, and ``decoded.side`` when
    ``next_instruction`` may start beside it (``docs/isa.md``, Ordering):

    - beside a :data:`LOAD_HOSTS` GEMM or row instruction, a :data:`SIDE_LOADS`
      load that :func:`load_may_run_beside` allows (each instruction viewed
      with its own opcode's fields);
    - with two ACT banks, beside a :data:`ROW_HOSTS` GEMM or move, a
      :data:`SIDE_ROWS` instruction with ``beside`` set, no live flags and no
      empty field. Its ACT ports and regions are the
      program's promise (:func:`~vitforge.hw.accel.isa.beside_refusal`,
      which the golden interpreter checks), not checked here.

    ``decoded.far_capable`` (registered) is high for a :data:`FAR_HOSTS` GEMM
    followed by a :data:`FAR_ROWS` instruction, and with ``far_check`` high the
    load check takes ``far_instruction`` (the instruction after that row
    instruction) instead of ``next_instruction``: ``decoded.far_side`` says
    whether it is a load that may run beside the GEMM too and fills only
    :data:`~.isa.FAR_LOADED` (:func:`~.isa.far_load_fills`), which no row
    instruction reads.

    The load check multiplies fields, so it is cut by registers (see
    :func:`load_may_run_beside`), and ``decoded.side`` (``decoded.far_side``) is
    valid :data:`SIDE_CHECK_LATENCY` cycles after the instructions (and
    ``far_check``), which must be held meanwhile.

    Parameters
    ----------
    config : AcceleratorConfig
    units : tuple of str
        The accelerator's execution units, in the order of ``unit``'s bits.

    Attributes
    ----------
    instruction, next_instruction, far_instruction : ``In(256)``
    far_check : ``In(1)``
    decoded : ``Out(DECODED)``
    unit, next_unit : ``Out(len(units))``
    """

    def __init__(self, config, units):
        self._config = config
        self._units = tuple(units)
        missing = sorted({spec.unit for spec in ISA.values() if spec.unit} - set(self._units))
        if missing:
            raise ValueError(f"units must include every unit the ISA table names, but "
                             f"{missing} are missing from {self._units}")
        super().__init__({
            "instruction": In(INSTRUCTION_BITS),
            "next_instruction": In(INSTRUCTION_BITS),
            "far_instruction": In(INSTRUCTION_BITS),
            "far_check": In(1),
            "decoded": Out(DECODED),
            "unit": Out(len(self._units)),
            "next_unit": Out(len(self._units)),
        })

    def elaborate(self, platform):
        m = Module()
        decoded = self.decoded
        # The decode of ``instruction``, registered into ``decoded`` and ``unit``: an empty
        # field is a wide function of the instruction, too deep to meet the controller's
        # decision and a unit's start in one cycle.
        now = DECODED.flip().create(path=("now",))
        unit = Signal.like(self.unit, name="now_unit")
        with m.Switch(self.instruction[:OPCODE_BITS]):
            for code, spec in ISA.items():
                if spec.reserved:
                    continue
                with m.Case(code):
                    m.d.comb += [now.known.eq(1),
                                 now.empty.eq(spec.empty(spec.view(self.instruction)))]
                    if spec.unit is not None:
                        m.d.comb += [unit[self._units.index(spec.unit)].eq(1),
                                     now.counter.eq(COUNTER_CLASSES.index(spec.counter))]
                    elif code == Opcode.DONE:
                        m.d.comb += now.ends.eq(1)
                    else:
                        m.d.comb += now.at_once.eq(1)
        m.d.sync += [self.unit.eq(unit), *(getattr(decoded, name).eq(getattr(now, name))
                                           for name in _REGISTERED)]
        next_opcode = self.next_instruction[:OPCODE_BITS]
        for code, spec in ISA.items():
            if spec.unit is not None:
                with m.If(next_opcode == code):
                    m.d.comb += self.next_unit[self._units.index(spec.unit)].eq(1)
                    if spec.counter in SIDE_CLASSES:
                        m.d.comb += decoded.side_class.eq(SIDE_CLASSES.index(spec.counter))
        opcode = self.instruction[:OPCODE_BITS]
        m.d.comb += now.side_capable.eq(Cat(opcode == code for code in SIDE_HOSTS).any())
        # The row rule and the host's opcode through a register as well, so that the last
        # cycle of the check is one OR of registered answers.
        register = registering(m)
        row_host = Cat(opcode == code for code in ROW_HOSTS).any()
        far_host = Cat(opcode == code for code in FAR_HOSTS).any()
        m.d.sync += decoded.far_capable.eq(
            far_host & Cat(next_opcode == code for code in FAR_ROWS).any())
        side_load = self._side_load(m)
        far_fills = 0
        for load in SIDE_LOADS:
            far_fills = far_fills | (
                (self.far_instruction[:OPCODE_BITS] == load)
                & far_load_fills(load, ISA[load].view(self.far_instruction), self._config.array))
        m.d.sync += [decoded.side.eq(side_load
                                     | register(row_host & self._side_row(next_opcode))),
                     decoded.far_side.eq(side_load & register(far_fills))]
        return m

    def _side_load(self, m):
        """A load that may run beside (valid after the registers of its check): each
        (host, load) pair's answer registered after its comparisons, then their OR (with
        row instructions as hosts, twelve pairs: their OR after the comparisons in one cycle
        was the slowest path of the preset's estimate, 4.55 ns)."""
        register = registering(m)
        opcode = self.instruction[:OPCODE_BITS]
        candidate = Signal(INSTRUCTION_BITS)
        m.d.comb += candidate.eq(Mux(self.far_check, self.far_instruction,
                                     self.next_instruction))
        next_opcode = candidate[:OPCODE_BITS]
        side_load = 0
        for host in LOAD_HOSTS:
            for load in SIDE_LOADS:
                allowed = load_may_run_beside(
                    host, ISA[host].view(self.instruction), load,
                    ISA[load].view(candidate), self._config.array, stage=register)
                side_load = side_load | register(
                    register((opcode == host) & (next_opcode == load)) & allowed)
        return side_load

    def _side_row(self, next_opcode):
        """A row instruction that asks to run beside, as the hardware may start it."""
        side_row = 0
        for code in SIDE_ROWS:
            starts = row_starts_beside(code, ISA[code].view(self.next_instruction),
                                       self._config.act_banks)
            side_row = side_row | ((next_opcode == code) & starts)
        return side_row
