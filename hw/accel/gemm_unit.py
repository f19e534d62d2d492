"""GEMM: the GEMM core behind the execution-unit interface."""

from dataclasses import fields

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from ..gemm.core import GemmCore
from ..gemm.descriptor import GemmDescriptor
from .config import SCRATCHPAD_ADDRESS_BITS
from .eltwise import RESIDUAL_STAGES, residual_stream
from .gelu_lookup import GeluLookup, table_write_port
from .isa import ISA, Opcode
from .ports import Unit, scratchpad_ports

__all__ = ["GemmUnit", "RESIDUAL_CYCLES"]

#: The cycles a GEMM with ``residual`` takes beyond one without: a C word's residual is read
#: in the cycle the C word's register would write it, and the element-wise unit writes the
#: sum :data:`~.eltwise.RESIDUAL_STAGES` cycles later.
RESIDUAL_CYCLES = RESIDUAL_STAGES


class GemmUnit(Unit):
    """Executes GEMM and GEMM_SPARSE (``docs/isa.md``) on a :class:`GemmCore`.

    The instruction's fields are the core's :class:`GemmDescriptor` (GEMM_SPARSE
    has GEMM's fields at the same offsets up to ``gelu``, then ``depth``, which
    only the compiler's checks use; it sets ``sparse``). A comes through
    ``act_read``, B through ``wgt_read``, or with GEMM's ``b_act`` through
    ``y_read``, ACT's second read port (``act_slab_read``, ``wgt_slab_read`` and
    ``y_slab_read``, groups of ``k_per_cycle`` words, when
    ``config.gemm.k_per_cycle > 1``), the A-row numbers of sparse B words through
    ``idx_read`` (one cycle ahead of B), the requantization parameters
    through ``prm_read``, and C leaves through ``act_write``.
    ``start`` hands the command to the core in the same cycle.

    C words pass one register on their way to ACT, where an instruction whose
    ``gelu`` field is set writes the GELU of each value instead (a copy of
    the GELU table, :class:`GeluLookup`, filled by LOAD into TBL as the
    element-wise unit's is): FC1 and its GELU in one pass, at no cost in
    throughput. ``busy`` covers that register, and ``done``, the core's a
    cycle later, pulses as it falls: a GEMM takes ``command_cycles + 2``
    cycles from ``start`` to ``done``. Throughput and latency otherwise: see
    :class:`GemmEngine`.

    A GEMM with ``residual`` (two ACT read ports) writes no C word itself: it
    reads the residual's word (``r_addr`` plus the word's offset from
    ``c_addr``) through ``y_read`` in the cycle after the C word leaves the
    core and hands both to the element-wise unit (``residual_stream``), whose
    ADD datapath writes their rescaled sum in place of the C word
    (:class:`Eltwise`); ``done`` waits for the last sum's write,
    :data:`RESIDUAL_CYCLES` cycles later than without.

    Parameters
    ----------
    config : AcceleratorConfig
    """

    def __init__(self, config):
        names = ["act_read", "wgt_read"]
        two_ports = config.act_read_ports == 2
        if two_ports:
            names.append("y_read")
        if config.gemm.k_per_cycle > 1:
            names = [name.replace("_read", "_slab_read") for name in names]
        self._operand_ports = tuple(names)
        # The residual's word read: y_read itself, or beside its slab read.
        residual_read = ("y_read",) if two_ports and "y_read" not in names else ()
        streams = {"residual_stream": Out(residual_stream(config))} if two_ports else {}
        super().__init__(config, {
            **scratchpad_ports(config, *self._operand_ports, *residual_read, "idx_read",
                               "prm_read", "act_write"),
            "tbl_write": table_write_port(),
            **streams,
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = GemmCore(self._config.gemm)
        gemm = ISA[Opcode.GEMM].view(self.instruction)
        m.d.comb += [
            core.cmd.valid.eq(self.start),
            *[getattr(core.cmd.payload, field.name).eq(getattr(gemm, field.name))
              for field in fields(GemmDescriptor) if field.name != "sparse"],
            core.cmd.payload.sparse.eq(gemm.opcode == Opcode.GEMM_SPARSE),
        ]
        a_read, b_read, *act_b_read = (getattr(self, name) for name in self._operand_ports)
        for core_read, read in ((core.a_read, a_read), (core.i_read, self.idx_read),
                                (core.p_read, self.prm_read)):
            m.d.comb += [read.addr.eq(core_read.addr), read.en.eq(core_read.en),
                         core_read.data.eq(read.data)]
        # B from WGT, or with b_act (GEMM only: GEMM_SPARSE has depth there) from ACT's
        # second read port; the field holds while the GEMM runs.
        m.d.comb += [b_read.addr.eq(core.b_read.addr), core.b_read.data.eq(b_read.data)]
        if act_b_read:
            from_act = gemm.b_act & (gemm.opcode == Opcode.GEMM)
            m.d.comb += [act_b_read[0].addr.eq(core.b_read.addr),
                         act_b_read[0].en.eq(core.b_read.en & from_act),
                         b_read.en.eq(core.b_read.en & ~from_act)]
            with m.If(from_act):
                m.d.comb += core.b_read.data.eq(act_b_read[0].data)
        else:
            m.d.comb += b_read.en.eq(core.b_read.en)
        # The C word's register stage, beside its GELU lookup.
        m.submodules.gelu = lookup = GeluLookup(self._config.array)
        wiring.connect(m, wiring.flipped(self.tbl_write), lookup.tbl_write)
        m.d.comb += [lookup.value.eq(core.c_write.data), lookup.take.eq(core.c_write.en)]
        # The C word's register stage, beside its GELU lookup; with a residual the
        # element-wise unit writes instead (``fused``, loaded at the start).
        fused = Signal()
        written = Signal.like(core.c_write.data)
        m.d.sync += [self.act_write.addr.eq(core.c_write.addr),
                     self.act_write.en.eq(core.c_write.en & ~fused),
                     written.eq(core.c_write.data), self.done.eq(core.done)]
        m.d.comb += [self.act_write.data.eq(Mux(gemm.gelu, lookup.entry, written)),
                     self.busy.eq(core.busy | self.act_write.en)]
        if "residual_stream" in self.memory_ports:
            self._residual(m, core, gemm, written, fused)
        return m

    def _residual(self, m, core, gemm, written, fused):
        """A GEMM with ``residual``: each C word's residual word is read in the cycle after
        it leaves the core (its address a register: the C word's plus the residual's offset)
        and both go to the element-wise unit, which writes the sum; ``done`` waits for it."""
        offset = Signal(SCRATCHPAD_ADDRESS_BITS)
        with m.If(self.start):
            m.d.sync += [fused.eq(gemm.residual & (gemm.opcode == Opcode.GEMM)),
                         offset.eq(gemm.r_addr - gemm.c_addr)]
        residual_address = Signal(SCRATCHPAD_ADDRESS_BITS)
        issue = Signal()
        result = Signal.like(written)
        m.d.sync += [residual_address.eq(core.c_write.addr + offset),
                     issue.eq(core.c_write.en & fused), result.eq(written)]
        stream = self.residual_stream
        m.d.comb += [stream.issue.eq(issue), stream.addr.eq(self.act_write.addr),
                     stream.c.eq(result), stream.r.eq(self.y_read.data),
                     stream.r_multiplier.eq(gemm.r_multiplier),
                     stream.c_multiplier.eq(gemm.c_multiplier), stream.shift.eq(gemm.r_shift)]
        residual_read = [self.y_read.addr.eq(residual_address), self.y_read.en.eq(issue)]
        if "y_read" in self._operand_ports:
            # (Also b_act's B port on an array of one step per cycle: a GEMM has one or the
            # other.)
            with m.If(fused):
                m.d.comb += residual_read
        else:
            m.d.comb += residual_read
        # done and busy wait RESIDUAL_CYCLES more for the sums; the done of a GEMM right
        # before (still in ``later`` when this one starts) must not end this one.
        later = Signal(RESIDUAL_CYCLES)
        m.d.sync += later.eq(Cat(core.done, later[:-1]))
        with m.If(self.start):
            m.d.sync += later.eq(0)
        with m.If(fused):
            m.d.sync += self.done.eq(later[-1])
            m.d.comb += self.busy.eq(core.busy | issue | later.any())
