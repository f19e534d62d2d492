"""The runtime driver's transport into a cocotb simulation of the accelerator shell."""

from dataclasses import dataclass
import itertools
import random

from cocotb.triggers import ClockCycles, First, RisingEdge

__all__ = ["AxiSimTransport", "SimBuffer", "GUARD_BYTE"]

#: Fill of the guard bands around every buffer; the accelerator must never write them.
GUARD_BYTE = 0xA5


@dataclass(frozen=True)
class SimBuffer:
    address: int
    nbytes: int


def _pauses(seed, busy_fraction):
    """A pause pattern for cocotbext-axi: True pauses the channel for a cycle."""
    generator = random.Random(seed)
    return (generator.random() < busy_fraction for _ in itertools.count())


class AxiSimTransport:
    """cocotbext-axi models around :class:`AcceleratorShell` (``s_axil_*``, ``m_axi_*``).

    Memory is an ``AxiRam``; every buffer gets ``guard_bytes`` of
    :data:`GUARD_BYTE` before and after it, checked by :meth:`check_guards`.
    With ``back_pressure``, every AXI channel of the RAM and of the register
    master stalls at random (seeded) a third of the time.

    Parameters
    ----------
    dut : the cocotb handle of the shell
    memory_bytes : int
    max_cycles : int
        Cycle budget of :meth:`wait_interrupt` (the watchdog).
    """

    poll_limit = 10_000

    def __init__(self, dut, *, memory_bytes, max_cycles, back_pressure=False, seed=0,
                 guard_bytes=256, first_address=0x1000):
        from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

        self._dut = dut
        self._max_cycles = max_cycles
        self._guard_bytes = guard_bytes
        self._next_address = first_address
        self._buffers = []
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=memory_bytes)
        self.registers = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        if back_pressure:
            channels = [self.ram.write_if.aw_channel, self.ram.write_if.w_channel,
                        self.ram.write_if.b_channel, self.ram.read_if.ar_channel,
                        self.ram.read_if.r_channel, self.registers.write_if.aw_channel,
                        self.registers.write_if.w_channel, self.registers.write_if.b_channel,
                        self.registers.read_if.ar_channel, self.registers.read_if.r_channel]
            for index, channel in enumerate(channels):
                channel.set_pause_generator(_pauses(seed * 100 + index, 1 / 3))

    def allocate(self, nbytes):
        guard = self._guard_bytes
        address = -(-(self._next_address + guard) // 16) * 16
        end = address + nbytes
        if end + guard > self.ram.size:
            raise ValueError(f"the simulated memory holds {self.ram.size} bytes; a buffer of "
                             f"{nbytes} bytes at 0x{address:x} does not fit")
        self.ram.write(address - guard, bytes([GUARD_BYTE]) * guard)
        self.ram.write(end, bytes([GUARD_BYTE]) * guard)
        self._next_address = end + guard
        buffer = SimBuffer(address, nbytes)
        self._buffers.append(buffer)
        return buffer

    def free(self, buffer):
        """Buffers stay where they are, so their guards can still be checked."""

    def check_guards(self):
        """The guard bands that were overwritten, as ``(buffer address, side)`` pairs."""
        guard = self._guard_bytes
        damaged = []
        for buffer in self._buffers:
            for side, start in (("before", buffer.address - guard),
                                ("after", buffer.address + buffer.nbytes)):
                if self.ram.read(start, guard) != bytes([GUARD_BYTE]) * guard:
                    damaged.append((buffer.address, side))
        return damaged

    async def write_buffer(self, buffer, data):
        self.ram.write(buffer.address, data)

    async def read_buffer(self, buffer):
        return self.ram.read(buffer.address, buffer.nbytes)

    async def read_register(self, offset):
        return await self.registers.read_dword(offset)

    async def write_register(self, offset, value):
        await self.registers.write_dword(offset, value)

    async def wait_interrupt(self):
        if self._dut.irq.value:
            return
        timeout = ClockCycles(self._dut.clk, self._max_cycles)
        if await First(RisingEdge(self._dut.irq), timeout) is timeout:
            raise TimeoutError(f"irq did not rise within {self._max_cycles} cycles")

    async def pause(self):
        await ClockCycles(self._dut.clk, 16)
