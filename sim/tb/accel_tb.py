"""cocotb testbench of the accelerator system: programs one after another (see
vitforge.sim.accel.batch)."""

from dataclasses import asdict
import os

import cocotb
from cocotb.clock import Clock

from vitforge.errors import WatchdogError
from vitforge.sim.accel.batch import load_job, save_results
from vitforge.sim.accel.session import run_system
from vitforge.sim.pins import CocotbPins, pulse_reset

CLOCK_PERIOD_NS = 10


@cocotb.test()
async def run_programs_job(dut):
    job = load_job(os.environ["VITFORGE_JOB"])
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
    pins = CocotbPins(dut, CLOCK_PERIOD_NS)
    for port in ("start", "host_we", "profile_addr"):
        pins.set(port, 0)
    await pulse_reset(dut)
    results = []
    for image in job["images"]:
        try:
            result = await run_system(pins, image, job["program_addr"],
                                      memory_words=job["memory_words"],
                                      max_cycles=job["max_cycles"],
                                      instructions=job["instructions"])
        except WatchdogError:
            if not job["reset_after_hang"]:
                raise
            results.append({"dram": b"", "done": False, "error": 0, "error_pc": 0,
                            "cycles": job["max_cycles"], "class_cycles": {},
                            "side_cycles": {},
                            "retired_at": [], "hung": True})
            await pulse_reset(dut)
            continue
        results.append({**asdict(result), "hung": False})
    save_results(os.environ["VITFORGE_RESULTS"], results)
