"""cocotb testbench: many programs, one after another (see vitforge.sim.accel.batch)."""

import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from vitforge.errors import WatchdogError
from vitforge.sim.accel.batch import load_job, save_results
from vitforge.sim.accel.session import run_system
from vitforge.sim.pins import CocotbPins

CLOCK_PERIOD_NS = 10


async def _reset(dut):
    dut.rst.value = 1
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def run_batch_job(dut):
    job = load_job(os.environ["VITFORGE_JOB"])
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
    pins = CocotbPins(dut, CLOCK_PERIOD_NS)
    for port in ("start", "host_we", "profile_addr"):
        pins.set(port, 0)
    await _reset(dut)
    results = []
    for image in job["images"]:
        try:
            result = await run_system(pins, image, job["program_addr"],
                                      memory_words=job["memory_words"],
                                      max_cycles=job["max_cycles"])
        except WatchdogError:
            results.append({"dram": b"", "done": False, "error": 0, "error_pc": 0,
                            "cycles": job["max_cycles"], "hung": True})
            await _reset(dut)
            continue
        results.append({"dram": result.dram, "done": result.done, "error": result.error,
                        "error_pc": result.error_pc, "cycles": result.cycles, "hung": False})
    save_results(os.environ["VITFORGE_RESULTS"], results)
