"""The runtime driver's transport into a cocotb simulation of the accelerator shell."""

from dataclasses import dataclass
import itertools
import random

from cocotb.triggers import ClockCycles, First, RisingEdge

__all__ = ["AxiSimTransport", "SimBuffer", "GUARD_BYTE", "FaultInjector"]

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


class FaultInjector:
    """Answers one chosen beat of the simulated memory with an AXI error response.

    :meth:`arm` picks the direction (``"read"`` or ``"write"``), the response
    (``"SLVERR"`` or ``"DECERR"``) and how many beats of that direction pass
    before the faulty one; the fault then fires once. A faulty read beat
    carries zeros; a faulty write beat is not written, and its burst's B
    response carries the error.
    """

    def __init__(self):
        self._armed = None

    def arm(self, direction, response, after_beats):
        if direction not in ("read", "write") or response not in ("SLVERR", "DECERR"):
            raise ValueError(f"a fault is a read or write SLVERR or DECERR, not "
                             f"{direction} {response}")
        self._armed = [direction, response, after_beats]

    def fires(self, direction):
        """Whether this beat of ``direction`` is the faulty one."""
        if self._armed is None or self._armed[0] != direction:
            return False
        if self._armed[2]:
            self._armed[2] -= 1
            return False
        return True

    def take_response(self):
        """The response of the fault that just fired, disarming it."""
        response, self._armed = self._armed[1], None
        return response


class _InjectedFault(Exception):
    """Raised in a memory access that :class:`FaultInjector` fails; cocotbext-axi answers
    it with SLVERR, which the channel wrapper below turns into the armed response."""


def _faulty_ram(bus, clock, reset, size, injector):
    """An ``AxiRam`` (cocotbext-axi) whose accesses :class:`FaultInjector` can fail."""
    from cocotbext.axi import AxiResp
    from cocotbext.axi.axi_ram import AxiRamRead, AxiRamWrite
    from cocotbext.axi.memory import Memory

    def respond(channel, field):
        """Give the armed response to the transaction that the fault made SLVERR."""
        send = channel.send
        pending = []

        async def send_with_response(transaction):
            if pending and getattr(transaction, field) == AxiResp.SLVERR:
                setattr(transaction, field, AxiResp[pending.pop()])
            await send(transaction)
        channel.send = send_with_response
        return pending

    class FaultyRead(AxiRamRead):
        async def _read(self, address, length):
            if injector.fires("read"):
                self.pending.append(injector.take_response())
                raise _InjectedFault(address)
            return await super()._read(address, length)

    class FaultyWrite(AxiRamWrite):
        async def _write(self, address, data):
            if injector.fires("write"):
                self.pending.append(injector.take_response())
                raise _InjectedFault(address)
            await super()._write(address, data)

    class FaultyRam(Memory):
        def __init__(self):
            super().__init__(size)
            self.write_if = FaultyWrite(bus.write, clock, reset, mem=self.mem)
            self.read_if = FaultyRead(bus.read, clock, reset, mem=self.mem)
            self.write_if.pending = respond(self.write_if.b_channel, "bresp")
            self.read_if.pending = respond(self.read_if.r_channel, "rresp")

    return FaultyRam()


class AxiSimTransport:
    """cocotbext-axi models around :class:`AcceleratorShell` (``s_axil_*``, ``m_axi_*``).

    Memory is an ``AxiRam`` whose accesses :attr:`faults` (a
    :class:`FaultInjector`) can answer with an error; every buffer gets ``guard_bytes`` of
    :data:`GUARD_BYTE` before and after it, checked by :meth:`check_guards`.
    With ``back_pressure``, every AXI channel of the RAM and of the register
    master stalls at random (seeded) a third of the time.

    Parameters
    ----------
    dut : the cocotb handle of the shell
    memory_bytes : int
    max_cycles : int
        Cycle budget of :meth:`wait_interrupt` (the watchdog); an attribute
        of the same name changes it between runs.
    """

    poll_limit = 10_000

    def __init__(self, dut, *, memory_bytes, max_cycles, back_pressure=False, seed=0,
                 guard_bytes=256, first_address=0x1000):
        from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster

        self._dut = dut
        self.max_cycles = max_cycles
        self._guard_bytes = guard_bytes
        self._next_address = first_address
        self._buffers = []
        self.faults = FaultInjector()
        self.ram = _faulty_ram(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, memory_bytes,
                               self.faults)
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
        timeout = ClockCycles(self._dut.clk, self.max_cycles)
        if await First(RisingEdge(self._dut.irq), timeout) is timeout:
            raise TimeoutError(f"irq did not rise within {self.max_cycles} cycles")

    async def pause(self):
        await ClockCycles(self._dut.clk, 16)
