"""cocotb testbench of the GEMM engine: runs one saved session.

Reads the session from ``$VITFORGE_JOB`` and writes the results to
``$VITFORGE_RESULTS`` (see :mod:`vitforge.sim.gemm.session`); comparing them
with the golden model is the caller's job, so mismatches can be reported with
their location.
"""

import os

import cocotb
from cocotb.clock import Clock

from vitforge.hw.gemm.engine import GemmEngine
from vitforge.sim.gemm.session import load_session, run_session, save_results
from vitforge.sim.pins import CocotbPins, pulse_reset

CLOCK_PERIOD_NS = 10


@cocotb.test()
async def run_saved_session(dut):
    config, jobs, options = load_session(os.environ["VITFORGE_JOB"])
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
    pins = CocotbPins(dut, CLOCK_PERIOD_NS)
    pins.drive_inputs(GemmEngine(config).signature)
    await pulse_reset(dut)
    results = await run_session(pins, config, jobs, **options)
    save_results(os.environ["VITFORGE_RESULTS"], results)
