"""Whether any signal of a design is X or Z after reset, on the 4-state Icarus Verilog."""

import json
import re

from . import runner
from .jobs import run_job

__all__ = ["unresolved_after_reset"]

TEST_MODULE = "vitforge.sim.tb.reset_tb"

_MODULE = re.compile(r"^module\s+\\?([^\s(#]+)(.*?)^endmodule", re.MULTILINE | re.DOTALL)
_PORT = re.compile(r"^\s*(input|output|inout)\s+(?:\[[^\]]*\]\s*)?\\?(\S+?)\s*;", re.MULTILINE)
_MEMORY = re.compile(r"^\s*reg\s+(?:\[[^\]]*\]\s*)?\\?(\S+?)\s*\[[^\]]*\]\s*;", re.MULTILINE)
_READ = re.compile(r"^\s*\\?(\S+?)\s*<=\s*\\?(\S+?)\s*\[", re.MULTILINE)


def unresolved_after_reset(verilog, toplevel, *, cycles=10):
    """The signals of ``verilog`` (top module ``toplevel``) that hold an X or Z bit ``cycles``
    cycles after a two-cycle reset with every input at 0 (memories excepted), under Icarus
    Verilog. Verilator's 2-state model would read them as 0.

    A memory's read register (``data <= memory[address]``) holds X until its first read: Yosys
    writes it without an initial value (Amaranth gives a read port none), where a block RAM's
    output register is 0 on the device. Those holding X are listed apart and given that 0
    before the other signals are read: these then show the X that another register took from
    a read register, and X or Z of any other source, not a read register's own X and the nets
    it feeds.

    Returns
    -------
    dict
        ``"ports"`` (the top level's), ``"internal"`` (every other signal) and
        ``"read_registers"``, each a list of ``"name=value"``.

    Raises
    ------
    vitforge.errors.ToolchainError
        Without Icarus Verilog (the message says how to install it).
    """
    built = runner.build(verilog, toplevel, simulator="icarus")
    modules = dict(_MODULE.findall(verilog))
    ports = {name: direction for direction, name in _PORT.findall(modules[toplevel])}
    job = {"cycles": cycles,
           "inputs": [name for name, direction in ports.items()
                      if direction == "input" and name not in ("clk", "rst")],
           "read_registers": {module: _read_registers(body) for module, body in modules.items()}}

    def write_job(path):
        path.write_text(json.dumps(job))

    def read_results(path):
        return json.loads(path.read_text())

    results, _ = run_job(built, TEST_MODULE, write_job, read_results)
    unresolved = results["unresolved"]
    return {"ports": [signal for signal in unresolved if signal.split("=")[0] in ports],
            "internal": [signal for signal in unresolved if signal.split("=")[0] not in ports],
            "read_registers": results["read_registers"]}


def _read_registers(body):
    """The registers a memory of module text ``body`` is read into (``data <= memory[...]``)."""
    memories = set(_MEMORY.findall(body))
    return sorted({data for data, memory in _READ.findall(body) if memory in memories})
