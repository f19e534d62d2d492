"""A GEMM with ``residual``: the GEMM unit and the element-wise unit joined by
``residual_stream``, in Amaranth's simulator against the golden interpreter."""

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring

from vitforge.hw.accel.eltwise import Eltwise
from vitforge.hw.accel.gemm_unit import RESIDUAL_CYCLES, GemmUnit
from vitforge.hw.accel.isa import Opcode, encode
from vitforge.hw.accel.ports import forward
from vitforge.hw.gemm.descriptor import GemmDescriptor
from vitforge.sim.accel.unit_bench import random_machine, run_and_compare, small_config
from vitforge.sw.gemm.plan import command_cycles


class _GemmBesideEltwise(wiring.Component):
    """The GEMM unit's ports, and the element-wise unit's ACT write port as
    ``act_sum_write``: the two units as the accelerator joins them for a residual."""

    def __init__(self, config):
        self._gemm, self._eltwise = GemmUnit(config), Eltwise(config)
        self._forwarded = {name: member for name, member in self._gemm.signature.members.items()
                           if name != "residual_stream"}
        super().__init__({**self._forwarded,
                          "act_sum_write": self._eltwise.signature.members["act_write"]})

    def elaborate(self, platform):
        m = Module()
        m.submodules.gemm, m.submodules.eltwise = self._gemm, self._eltwise
        wiring.connect(m, self._gemm.residual_stream, self._eltwise.residual_stream)
        for name, member in self._forwarded.items():
            if member.is_port:
                forward(m, self, self._gemm, {name: member})
            else:
                wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(self._gemm, name))
        wiring.connect(m, wiring.flipped(self.act_sum_write), self._eltwise.act_write)
        m.d.comb += self._eltwise.instruction.eq(self.instruction)
        return m


#: The residual in place (the result overwrites it, as the compiler's proj and FC2 do) and
#: apart from the result, and a multiplier of each sign's extreme; k below and above the
#: array size, ragged last column tiles.
RESIDUALS = [
    dict(a_addr=0, a_stride=12, b_addr=0, b_stride=12, c_addr=120, c_stride=7, p_addr=3, k=9,
         m_tiles=3, n=7, r_addr=120, r_multiplier=40_000, c_multiplier=25_000, r_shift=15),
    dict(a_addr=40, a_stride=4, b_addr=100, b_stride=4, c_addr=200, c_stride=5, p_addr=0, k=2,
         m_tiles=2, n=5, r_addr=160, r_multiplier=65_535, c_multiplier=1, r_shift=16),
    dict(a_addr=8, a_stride=20, b_addr=32, b_stride=20, c_addr=230, c_stride=4, p_addr=20,
         k=20, m_tiles=1, n=4, r_addr=64, r_multiplier=1, c_multiplier=65_535, r_shift=9),
]


@pytest.mark.parametrize("k_per_cycle, seed", [(1, 102), (2, 104)])
def test_residual_sums_equal_the_interpreter_six_cycles_later(k_per_cycle, seed):
    """Each result word is the interpreter's ADD of the residual's word and the GEMM's; a
    GEMM without ``residual`` and one with ``b_act`` (on one step per cycle, the same
    read port) between them write their own results as before."""
    config = small_config(array=4, macs_per_dsp=2, k_per_cycle=k_per_cycle, act_read_ports=2)
    commands = [dict(RESIDUALS[0], residual=1), dict(RESIDUALS[1], residual=0, b_act=1),
                dict(RESIDUALS[1], residual=1), dict(RESIDUALS[2], residual=0),
                dict(RESIDUALS[2], residual=1)]
    machine = random_machine(config, np.random.default_rng(seed))
    # Scales that keep most results off the rails, so that every word shows in the sums.
    machine.bias[:], machine.multiplier[:], machine.shift[:] = 0, 1 << 15, 22
    runs = run_and_compare(_GemmBesideEltwise(config), machine,
                           [encode(Opcode.GEMM, **fields) for fields in commands],
                           err_msg=f"GEMM with residual, k_per_cycle {k_per_cycle}, "
                                   f"seed {seed}")
    for run, fields in zip(runs, commands):
        cycles = command_cycles(config.gemm, GemmDescriptor.from_fields(fields)) + 2
        assert run.cycles == cycles + RESIDUAL_CYCLES * fields["residual"], fields
