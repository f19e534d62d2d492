"""GEMM: the GEMM core behind the execution-unit interface."""

from dataclasses import fields

from amaranth import Module

from ..gemm.core import GemmCore
from ..gemm.descriptor import GemmDescriptor
from .isa import ISA, Opcode
from .ports import Unit, scratchpad_ports

__all__ = ["GemmUnit"]


class GemmUnit(Unit):
    """Executes GEMM and GEMM_SPARSE (``docs/isa.md``) on a :class:`GemmCore`.

    The instruction's fields are the core's :class:`GemmDescriptor` (GEMM_SPARSE
    has GEMM's fields at the same offsets, then ``depth``, which only the
    compiler's checks use; it sets ``sparse``). A comes through ``act_read``,
    B through ``wgt_read`` (``act_slab_read`` and ``wgt_slab_read``, groups of
    ``k_per_cycle`` words, when ``config.gemm.k_per_cycle > 1``), the A-row numbers of sparse B words through
    ``idx_read`` (one cycle ahead of B), the requantization parameters
    through ``prm_read``, and C leaves through ``act_write``.
    ``start`` hands the command to the core in the same cycle; ``busy`` and
    ``done`` are the core's. Throughput and latency: see :class:`GemmEngine`.

    Parameters
    ----------
    config : AcceleratorConfig
    """

    def __init__(self, config):
        self._operand_ports = (("act_read", "wgt_read") if config.gemm.k_per_cycle == 1
                               else ("act_slab_read", "wgt_slab_read"))
        super().__init__(config, scratchpad_ports(config, *self._operand_ports, "idx_read",
                                                  "prm_read", "act_write"))

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = GemmCore(self._config.gemm)
        gemm = ISA[Opcode.GEMM].view(self.instruction)
        m.d.comb += [
            core.cmd.valid.eq(self.start),
            *[getattr(core.cmd.payload, field.name).eq(getattr(gemm, field.name))
              for field in fields(GemmDescriptor) if field.name != "sparse"],
            core.cmd.payload.sparse.eq(gemm.opcode == Opcode.GEMM_SPARSE),
            self.busy.eq(core.busy),
            self.done.eq(core.done),
        ]
        a_read, b_read = (getattr(self, name) for name in self._operand_ports)
        for core_read, read in ((core.a_read, a_read), (core.b_read, b_read),
                                (core.i_read, self.idx_read), (core.p_read, self.prm_read)):
            m.d.comb += [read.addr.eq(core_read.addr), read.en.eq(core_read.en),
                         core_read.data.eq(read.data)]
        m.d.comb += [self.act_write.addr.eq(core.c_write.addr),
                     self.act_write.data.eq(core.c_write.data),
                     self.act_write.en.eq(core.c_write.en)]
        return m
