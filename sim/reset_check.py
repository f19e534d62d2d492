"""Whether any signal of a design is X or Z after reset, on the 4-state Icarus Verilog."""

import json

from . import runner
from .jobs import run_job

__all__ = ["unresolved_after_reset"]

TEST_MODULE = "vitforge.sim.tb.reset_tb"


def unresolved_after_reset(verilog, toplevel, *, cycles=10):
    """The signals of ``verilog`` (top module ``toplevel``) that hold an X or Z bit ``cycles``
    cycles after a two-cycle reset with every input at 0 (memories excepted), under Icarus
    Verilog: ``{"ports": [...], "internal": [...]}``, each ``"name=value"``. Verilator's
    2-state model would read them as 0.

    Raises
    ------
    vitforge.errors.ToolchainError
        Without Icarus Verilog (the message says how to install it).
    """
    built = runner.build(verilog, toplevel, simulator="icarus")

    def write_job(path):
        path.write_text(json.dumps({"cycles": cycles}))

    def read_results(path):
        return json.loads(path.read_text())

    unresolved, _ = run_job(built, TEST_MODULE, write_job, read_results)
    return unresolved
