"""Runs compiled programs on the accelerator shell, through any transport.

A transport moves bytes between the host and the accelerator: the simulation
(:class:`vitforge.sim.accel.axi_transport.AxiSimTransport`) or the board
(:class:`vitforge.sw.runtime.pynq_transport.PynqTransport`). Every method the
driver calls on it is a coroutine except :meth:`allocate`:

``allocate(nbytes)``
    A buffer in memory the accelerator can reach, with ``.address`` (its
    byte address as the accelerator sees it, 16-byte aligned).
``await write_buffer(buffer, data)`` / ``await read_buffer(buffer)``
    Copy bytes into the buffer / all of its bytes out (cache maintenance
    included).
``await read_register(offset)`` / ``await write_register(offset, value)``
    32-bit AXI4-Lite access to the register block.
``await wait_interrupt()``
    Return once ``irq`` is high; raise :class:`TimeoutError` after the
    transport's timeout.
``free(buffer)``
    Give the buffer back.
``await pause()``
    Let time pass between two status polls (a few cycles or microseconds).
``poll_limit``
    How many polls :meth:`AcceleratorDriver.run` makes before it gives up.
"""

import asyncio
from dataclasses import dataclass, fields

from vitforge.errors import SimulationError
from vitforge.hw.accel.accelerator import COUNTER_CLASSES, ERROR_NONE
from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.hw.accel.isa import SIDE_CLASSES
from vitforge.hw.accel.profile import PROFILE_DEPTH
from vitforge.hw.accel.regmap import REGISTERS

__all__ = ["AcceleratorDriver", "RunResult", "DriverError", "OFFSET"]

#: Register byte offsets by name.
OFFSET = {register.name: register.offset for register in REGISTERS}

_START = 1 << 0
_IRQ_ENABLE = 1 << 1
_ABORT = 1 << 2
_BUSY = 1 << 0
_DONE = 1 << 1
_BUS_ERROR = 1 << 4
_BUS_ERROR_WRITE = 1 << 7
_RESPONSES = {2: "SLVERR", 3: "DECERR"}


class DriverError(SimulationError):
    """The hardware cannot run the program, or the run did not finish cleanly.

    A :exc:`~vitforge.errors.SimulationError` whether the accelerator is
    simulated or on the board: either way a run of the design failed (exit
    status 1 on the command line).
    """


@dataclass
class RunResult:
    image: bytes          # the memory image after the run
    cycles: int
    class_cycles: dict    # cycles per COUNTER_CLASSES entry
    side_cycles: dict     # per SIDE_CLASSES entry, cycles beside a GEMM (hidden by it)
    error: int            # ERROR_NONE, or why the program stopped early
    error_pc: int
    retired_at: list = None      # cycle count when each instruction retired (0: with another)
    output: object = None        # the program's result (tokens or logits), for run_program
    section_cycles: dict = None  # cycles per compiler section (layer), for run_program


class AcceleratorDriver:
    """Loads a memory image, starts the program, waits and reads everything back.

    Parameters
    ----------
    transport : see the module docstring
    """

    def __init__(self, transport):
        self.transport = transport

    async def hardware_config(self):
        """The :class:`AcceleratorConfig` the bitstream was generated from (``HW_*`` registers)."""
        values = {}
        for field in fields(AcceleratorConfig):
            values[field.name] = await self.transport.read_register(
                OFFSET[f"HW_{field.name.upper()}"])
        try:
            return AcceleratorConfig(**values)
        except (TypeError, ValueError) as error:
            raise DriverError(f"the HW_* registers do not describe an accelerator ({values}): "
                              f"is the bitstream loaded?") from error

    async def run_program(self, program, *, use_interrupt=True):
        """Run a :class:`CompiledProgram`; ``output`` of the result is what it computes.

        Raises
        ------
        DriverError
            If the program needs more than the hardware has, or the run fails.
        """
        hardware = await self.hardware_config()
        check_fits(program.config, hardware)
        result = await self.run(program.image, program.program_addr,
                                use_interrupt=use_interrupt,
                                instructions=len(program.instructions))
        result.output = program.result(result.image)
        result.section_cycles = program.section_cycles(result.retired_at, result.cycles)
        return result

    async def run(self, image, program_addr, *, use_interrupt=True, instructions=0):
        """Run the program at word ``program_addr`` of ``image``.

        The retirement cycles of its first ``instructions`` instructions are
        read back too (two register accesses each).

        Raises
        ------
        DriverError
            If the accelerator is busy, reports an AXI bus error, stops with
            an error code, or does not finish in time. After a bus error or
            a timeout the run has been stopped (:meth:`abort`), so the next
            program can run.
        """
        transport = self.transport
        if await transport.read_register(OFFSET["STATUS"]) & _BUSY:
            raise DriverError("the accelerator is busy with another program (abort it, or "
                              "reset the programmable logic)")
        buffer = transport.allocate(len(image))
        try:
            await transport.write_buffer(buffer, bytes(image))
            await transport.write_register(OFFSET["IMAGE_BASE_LO"], buffer.address & 0xFFFF_FFFF)
            await transport.write_register(OFFSET["IMAGE_BASE_HI"], buffer.address >> 32)
            await transport.write_register(OFFSET["PROGRAM_ADDR"], program_addr)
            await transport.write_register(OFFSET["IRQ_STATUS"], 1)
            enable = _IRQ_ENABLE if use_interrupt else 0
            await transport.write_register(OFFSET["CONTROL"], enable | _START)
            try:
                status = await self._wait(use_interrupt)
            except DriverError as error:
                await self.abort()
                raise DriverError(f"{error}; the run was aborted") from None
            await transport.write_register(OFFSET["IRQ_STATUS"], 1)
            if status & _BUS_ERROR:
                response = _RESPONSES.get((status >> 5) & 0b11, "an error")
                access = "write" if status & _BUS_ERROR_WRITE else "read"
                raise DriverError(f"the accelerator's memory {access} got an AXI {response} "
                                  f"response (image at 0x{buffer.address:x}, {len(image)} "
                                  "bytes); the run was stopped")
            image_after = await transport.read_buffer(buffer)
        finally:
            transport.free(buffer)
        result = RunResult(
            image=image_after,
            cycles=await transport.read_register(OFFSET["CYCLES"]),
            class_cycles={name: await transport.read_register(OFFSET[f"CYCLES_{name.upper()}"])
                          for name in COUNTER_CLASSES},
            side_cycles={name: await transport.read_register(
                OFFSET[f"CYCLES_BESIDE_{name.upper()}"]) for name in SIDE_CLASSES},
            error=(status >> 2) & 0b11,
            error_pc=await transport.read_register(OFFSET["ERROR_PC"]),
            retired_at=[])
        for index in range(min(instructions, PROFILE_DEPTH)):
            await transport.write_register(OFFSET["PROFILE_INDEX"], index)
            result.retired_at.append(await transport.read_register(OFFSET["PROFILE_CYCLES"]))
        if result.error != ERROR_NONE:
            raise DriverError(f"the program stopped with error {result.error} at instruction "
                              f"{result.error_pc} (see docs/isa.md)")
        return result

    async def abort(self):
        """Stop the program that is running (``CONTROL`` bit 2) and wait until the
        accelerator is idle, its memory accesses complete.

        Raises
        ------
        DriverError
            If it is still busy after ``poll_limit`` polls.
        """
        transport = self.transport
        await transport.write_register(OFFSET["CONTROL"], _ABORT)
        for _ in range(transport.poll_limit):
            if not await transport.read_register(OFFSET["STATUS"]) & _BUSY:
                await transport.write_register(OFFSET["IRQ_STATUS"], 1)
                return
            await transport.pause()
        raise DriverError(f"the accelerator is still busy {transport.poll_limit} status polls "
                          "after an abort: reset the programmable logic")

    def run_program_sync(self, program, **options):
        """:meth:`run_program` from synchronous code (PYNQ notebooks and scripts)."""
        return asyncio.run(self.run_program(program, **options))

    async def _wait(self, use_interrupt):
        transport = self.transport
        if use_interrupt:
            try:
                await transport.wait_interrupt()
            except TimeoutError as error:
                raise DriverError(f"no interrupt from the accelerator: {error}") from None
        status = 0
        for _ in range(transport.poll_limit):
            status = await transport.read_register(OFFSET["STATUS"])
            if status & _DONE and not status & _BUSY:
                return status
            await transport.pause()
        raise DriverError(f"the accelerator did not finish within {transport.poll_limit} "
                          f"status polls (STATUS=0x{status:x})")


def check_fits(needed, hardware):
    """Raise :class:`DriverError` unless a program compiled for ``needed`` runs on ``hardware``."""
    if needed.array != hardware.array:
        raise DriverError(f"the program was compiled for a {needed.array}x{needed.array} array, "
                          f"the hardware has {hardware.array}x{hardware.array}")
    for field in fields(AcceleratorConfig):
        if field.name == "act_read_ports":          # changes speed, not what fits
            continue
        if getattr(needed, field.name) > getattr(hardware, field.name):
            raise DriverError(f"the program needs {field.name}={getattr(needed, field.name)}, "
                              f"the hardware has {getattr(hardware, field.name)}")
