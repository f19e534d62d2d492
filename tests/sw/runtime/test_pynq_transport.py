"""The runtime driver over the PYNQ transport, with a fake ``pynq`` whose device is the golden model.

The fake maps buffers at made-up physical addresses, implements the register
block's semantics (start, status, IRQ status, HW_* read-back) and runs the
golden interpreter on the buffer when the driver starts the program, so the
driver's whole sequence is checked against the register map.
"""

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

from vitforge.errors import ConfigError, ProgramError, ToolchainError
from vitforge.hw.accel.accelerator import ERROR_OPCODE
from vitforge.hw.accel.isa import Opcode, encode
from vitforge.sw.accel.compiler import compile_blocks, config_for
from vitforge.sw.golden.accel.interpreter import Machine, run_program
from vitforge.sw.model.random_block import random_blocks
from vitforge.sw.runtime.driver import OFFSET, AcceleratorDriver, DriverError
from vitforge.sw.runtime.pynq_transport import PynqTransport


class FakeBuffer(np.ndarray):
    def flush(self):
        self.owner.log.append("flush")

    def invalidate(self):
        self.owner.log.append("invalidate")

    def freebuffer(self):
        self.owner.buffers.pop(self.device_address)


class FakeDevice:
    """The accelerator shell as seen through MMIO, computing with the golden model."""

    def __init__(self, config, *, raise_irq=True):
        self.config = config
        self.raise_irq = raise_irq
        self.registers = {offset: 0 for offset in OFFSET.values()}
        for name, value in config.to_dict().items():
            self.registers[OFFSET[f"HW_{name.upper()}"]] = value
        self.buffers = {}
        self.next_address = 0x6000_0000
        self.log = []
        self.irq = asyncio.Event()

    def allocate(self, shape, dtype):
        array = np.zeros(shape, dtype).view(FakeBuffer)
        array.owner, array.device_address = self, self.next_address
        self.buffers[self.next_address] = array
        self.next_address += 1 << 20
        return array

    def write(self, offset, value):
        self.log.append(("write", offset, value))
        if offset == OFFSET["IRQ_STATUS"]:
            self.registers[offset] &= ~value
        elif offset == OFFSET["CONTROL"]:
            self.registers[offset] = value & ~1
            if value & 1:
                self.run()
        elif offset in (OFFSET["PROGRAM_ADDR"], OFFSET["IMAGE_BASE_LO"], OFFSET["IMAGE_BASE_HI"],
                        OFFSET["PROFILE_INDEX"]):
            self.registers[offset] = value

    def read(self, offset):
        if offset == OFFSET["PROFILE_CYCLES"]:       # instruction i retires at cycle 10 (i + 1)
            return 10 * (self.registers[OFFSET["PROFILE_INDEX"]] + 1)
        return self.registers[offset]

    def run(self):
        base = self.registers[OFFSET["IMAGE_BASE_LO"]] | self.registers[OFFSET["IMAGE_BASE_HI"]] << 32
        buffer = self.buffers[base]
        machine = Machine(self.config, buffer.tobytes())
        error = 0
        try:
            executed = run_program(machine, self.registers[OFFSET["PROGRAM_ADDR"]])
            self.registers[OFFSET["CYCLES"]] = 10 * executed
        except ProgramError:
            error = ERROR_OPCODE
        buffer[:] = machine.dram
        self.registers[OFFSET["STATUS"]] = 0b10 | error << 2
        if self.raise_irq:
            self.registers[OFFSET["IRQ_STATUS"]] = 1
            self.irq.set()


def fake_pynq(device, ip_name="accel"):
    class Interrupt:
        def __init__(self, name):
            assert name == f"{ip_name}/irq"

        async def wait(self):
            await device.irq.wait()
            device.irq.clear()

    return SimpleNamespace(
        Overlay=lambda path: SimpleNamespace(ip_dict={ip_name: {"phys_addr": 0xA000_0000,
                                                                "addr_range": 0x1000}}),
        MMIO=lambda base, length: SimpleNamespace(read=device.read, write=device.write),
        allocate=device.allocate,
        Interrupt=Interrupt)


def block_program(seed=3):
    x, blocks, expected = random_blocks(np.random.default_rng(seed), tokens=9, dim=16, heads=2,
                                        hidden=32, count=1)
    return compile_blocks(config_for(blocks, 9, 4), blocks, x), expected


@pytest.mark.parametrize("use_interrupt", [True, False])
def test_program_runs_through_the_pynq_transport(use_interrupt):
    program, expected = block_program()
    device = FakeDevice(program.config)
    driver = AcceleratorDriver(PynqTransport("vitforge.bit", pynq_module=fake_pynq(device)))
    result = driver.run_program_sync(program, use_interrupt=use_interrupt)
    np.testing.assert_array_equal(result.output, expected, err_msg="seed 3")
    writes = [entry[1:] for entry in device.log if entry[0] == "write"]
    started = writes.index((OFFSET["CONTROL"], 1 | (2 if use_interrupt else 0)))
    assert (OFFSET["IRQ_STATUS"], 1) in writes[started:]      # the interrupt is acknowledged
    assert result.retired_at == [10 * (i + 1) for i in range(len(program.instructions))]
    assert sum(result.section_cycles.values()) == result.cycles
    assert {"block 0 attention", "block 0 mlp"} <= set(result.section_cycles)
    assert device.log.index("flush") < device.log.index("invalidate")
    assert device.buffers == {}                                # the buffer was freed


def test_hardware_smaller_than_the_program_is_refused():
    program, _ = block_program()
    small = program.config.__class__(**{**program.config.to_dict(), "act_depth": 64})
    driver = AcceleratorDriver(PynqTransport(pynq_module=fake_pynq(FakeDevice(small))))
    with pytest.raises(DriverError, match=r"^the program needs act_depth=\d+, the hardware has 64$"):
        driver.run_program_sync(program)


def test_error_status_and_missing_interrupt_raise_driver_errors():
    program, _ = block_program()
    image = b"".join(word.to_bytes(32, "little") for word in (encode(Opcode.NOP), 0x7E))
    device = FakeDevice(program.config)
    driver = AcceleratorDriver(PynqTransport(pynq_module=fake_pynq(device)))
    with pytest.raises(DriverError, match=r"^the program stopped with error 1 at instruction"):
        asyncio.run(driver.run(image, 0))
    silent = FakeDevice(program.config, raise_irq=False)
    driver = AcceleratorDriver(PynqTransport(timeout_s=0.05, pynq_module=fake_pynq(silent)))
    with pytest.raises(DriverError, match=r"^no interrupt from the accelerator: no interrupt "
                                          r"within 0.05 s; the run was aborted$"):
        driver.run_program_sync(program)


def test_missing_ip_and_missing_pynq_are_explained():
    device = FakeDevice(block_program()[0].config)
    with pytest.raises(ConfigError, match=r"^bitfile x.bit has no IP named 'accel'; it has dma$"):
        PynqTransport("x.bit", pynq_module=fake_pynq(device, ip_name="dma"))
    with pytest.raises(ToolchainError, match=r"needs the 'pynq' package"):
        PynqTransport("x.bit")
