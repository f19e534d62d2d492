"""cocotb testbench of the accelerator system: runs one program (see vitforge.sim.accel.cosim)."""

import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from vitforge.sim.accel.cosim import load_job, save_results
from vitforge.sim.accel.session import run_system
from vitforge.sim.pins import CocotbPins

CLOCK_PERIOD_NS = 10


@cocotb.test()
async def run_program_job(dut):
    image, program_addr, max_cycles, memory_words, instructions = load_job(
        os.environ["VITFORGE_JOB"])
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
    pins = CocotbPins(dut, CLOCK_PERIOD_NS)
    for port in ("start", "host_we", "profile_addr"):
        pins.set(port, 0)
    dut.rst.value = 1
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    result = await run_system(pins, image, program_addr, memory_words=memory_words,
                              max_cycles=max_cycles, instructions=instructions)
    save_results(os.environ["VITFORGE_RESULTS"], result)
