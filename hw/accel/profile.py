"""The cycle count at which each instruction retired: per-layer latency without a profiler."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ..gemm.core import COUNTER_BITS

__all__ = ["RetireProfile", "PROFILE_DEPTH", "profile_retirements"]

#: Instructions whose retirement cycle is kept.
PROFILE_DEPTH = 4096


class RetireProfile(wiring.Component):
    """Logs :attr:`Accelerator.cycles` when instruction ``retire_pc`` retires.

    Entries carry the parity of the run they were written in, so an entry
    not written in the current run (an instruction that retired together with
    the one before it, such as a weight load beside a GEMM) reads as 0 rather
    than as a stale value from an earlier program. One block RAM of
    ``PROFILE_DEPTH`` words, written the cycle after the retirement; reads take
    one cycle.

    Attributes
    ----------
    start : ``In(1)``
        A new run begins.
    retire, retire_pc, cycles : ``In(1)``, ``In(32)``, ``In(32)``
        From :class:`Accelerator`.
    read_addr : ``In(range(PROFILE_DEPTH))``
    read_data : ``Out(32)``
        The retirement cycle of instruction ``read_addr`` one cycle earlier.
    """

    def __init__(self):
        super().__init__({
            "start": In(1),
            "retire": In(1),
            "retire_pc": In(32),
            "cycles": In(COUNTER_BITS),
            "read_addr": In(range(PROFILE_DEPTH)),
            "read_data": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.log = log = memory.Memory(shape=COUNTER_BITS + 1, depth=PROFILE_DEPTH,
                                               init=[])
        write, read = log.write_port(), log.read_port()
        run = Signal()
        with m.If(self.start):
            m.d.sync += run.eq(~run)
        # The write a cycle after the retirement, from registers: the retire pulse comes
        # from the decode of the instruction register, late in its cycle.
        m.d.sync += [
            write.addr.eq(self.retire_pc),
            write.data.eq(Cat(self.cycles, run)),
            write.en.eq(self.retire & (self.retire_pc < PROFILE_DEPTH)),
        ]
        m.d.comb += [
            read.addr.eq(self.read_addr),
            self.read_data.eq(Mux(read.data[-1] == run, read.data[:COUNTER_BITS], 0)),
        ]
        return m


def profile_retirements(m, accelerator):
    """Add a :class:`RetireProfile` logging ``accelerator`` to module ``m`` and return it.

    The caller connects its read side (``read_addr``, ``read_data``).
    """
    m.submodules.profile = profile = RetireProfile()
    m.d.comb += [
        profile.start.eq(accelerator.start),
        profile.retire.eq(accelerator.retire),
        profile.retire_pc.eq(accelerator.retire_pc),
        profile.cycles.eq(accelerator.cycles),
    ]
    return profile
