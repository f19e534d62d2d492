"""cocotb testbench: which signals of a design are X or Z after reset (run under Icarus).

Every top-level input the testbench finds undriven (all Z) is driven to 0, reset is held for
two cycles, then the design runs ``cycles`` idle cycles; every signal of every module (memories
aside) is read, and those with an X or Z bit go to ``$VITFORGE_RESULTS`` as JSON, the top
level's ports (``ports``) apart from the rest (``internal``), each as ``name=value``.
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.handle import HierarchyObject, LogicArrayObject, LogicObject
from cocotb.triggers import FallingEdge

CLOCK_PERIOD_NS = 10


def _signals(scope, prefix=""):
    """``(name, handle)`` of every logic signal below ``scope``."""
    for handle in scope:
        name = f"{prefix}{handle._name}"
        if isinstance(handle, (LogicObject, LogicArrayObject)):
            yield name, handle
        elif isinstance(handle, HierarchyObject) and handle is not scope:
            yield from _signals(handle, f"{name}.")


def _unresolved(value):
    return any(bit in "xXzZuUwW-" for bit in str(value))


@cocotb.test()
async def no_x_after_reset(dut):
    with open(os.environ["VITFORGE_JOB"]) as job:
        cycles = json.load(job)["cycles"]
    for handle in dut:
        if (isinstance(handle, (LogicObject, LogicArrayObject))
                and handle._name not in ("clk", "rst") and set(str(handle.value)) <= {"z", "Z"}):
            handle.value = 0                    # an undriven input port
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
    dut.rst.value = 1
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    for _ in range(cycles):
        await FallingEdge(dut.clk)
    unresolved = sorted(f"{name}={handle.value}" for name, handle in _signals(dut)
                        if _unresolved(handle.value))
    with open(os.environ["VITFORGE_RESULTS"], "w") as results:
        json.dump({"ports": [name for name in unresolved if "." not in name.split("=")[0]],
                   "internal": [name for name in unresolved if "." in name.split("=")[0]]},
                  results)
