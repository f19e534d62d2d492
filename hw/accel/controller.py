"""The accelerator's controller: the state machine that runs a program, and its cycle counters."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .decoder import DECODED, NO_CLASS, SIDE_CHECK_LATENCY
from .fetch import FETCH_CONTROL
from .isa import COUNTER_CLASSES, ISA, SIDE_CLASSES, SIDE_LOADS
from .ports import control_members

__all__ = ["Controller", "ERROR_NONE", "ERROR_OPCODE", "ERROR_EMPTY", "ERROR_LIVE"]

ERROR_NONE = 0
#: An unknown or reserved opcode.
ERROR_OPCODE = 1
#: A count, length or tile field of zero (the instruction would do nothing, or hang).
ERROR_EMPTY = 2
#: A field flagged live whose run-time value exceeds the field as written.
ERROR_LIVE = 3

_FETCH_CLASS = COUNTER_CLASSES.index("fetch")
_STALL_CLASS = COUNTER_CLASSES.index("stall")
#: The class of the far instruction (a load).
_FAR_CLASS = SIDE_CLASSES.index(ISA[SIDE_LOADS[0]].counter)
assert all(ISA[opcode].counter == SIDE_CLASSES[_FAR_CLASS] for opcode in SIDE_LOADS)


class Controller(wiring.Component):
    """Runs a program: fetch, decode, start the instruction's unit, retire it.

    States: ``FETCH`` (two external reads, three cycles) -> ``RESOLVE``
    (one cycle: the live fields' products are registered) -> ``ISSUE`` (one
    cycle: ``issue`` loads the instruction register with the instruction,
    its live fields filled in) -> ``DECODE`` (one cycle: the decoder's
    registers, :data:`~.decoder.DECODE_LATENCY`, and ``live_exceeds`` load)
    -> ``DISPATCH`` (one cycle; an unknown opcode, an empty field or a live
    value beyond its field (``live_exceeds``) stops the run with an error,
    DONE stops it, NOP and SYNC retire at once) -> ``EXECUTE`` until the unit
    is done. While a host (``decoded.side_capable``: a GEMM, a move or a row
    instruction) executes, the controller fetches the next instruction
    (``LOOK_AHEAD``), waits for the decoder's pipelined check (``SIDE_CHECK``,
    :data:`SIDE_CHECK_LATENCY` cycles) and, if it may run beside the host
    (``decoded.side``: a load, or a row instruction that asks to), starts it
    on its own unit (``SIDE_START``); the host then retires only when that
    unit has finished too, and both retire together. Where the host is a GEMM
    and the instruction beside it a row instruction that leaves room for a load
    (``decoded.far_capable``: :data:`~.isa.FAR_HOSTS`, :data:`~.isa.FAR_ROWS`),
    the controller then fetches the instruction after that one too
    (``LOOK_FAR``), checks it against the GEMM (``FAR_CHECK``, ``far_active``
    high: the decoder's ``far_check``) and, if it is a load that may run beside the GEMM
    (``decoded.far_side``), starts it on the DMA (``FAR_START``): all three
    retire together. An instruction fetched ahead and not started is decoded
    without a second fetch, but issued again.

    ``cycles`` counts the cycles from ``start`` to ``done``; ``class_cycles``
    the same cycles split by :data:`COUNTER_CLASSES`: fetching and decoding
    count to ``fetch``, executing to the instruction's ``counter``, waiting
    for the instruction beside it after the instruction has finished to ``stall``.
    ``side_cycles`` counts, per :data:`SIDE_CLASSES`, the cycles an
    instruction of that class ran beside a host (those after its start, up to
    and including its ``done``) while the host's own cycles counted: the work
    the overlap hid.

    Attributes
    ----------
    start : ``In(1)``
    busy, done : ``Out(1)``
        ``done`` rises when the program ends and stays high until the next ``start``.
    error : ``Out(2)``
        ``ERROR_NONE``, ``ERROR_OPCODE``, ``ERROR_EMPTY`` or ``ERROR_LIVE``.
    error_pc : ``Out(32)``
    retire, retire_pc : ``Out(1)``, ``Out(32)``
        Pulses when instruction ``retire_pc`` has finished.
    cycles : ``Out(32)``
    class_cycles : ``Out(ArrayLayout(32, len(COUNTER_CLASSES)))``
    side_cycles : ``Out(ArrayLayout(32, len(SIDE_CLASSES)))``
    fetch : ``Out(FETCH_CONTROL)``
    issue : ``Out(1)``
        Load the instruction register (held until the next ``issue``).
    decoded : ``In(DECODED)``
        Of the instruction register.
    live_exceeds : ``In(1)``
        :class:`~vitforge.hw.accel.live.LiveFields`' ``exceeds``.
    start_unit : ``Out(1)``
        Start the unit of the decoded instruction.
    unit_done : ``In(1)``
        That unit's ``done``.
    start_side : ``Out(1)``
        Start the unit of the instruction fetched ahead (the side unit) on it.
    side_active : ``Out(1)``
        The side unit's instruction is the one fetched ahead: a register, high
        from the look-ahead's arrival until the host beside it retires (the
        side unit is idle meanwhile unless ``start_side`` started it).
    side_busy : ``In(1)``
        The side unit's ``busy``.
    start_far : ``Out(1)``
        Start the far instruction (fetched two ahead) on its unit, the DMA.
    far_active : ``Out(1)``
        The DMA's instruction is the far one: a register, high from the far
        look-ahead's arrival until the host retires; the decoder's ``far_check``.
    far_busy : ``In(1)``
        The DMA's ``busy``.
    """

    def __init__(self):
        control = control_members()
        del control["program_addr"]            # the fetch's
        super().__init__({
            **control,
            "fetch": Out(FETCH_CONTROL),
            "issue": Out(1),
            "decoded": In(DECODED),
            "live_exceeds": In(1),
            "start_unit": Out(1),
            "unit_done": In(1),
            "start_side": Out(1),
            "side_active": Out(1),
            "side_busy": In(1),
            "start_far": Out(1),
            "far_active": Out(1),
            "far_busy": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        decoded, fetch = self.decoded, self.fetch
        pc = fetch.pc
        main_done = Signal()        # the unit's done pulse, kept while the side unit runs
        looked_ahead = Signal()     # the next instruction has been fetched
        side_started = Signal()     # ... and it is running beside, on the side unit
        looked_far = Signal()       # the instruction after the next has been fetched
        far_started = Signal()      # ... and it is running beside, on the DMA
        active_class = Signal(range(NO_CLASS + 1), init=NO_CLASS)
        side_wait = Signal(range(SIDE_CHECK_LATENCY + 1))
        m.d.comb += self.retire_pc.eq(pc)

        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            for index in range(NO_CLASS):
                with m.If(active_class == index):
                    m.d.sync += self.class_cycles[index].eq(self.class_cycles[index] + 1)
            # The side unit's cycles after its start: busy, then the cycle of its done.
            side_was_busy = Signal()
            far_was_busy = Signal()
            m.d.sync += [side_was_busy.eq(self.side_busy), far_was_busy.eq(self.far_busy)]
            counting = active_class != _STALL_CLASS
            hidden = side_started & (self.side_busy | side_was_busy) & counting
            far_hidden = far_started & (self.far_busy | far_was_busy) & counting
            for index in range(len(SIDE_CLASSES)):
                side = hidden & (decoded.side_class == index)
                if index == _FAR_CLASS:     # a far load beside a row, never two loads
                    side = side | far_hidden
                with m.If(side):
                    m.d.sync += self.side_cycles[index].eq(self.side_cycles[index] + 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), self.done.eq(0), self.error.eq(ERROR_NONE),
                                 pc.eq(0), self.cycles.eq(0)]
                    m.d.sync += [self.class_cycles[i].eq(0) for i in range(NO_CLASS)]
                    m.d.sync += [self.side_cycles[i].eq(0) for i in range(len(SIDE_CLASSES))]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += [fetch.fetch.eq(1), active_class.eq(_FETCH_CLASS)]
                with m.If(fetch.arrived):
                    m.next = "RESOLVE"
            with m.State("RESOLVE"):
                m.d.comb += active_class.eq(_FETCH_CLASS)
                m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += [self.issue.eq(1), active_class.eq(_FETCH_CLASS)]
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.comb += active_class.eq(_FETCH_CLASS)
                m.next = "DISPATCH"
            with m.State("DISPATCH"):
                m.d.comb += active_class.eq(_FETCH_CLASS)
                m.d.sync += [main_done.eq(0), looked_ahead.eq(0), side_started.eq(0),
                             looked_far.eq(0), far_started.eq(0)]
                with m.If(~decoded.known | decoded.empty | self.live_exceeds):
                    error = Mux(~decoded.known, ERROR_OPCODE,
                                Mux(self.live_exceeds, ERROR_LIVE, ERROR_EMPTY))
                    m.d.sync += [self.error.eq(error),
                                 self.error_pc.eq(pc), self.busy.eq(0), self.done.eq(1)]
                    m.next = "IDLE"
                with m.Elif(decoded.ends):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                    m.next = "IDLE"
                with m.Elif(decoded.at_once):
                    m.d.comb += self.retire.eq(1)
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "FETCH"
                with m.Else():
                    m.d.comb += self.start_unit.eq(1)
                    m.next = "EXECUTE"
            with m.State("EXECUTE"):
                m.d.comb += active_class.eq(Mux(main_done, _STALL_CLASS, decoded.counter))
                self._keep_done(m, main_done)
                finished = ((self.unit_done | main_done) & ~(side_started & self.side_busy)
                            & ~(far_started & self.far_busy))
                with m.If(finished):
                    m.d.comb += self.retire.eq(1)
                    m.d.sync += [pc.eq(pc + 1 + side_started + far_started),
                                 self.side_active.eq(0), self.far_active.eq(0)]
                    with m.If(looked_ahead & ~side_started):
                        m.d.comb += fetch.advance.eq(1)
                        m.next = "RESOLVE"
                    with m.Elif(looked_far & ~far_started):
                        m.d.comb += fetch.advance_far.eq(1)
                        m.next = "RESOLVE"
                    with m.Else():
                        m.next = "FETCH"
                with m.Elif(decoded.side_capable & ~looked_ahead):
                    m.next = "LOOK_AHEAD"
                with m.Elif(side_started & decoded.far_capable & ~looked_far):
                    m.next = "LOOK_FAR"
            look_up = dict(main_done=main_done, active_class=active_class, wait=side_wait)
            self._look_up(m, ("LOOK_AHEAD", "SIDE_CHECK", "SIDE_START"), read=fetch.look_ahead,
                          active=self.side_active, allowed=decoded.side, start=self.start_side,
                          started=side_started, looked=looked_ahead, **look_up)
            self._look_up(m, ("LOOK_FAR", "FAR_CHECK", "FAR_START"), read=fetch.look_far,
                          active=self.far_active, allowed=decoded.far_side, start=self.start_far,
                          started=far_started, looked=looked_far, **look_up)
        return m

    def _look_up(self, m, states, *, read, active, allowed, start, started, looked, main_done,
                 active_class, wait):
        """The states of a look-up while the host executes (its cycles count to its class):
        ``states[0]`` fetches the instruction (``read``) and raises ``active``, ``states[1]``
        waits :data:`SIDE_CHECK_LATENCY` cycles for the decoder's check, ``states[2]`` starts
        it (``start``, ``started``) if ``allowed`` and notes the look-up (``looked``); then
        EXECUTE."""
        fetching, checking, starting = states
        with m.State(fetching):
            m.d.comb += [read.eq(1), active_class.eq(self.decoded.counter)]
            self._keep_done(m, main_done)
            with m.If(self.fetch.arrived):
                m.d.sync += [wait.eq(SIDE_CHECK_LATENCY), active.eq(1)]
                m.next = checking
        with m.State(checking):
            m.d.comb += active_class.eq(self.decoded.counter)
            self._keep_done(m, main_done)
            m.d.sync += wait.eq(wait - 1)
            with m.If(wait == 1):
                m.next = starting
        with m.State(starting):
            m.d.comb += active_class.eq(self.decoded.counter)
            self._keep_done(m, main_done)
            m.d.sync += looked.eq(1)
            with m.If(allowed):
                m.d.comb += start.eq(1)
                m.d.sync += started.eq(1)
            m.next = "EXECUTE"

    def _keep_done(self, m, main_done):
        """Remember the unit's done pulse while the instruction cannot retire yet."""
        with m.If(self.unit_done):
            m.d.sync += main_done.eq(1)
