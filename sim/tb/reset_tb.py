"""cocotb testbench: which signals of a design are X or Z after reset (run under Icarus).

The top level's input ports (``inputs`` in the job, clock and reset aside) are driven to 0,
reset is held for two cycles, then the design runs ``cycles`` idle cycles. The memories' read
registers (``read_registers`` in the job: their names by module) that hold X are noted, then
set to 0, a block RAM output register's value on the device; a nanosecond later every signal of
every module (memories aside) is read. ``$VITFORGE_RESULTS`` gets, as JSON, those with an X or
Z bit (``unresolved``) and the read registers noted (``read_registers``), each as
``name=value``.

Under Icarus cocotb makes a vector a :class:`~cocotb.handle.PackedObject`, a single bit a
:class:`~cocotb.handle.LogicObject`; both are read. The inputs are named by the job rather than
guessed from their values: every net an undriven input feeds is all Z as well, and a value put
on such a net would hide the undriven input instead of driving it.
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.handle import HierarchyObject, LogicArrayObject, LogicObject, PackedObject
from cocotb.triggers import FallingEdge, Timer

from vitforge.sim.pins import pulse_reset

CLOCK_PERIOD_NS = 10
_LOGIC = (LogicObject, LogicArrayObject, PackedObject)


def _scopes(scope, prefix=""):
    """``(prefix, scope)`` of ``scope`` and of every module below it."""
    yield prefix, scope
    for handle in scope:
        if isinstance(handle, HierarchyObject) and handle is not scope:
            yield from _scopes(handle, f"{prefix}{handle._name}.")


def _unresolved(value):
    return any(bit in "xXzZuUwW-" for bit in str(value))


@cocotb.test()
async def no_x_after_reset(dut):
    with open(os.environ["VITFORGE_JOB"]) as job:
        job = json.load(job)
    for name in job["inputs"]:
        dut[name].value = 0
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
    await pulse_reset(dut)
    for _ in range(job["cycles"]):
        await FallingEdge(dut.clk)
    scopes = list(_scopes(dut))
    read_registers = []
    for prefix, scope in scopes:
        for name in job["read_registers"].get(scope._def_name, ()):
            handle = scope[name]
            if _unresolved(handle.value):
                read_registers.append(f"{prefix}{name}={handle.value}")
                handle.value = 0
    await Timer(1, unit="ns")
    unresolved = sorted(f"{prefix}{handle._name}={handle.value}" for prefix, scope in scopes
                        for handle in scope
                        if isinstance(handle, _LOGIC) and _unresolved(handle.value))
    with open(os.environ["VITFORGE_RESULTS"], "w") as results:
        json.dump({"unresolved": unresolved, "read_registers": sorted(read_registers)}, results)
