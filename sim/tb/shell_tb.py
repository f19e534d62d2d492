"""cocotb testbench of the accelerator shell: the runtime driver over cocotbext-axi models.

The job (see :mod:`vitforge.sim.accel.shell_session`) lists memory images and
program addresses; each runs through :class:`AcceleratorDriver` on an
:class:`AxiSimTransport`. The testbench also probes the register block and
counts the bursts on the AXI4 master.
"""

import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotb.utils import get_sim_time
from cocotbext.axi.constants import AxiResp

from vitforge.sim.accel.axi_transport import AxiSimTransport
from vitforge.sim.accel.shell_session import load_job, save_results
from vitforge.sim.pins import pulse_reset
from vitforge.sw.runtime.driver import OFFSET, AcceleratorDriver, DriverError

CLOCK_PERIOD_NS = 4


async def _count_bursts(dut, bursts):
    """Log every burst's length (beats) as its address is accepted."""
    while True:
        await RisingEdge(dut.clk)
        if dut.m_axi_arvalid.value and dut.m_axi_arready.value:
            bursts["read"].append(int(dut.m_axi_arlen.value) + 1)
        if dut.m_axi_awvalid.value and dut.m_axi_awready.value:
            bursts["write"].append(int(dut.m_axi_awlen.value) + 1)


async def _probe_registers(transport, driver):
    """Register-block facts the tests check: config read-back, a round trip, bad addresses."""
    registers = transport.registers
    await transport.write_register(OFFSET["PROGRAM_ADDR"], 0x1234_5678)
    round_trip = await transport.read_register(OFFSET["PROGRAM_ADDR"])
    await transport.write_register(OFFSET["CYCLES"], 99)          # read-only: ignored
    bad_read = await registers.read(0xFFC, 4)
    bad_write = await registers.write(0xFF0, b"\x01\x00\x00\x00")
    return {"hw_config": (await driver.hardware_config()).to_dict(),
            "program_addr_round_trip": round_trip,
            "cycles_after_write": await transport.read_register(OFFSET["CYCLES"]),
            "status_idle": await transport.read_register(OFFSET["STATUS"]),
            "bad_read_slverr": bad_read.resp == AxiResp.SLVERR,
            "bad_write_slverr": bad_write.resp == AxiResp.SLVERR}


async def _run(dut, transport, driver, job, program, fault):
    """One program through the driver, disturbed by ``fault`` (see ``run_on_shell``)."""
    image, program_addr, instructions = program
    kind = fault.get("kind")
    if kind in ("read", "write"):
        transport.faults.arm(kind, fault["response"], fault["after_beats"])
    transport.max_cycles = fault.get("max_cycles", job["max_cycles"])
    run = driver.run(image, program_addr, use_interrupt=job["use_interrupt"],
                     instructions=instructions)
    began = get_sim_time("ns")
    try:
        if kind == "reset":
            task = cocotb.start_soon(run)
            await ClockCycles(dut.clk, fault["after_cycles"])
            busy = bool(int(dut.led.value) & 1)
            task.cancel()
            await pulse_reset(dut, 4)
            return {"driver_error": "", "reset_while_busy": busy}
        result = await run
    except DriverError as error:
        return {"driver_error": str(error),
                "status": await transport.read_register(OFFSET["STATUS"]),
                "host_cycles": (get_sim_time("ns") - began) // CLOCK_PERIOD_NS}
    return {"image": result.image, "cycles": result.cycles,
            "class_cycles": result.class_cycles, "side_cycles": result.side_cycles,
            "retired_at": result.retired_at,
            "driver_error": "", "host_cycles": (get_sim_time("ns") - began) // CLOCK_PERIOD_NS}


@cocotb.test()
async def run_driver_job(dut):
    job = load_job(os.environ["VITFORGE_JOB"])
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
    dut.rst.value = 1
    transport = AxiSimTransport(dut, memory_bytes=job["memory_bytes"],
                                max_cycles=job["max_cycles"],
                                back_pressure=job["back_pressure"], seed=job["seed"])
    await pulse_reset(dut, 4)
    bursts = {"read": [], "write": []}
    cocotb.start_soon(_count_bursts(dut, bursts))
    driver = AcceleratorDriver(transport)
    registers = await _probe_registers(transport, driver)
    runs = [await _run(dut, transport, driver, job, program, fault or {})
            for program, fault in zip(job["programs"], job["faults"])]
    save_results(os.environ["VITFORGE_RESULTS"], {
        "registers": registers, "runs": runs, "guards_damaged": transport.check_guards(),
        "bursts": bursts})
