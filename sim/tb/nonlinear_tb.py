"""cocotb testbench of the nonlinear units: runs one job of :mod:`vitforge.sim.nonlinear.cosim`."""

import os

import cocotb
import numpy as np
from cocotb.clock import Clock

from vitforge.sim.nonlinear.cosim import load_job, save_results
from vitforge.sim.nonlinear.gelu_session import run_gelu
from vitforge.sim.nonlinear.layernorm_session import run_layernorm
from vitforge.sim.nonlinear.softmax_session import run_softmax
from vitforge.sim.pins import CocotbPins, pulse_reset

CLOCK_PERIOD_NS = 10
SESSIONS = {"gelu": run_gelu, "softmax": run_softmax, "layernorm": run_layernorm}


@cocotb.test()
async def run_saved_job(dut):
    meta, arrays = load_job(os.environ["VITFORGE_JOB"])
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
    pins = CocotbPins(dut, CLOCK_PERIOD_NS)
    pins.set("i.valid", 0)
    pins.set("o.ready", 0)
    await pulse_reset(dut)
    rng = None if meta["seed"] is None else np.random.default_rng(meta["seed"])
    outputs, cycles = await SESSIONS[meta["op"]](
        pins, **meta["parameters"], **arrays, rng=rng, valid_rate=meta["valid_rate"],
        ready_rate=meta["ready_rate"])
    save_results(os.environ["VITFORGE_RESULTS"], outputs, cycles)
