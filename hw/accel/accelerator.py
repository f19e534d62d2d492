"""The programmable accelerator: fetch, decode, a controller, and a table of execution units."""

from collections import defaultdict

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring

from .controller import ERROR_EMPTY, ERROR_LIVE, ERROR_NONE, ERROR_OPCODE, Controller
from .decoder import InstructionDecoder
from .dma import Dma
from .eltwise import Eltwise
from .fetch import InstructionFetch
from .gemm_unit import GemmUnit
from .isa import COUNTER_CLASSES, INSTRUCTION_BITS, ISA, SIDE_LOADS, SIDE_ROWS
from .live import LiveFields
from .moves import Moves
from .ports import SCRATCHPAD_PORTS, control_members, forward, memory_port
from .row_layernorm import RowLayerNorm
from .row_softmax import RowSoftmax
from .scratchpads import Scratchpads
from .token_selector import TokenSelector

__all__ = ["Accelerator", "UNITS", "control_members", "ERROR_NONE", "ERROR_OPCODE",
           "ERROR_EMPTY", "ERROR_LIVE", "COUNTER_CLASSES"]

#: The execution units, by the name the ISA table gives (``OpcodeSpec.unit``):
#: each a :class:`~vitforge.hw.accel.ports.Unit` built from the config.
UNITS = {
    "dma": Dma,
    "gemm": GemmUnit,
    "eltwise": Eltwise,
    "moves": Moves,
    "softmax": RowSoftmax,
    "layernorm": RowLayerNorm,
    "selector": TokenSelector,
}

#: The units that run an instruction beside a host.
_SIDE_UNITS = {ISA[opcode].unit for opcode in (*SIDE_LOADS, *SIDE_ROWS)}
#: The unit that runs the far instruction (a load beside a GEMM and a row instruction).
_FAR_UNIT, = {ISA[opcode].unit for opcode in SIDE_LOADS}


class Accelerator(wiring.Component):
    """Runs a program from external memory (``docs/isa.md``) until DONE or an error.

    Instructions execute one after another, each on the unit :data:`ISA`
    names for it (:data:`UNITS`), except that a weight load, or a row
    instruction that asks to, may run beside a GEMM on its own unit, and a
    load beside a GEMM and the row instruction beside it (see
    :class:`Controller`); fetching an instruction takes two external
    reads, and issuing it (filling in its live fields) two cycles. ``done``
    rises when the program ends and stays high until the next ``start``;
    ``error`` then tells why it ended early. An instruction run
    beside a GEMM retires with it (``retire`` pulses once for both, with
    :attr:`cycles` counting it: a profiler can log per-instruction cycles
    without touching the run).

    The parts: :class:`InstructionFetch` (owns external memory while it
    reads, the DMA otherwise), :class:`InstructionDecoder`,
    :class:`Controller`, the units, and :class:`Scratchpads`, to which the
    units' ports are connected by name.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    mem : external memory port (requests, in-order read responses)
    <control members> : see :func:`control_members`
    """

    def __init__(self, config):
        self._config = config
        super().__init__({"mem": memory_port(), **control_members()})

    def elaborate(self, platform):
        m = Module()
        units = {name: build(self._config) for name, build in UNITS.items()}
        for name, unit in units.items():
            m.submodules[name] = unit
        m.submodules.fetch = fetch = InstructionFetch()
        m.submodules.decoder = decoder = InstructionDecoder(self._config, tuple(units))
        m.submodules.controller = controller = Controller()

        wiring.connect(m, wiring.flipped(self.mem), fetch.mem)
        wiring.connect(m, controller.fetch, fetch.control)
        wiring.connect(m, decoder.decoded, controller.decoded)
        members = control_members()
        for part in (fetch, controller):
            forward(m, self, part, {name: member for name, member in members.items()
                                    if name in part.signature.members})
        m.submodules.live = live = LiveFields()
        # The instruction register: the instruction with its live fields filled in,
        # loaded in ISSUE and held while it executes; whether a live value exceeds its
        # field, in the cycle after (DECODE: the live unit registers its comparisons).
        issued = Signal(INSTRUCTION_BITS)
        exceeds = Signal()
        decoding = Signal()
        m.d.sync += decoding.eq(controller.issue)
        with m.If(controller.issue):
            m.d.sync += issued.eq(live.resolved)
        with m.If(decoding):
            m.d.sync += exceeds.eq(live.exceeds)
        m.d.comb += [live.instruction.eq(fetch.instruction),
                     live.clear.eq(self.start & ~self.busy),
                     controller.live_exceeds.eq(exceeds),
                     decoder.instruction.eq(issued),
                     decoder.next_instruction.eq(fetch.next_instruction),
                     decoder.far_instruction.eq(fetch.far_instruction),
                     decoder.far_check.eq(controller.far_active)]
        self._dispatch(m, units, issued, fetch, decoder, controller)
        self._connect_ports(m, units, fetch, live)
        return m

    @staticmethod
    def _dispatch(m, units, issued, fetch, decoder, controller):
        """Start the decoded instruction's unit and watch its ``done``; start the instruction
        fetched ahead beside a host on its unit and watch its ``busy``.

        A side unit reads the instruction fetched ahead while ``side_active`` and the
        fetched-ahead opcode is its own but the host's is not (a row unit hosts a load, and
        keeps its own instruction when the next one is for it too). That choice is a
        register, a cycle behind both: ``side_active`` rises
        :data:`~.decoder.SIDE_CHECK_LATENCY` cycles before the side start, the instruction
        fetched ahead holds while it is high, and after it falls no unit starts for three
        cycles (RESOLVE, ISSUE, DECODE). So the decode of the opcode is not on every path
        from the instruction into the side units. The DMA reads the far instruction the
        same way, a cycle after ``far_active``, and starts on ``start_far``."""
        done = side_busy = 0
        for index, (name, unit) in enumerate(units.items()):
            chosen = decoder.unit[index]
            start = controller.start_unit & chosen
            instruction = issued
            if name in _SIDE_UNITS:
                # The instruction fetched ahead is for this unit, and the host is not.
                beside = decoder.next_unit[index] & ~chosen
                start = start | (controller.start_side & beside)
                reads_ahead = Signal(name=f"{name}_reads_ahead")
                m.d.sync += reads_ahead.eq(controller.side_active & beside)
                instruction = Mux(reads_ahead, fetch.next_instruction, instruction)
                side_busy = side_busy | (beside & unit.busy)
            if name == _FAR_UNIT:
                start = start | controller.start_far
                reads_far = Signal(name=f"{name}_reads_far")
                m.d.sync += reads_far.eq(controller.far_active)
                instruction = Mux(reads_far, fetch.far_instruction, instruction)
                m.d.comb += controller.far_busy.eq(unit.busy)
            m.d.comb += [unit.start.eq(start), unit.instruction.eq(instruction)]
            done = done | (chosen & unit.done)
        m.d.comb += [controller.unit_done.eq(done), controller.side_busy.eq(side_busy)]

    def _connect_ports(self, m, units, fetch, live):
        """Connect the units' memory ports by name.

        Scratchpad ports go to :class:`Scratchpads`, ``mem`` (one unit's) to
        the fetch, which shares external memory with it, ``live_update`` (one
        unit's) to the live token registers, and a port that two units have
        under the same name to each other (``tbl_write``, ``sig_write``).
        """
        holders = defaultdict(list)
        for unit in units.values():
            for name in unit.memory_ports:
                holders[name].append(unit)
        users = {name: len(owners) for name, owners in holders.items()
                 if name in SCRATCHPAD_PORTS}
        m.submodules.scratchpads = scratchpads = Scratchpads(self._config, users)
        for name, owners in holders.items():
            ports = [getattr(unit, name) for unit in owners]
            if name in SCRATCHPAD_PORTS:
                for port, shared in zip(ports, getattr(scratchpads, name)):
                    wiring.connect(m, port, shared)
            elif name in ("mem", "live_update"):
                if len(ports) != 1:
                    raise ValueError(f"one unit may have the port {name!r}, not {len(ports)}")
                wiring.connect(m, ports[0], fetch.unit_mem if name == "mem" else live.update)
            elif len(ports) > 1:
                wiring.connect(m, *ports)
            else:
                raise ValueError(f"unit port {name!r} is neither a scratchpad port nor 'mem', "
                                 f"so another unit must have it too; only one has")
