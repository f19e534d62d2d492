"""The programmable accelerator: fetch, decode, execute over scratchpads."""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..gemm.core import COUNTER_BITS, GemmCore
from ..gemm.requantize import RequantParams
from ..nonlinear.layernorm import ChannelParams
from .dma import Dma
from .eltwise import Eltwise
from .isa import FIELDS, INSTRUCTION_BITS, Opcode, Space
from .moves import Moves
from .ports import MEMORY_DATA_BITS, arbitrate_reads, arbitrate_writes, field, memory_port
from .row_layernorm import RowLayerNorm
from .row_softmax import RowSoftmax

__all__ = ["Accelerator", "ERROR_NONE", "ERROR_OPCODE", "ERROR_EMPTY", "COUNTER_CLASSES"]

ERROR_NONE = 0
#: An unknown or reserved opcode.
ERROR_OPCODE = 1
#: A count, length or tile field of zero (the instruction would do nothing, or hang).
ERROR_EMPTY = 2

#: Per-class cycle counters, in this order.
COUNTER_CLASSES = ("fetch", "load_store", "gemm", "softmax", "layernorm", "eltwise", "move",
                   "stall")

_UNIT_OF = {Opcode.LOAD: "dma", Opcode.STORE: "dma", Opcode.GEMM: "gemm",
            Opcode.GELU: "eltwise", Opcode.ADD: "eltwise", Opcode.SOFTMAX: "softmax",
            Opcode.LAYERNORM: "layernorm", Opcode.COPY_TO_WGT: "moves",
            Opcode.TRANSPOSE_TO_WGT: "moves"}
_CLASS_OF_UNIT = {"dma": "load_store", "gemm": "gemm", "eltwise": "eltwise",
                  "softmax": "softmax", "layernorm": "layernorm", "moves": "move"}
#: Fields that must not be zero, per opcode.
_NONZERO = {Opcode.LOAD: ("count",), Opcode.STORE: ("count",),
            Opcode.GEMM: ("k", "m_tiles", "n"), Opcode.GELU: ("count",),
            Opcode.ADD: ("count",), Opcode.SOFTMAX: ("m_tiles", "length"),
            Opcode.LAYERNORM: ("m_tiles", "channels"), Opcode.COPY_TO_WGT: ("tiles", "words"),
            Opcode.TRANSPOSE_TO_WGT: ("token_tiles", "channel_tiles")}


class Accelerator(wiring.Component):
    """Runs a program from external memory (``docs/isa.md``) until DONE or an error.

    Instructions execute one after another, each on its unit (DMA, GEMM core,
    row softmax, row LayerNorm, element-wise, moves); fetching an instruction
    takes two external reads. ``done`` rises when the program ends and stays
    high until the next ``start``; ``error`` then tells why it ended early.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    mem : external memory port (requests, in-order read responses)
    start : ``In(1)``
    program_addr : ``In(32)``
        External word of the first instruction.
    busy, done : ``Out(1)``
    error : ``Out(2)``
        ``ERROR_NONE``, ``ERROR_OPCODE`` or ``ERROR_EMPTY``.
    error_pc : ``Out(32)``
        Index of the instruction that raised the error.
    cycles : ``Out(32)``
        Cycles from start to done.
    retire, retire_pc : ``Out(1)``, ``Out(32)``
        Pulses when instruction ``retire_pc`` has finished (a weight load run
        beside a GEMM retires with it), with :attr:`cycles` counting it: a
        profiler can log per-instruction cycles without touching the run.
    class_cycles : ``Out(ArrayLayout(32, 8))``
        Cycles per :data:`COUNTER_CLASSES` entry; ``stall`` counts cycles in
        which an instruction has finished but the weight load running beside
        it has not.
    """

    def __init__(self, config):
        self._config = config
        super().__init__({
            "mem": memory_port(),
            "start": In(1),
            "program_addr": In(32),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(2),
            "error_pc": Out(32),
            "cycles": Out(COUNTER_BITS),
            "class_cycles": Out(data.ArrayLayout(COUNTER_BITS, len(COUNTER_CLASSES))),
            "retire": Out(1),
            "retire_pc": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        word = data.ArrayLayout(signed(8), config.array)

        # Scratchpads.
        m.submodules.act = act = memory.Memory(shape=word, depth=config.act_depth, init=[])
        m.submodules.wgt = wgt = memory.Memory(shape=word, depth=config.wgt_depth, init=[])
        m.submodules.prm = prm = memory.Memory(shape=RequantParams, depth=config.prm_depth,
                                               init=[])
        m.submodules.lnp = lnp = memory.Memory(shape=ChannelParams, depth=config.lnp_depth,
                                               init=[])
        act_read, act_write = act.read_port(), act.write_port()
        wgt_read, wgt_write = wgt.read_port(), wgt.write_port()
        prm_read, prm_write = prm.read_port(), prm.write_port()
        lnp_read, lnp_write = lnp.read_port(), lnp.write_port()

        # Units.
        units = {
            "dma": Dma(config), "eltwise": Eltwise(config), "moves": Moves(config),
            "softmax": RowSoftmax(config), "layernorm": RowLayerNorm(config),
        }
        for name, unit in units.items():
            m.submodules[name] = unit
        m.submodules.gemm = gemm = GemmCore(config.gemm)
        dma, eltwise, moves = units["dma"], units["eltwise"], units["moves"]
        softmax, layernorm = units["softmax"], units["layernorm"]

        arbitrate_reads(m, act_read, [gemm.a_read, eltwise.act_read, moves.act_read,
                                      softmax.act_read, layernorm.act_read, dma.act_read])
        if config.act_read_ports == 2:
            arbitrate_reads(m, act.read_port(), [eltwise.y_read])
        arbitrate_writes(m, act_write, [gemm.c_write, eltwise.act_write, softmax.act_write,
                                        layernorm.act_write, dma.act_write])
        arbitrate_reads(m, wgt_read, [gemm.b_read])
        arbitrate_writes(m, wgt_write, [dma.wgt_write, moves.wgt_write])
        arbitrate_reads(m, prm_read, [gemm.p_read])
        arbitrate_writes(m, prm_write, [dma.prm_write])
        arbitrate_reads(m, lnp_read, [layernorm.lnp_read])
        arbitrate_writes(m, lnp_write, [dma.lnp_write])
        m.d.comb += [eltwise.tbl_write.addr.eq(dma.tbl_write.addr),
                     eltwise.tbl_write.data.eq(dma.tbl_write.data),
                     eltwise.tbl_write.en.eq(dma.tbl_write.en)]

        # Controller.
        instruction = Signal(INSTRUCTION_BITS)
        opcode = instruction[:8]
        pc = Signal(32)
        fetched = Signal(2)
        requested = Signal(2)
        # The DMA may run the looked-ahead weight load beside a GEMM.
        next_instruction = Signal(INSTRUCTION_BITS)
        side_active = Signal()
        for name, unit in units.items():
            m.d.comb += unit.instruction.eq(
                Mux(side_active, next_instruction, instruction) if name == "dma" else instruction)
        start_unit = Signal()
        unit_done = Signal()
        unit_starts = {name: Signal(name=f"start_{name}") for name in [*units, "gemm"]}
        for name, unit in units.items():
            m.d.comb += unit.start.eq(unit_starts[name])
        with m.Switch(opcode):
            for code, name in _UNIT_OF.items():
                with m.Case(code):
                    m.d.comb += unit_starts[name].eq(start_unit)
                    done = gemm.done if name == "gemm" else units[name].done
                    m.d.comb += unit_done.eq(done)

        # Look-ahead: while a GEMM runs, the next instruction is fetched; a LOAD
        # into weight words the GEMM does not read starts at once (double
        # buffering: the compiler alternates the halves of WGT).
        array = config.array
        b_tiles = (field(instruction, Opcode.GEMM, "n") + array - 1) // array
        b_first = field(instruction, Opcode.GEMM, "b_addr")
        b_end = b_first + (b_tiles - 1) * field(instruction, Opcode.GEMM, "b_stride") \
            + field(instruction, Opcode.GEMM, "k")
        load_first = field(next_instruction, Opcode.LOAD, "spad_addr")
        load_end = load_first + field(next_instruction, Opcode.LOAD, "count")
        side_load = Signal()
        m.d.comb += side_load.eq(
            (next_instruction[:8] == Opcode.LOAD)
            & (field(next_instruction, Opcode.LOAD, "space") == Space.WGT)
            & (field(next_instruction, Opcode.LOAD, "count") != 0)
            & ((load_end <= b_first) | (load_first >= b_end)))
        m.d.comb += [
            gemm.cmd.valid.eq(unit_starts["gemm"]),
            *[getattr(gemm.cmd.payload, name).eq(field(instruction, Opcode.GEMM, name))
              for name in FIELDS[Opcode.GEMM]],
        ]

        known = Signal()
        empty = Signal()
        with m.Switch(opcode):
            for code in (*_UNIT_OF, Opcode.NOP, Opcode.SYNC, Opcode.DONE):
                with m.Case(code):
                    m.d.comb += known.eq(1)
                    checks = [field(instruction, code, name) == 0
                              for name in _NONZERO.get(code, ())]
                    if checks:
                        m.d.comb += empty.eq(Cat(*checks).any())

        fetching = Signal()
        fetch_pc = Signal(32)
        main_done = Signal()          # the main unit's done pulse, kept while a side load runs
        looked_ahead = Signal()       # next_instruction holds instruction pc + 1
        side_started = Signal()       # ... and it is a LOAD now running beside the GEMM
        m.d.comb += side_active.eq(side_started)
        m.d.comb += [
            self.mem.req.valid.eq(Mux(fetching, requested < 2, dma.mem.req.valid)),
            self.mem.req.payload.addr.eq(Mux(fetching, self.program_addr + fetch_pc * 2
                                             + requested, dma.mem.req.payload.addr)),
            self.mem.req.payload.write.eq(Mux(fetching, 0, dma.mem.req.payload.write)),
            self.mem.req.payload.wdata.eq(dma.mem.req.payload.wdata),
            dma.mem.req.ready.eq(~fetching & self.mem.req.ready),
            self.mem.resp.ready.eq(Mux(fetching, 1, dma.mem.resp.ready)),
            dma.mem.resp.valid.eq(~fetching & self.mem.resp.valid),
            dma.mem.resp.payload.eq(self.mem.resp.payload),
        ]

        m.d.comb += self.retire_pc.eq(pc)
        active_class = Signal(range(len(COUNTER_CLASSES) + 1), init=len(COUNTER_CLASSES))
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            for index in range(len(COUNTER_CLASSES)):
                with m.If(active_class == index):
                    m.d.sync += self.class_cycles[index].eq(self.class_cycles[index] + 1)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += active_class.eq(len(COUNTER_CLASSES))
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), self.done.eq(0), self.error.eq(ERROR_NONE),
                                 pc.eq(0), requested.eq(0), fetched.eq(0), self.cycles.eq(0)]
                    m.d.sync += [self.class_cycles[i].eq(0) for i in range(len(COUNTER_CLASSES))]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += [fetching.eq(1), fetch_pc.eq(pc),
                             active_class.eq(COUNTER_CLASSES.index("fetch"))]
                self._receive(m, requested, fetched, instruction, "DECODE")
            with m.State("DECODE"):
                m.d.comb += active_class.eq(COUNTER_CLASSES.index("fetch"))
                m.d.sync += [requested.eq(0), fetched.eq(0), main_done.eq(0),
                             looked_ahead.eq(0), side_started.eq(0)]
                with m.If(~known | empty):
                    m.d.sync += [self.error.eq(Mux(known, ERROR_EMPTY, ERROR_OPCODE)),
                                 self.error_pc.eq(pc), self.busy.eq(0), self.done.eq(1)]
                    m.next = "IDLE"
                with m.Elif(opcode == Opcode.DONE):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                    m.next = "IDLE"
                with m.Elif((opcode == Opcode.NOP) | (opcode == Opcode.SYNC)):
                    m.d.comb += self.retire.eq(1)
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "FETCH"
                with m.Else():
                    m.d.comb += start_unit.eq(1)
                    m.next = "EXECUTE"
            with m.State("EXECUTE"):
                self._count_class(m, opcode, active_class)
                with m.If(main_done):
                    # The instruction has finished; the weight load beside it has not.
                    m.d.comb += active_class.eq(COUNTER_CLASSES.index("stall"))
                with m.If(unit_done):
                    m.d.sync += main_done.eq(1)
                finished = (unit_done | main_done) & ~(side_started & dma.busy)
                with m.If(finished):
                    m.d.comb += self.retire.eq(1)
                    m.d.sync += pc.eq(pc + 1 + side_started)
                    with m.If(looked_ahead & ~side_started):
                        m.d.sync += instruction.eq(next_instruction)
                        m.next = "DECODE"
                    with m.Else():
                        m.next = "FETCH"
                with m.Elif((opcode == Opcode.GEMM) & ~looked_ahead):
                    m.next = "LOOK_AHEAD"
            with m.State("LOOK_AHEAD"):
                self._count_class(m, opcode, active_class)
                m.d.comb += [fetching.eq(1), fetch_pc.eq(pc + 1)]
                with m.If(unit_done):
                    m.d.sync += main_done.eq(1)
                self._receive(m, requested, fetched, next_instruction, "SIDE_START")
            with m.State("SIDE_START"):
                self._count_class(m, opcode, active_class)
                with m.If(unit_done):
                    m.d.sync += main_done.eq(1)
                m.d.sync += [looked_ahead.eq(1), requested.eq(0), fetched.eq(0)]
                with m.If(side_load):
                    m.d.comb += [dma.start.eq(1), side_active.eq(1)]
                    m.d.sync += side_started.eq(1)
                m.next = "EXECUTE"
        return m

    @staticmethod
    def _count_class(m, opcode, active_class):
        with m.Switch(opcode):
            for code, name in _UNIT_OF.items():
                with m.Case(code):
                    m.d.comb += active_class.eq(COUNTER_CLASSES.index(_CLASS_OF_UNIT[name]))

    def _receive(self, m, requested, fetched, target, next_state):
        """Count the two requests and responses of an instruction fetch into ``target``."""
        with m.If(self.mem.req.valid & self.mem.req.ready):
            m.d.sync += requested.eq(requested + 1)
        with m.If(self.mem.resp.valid):
            m.d.sync += fetched.eq(fetched + 1)
            with m.If(fetched == 0):
                m.d.sync += target[:MEMORY_DATA_BITS].eq(self.mem.resp.payload)
            with m.Else():
                m.d.sync += target[MEMORY_DATA_BITS:].eq(self.mem.resp.payload)
                m.next = next_state
