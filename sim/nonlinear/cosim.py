"""Co-simulation of the nonlinear units in Verilator, next to their golden twins."""

from dataclasses import dataclass
import json

import numpy as np

from .. import runner
from ..jobs import run_job
from ..verilog_cache import cached_verilog

__all__ = ["StreamRun", "simulate_unit", "load_job", "save_results"]

TEST_MODULE = "vitforge.sim.tb.nonlinear_tb"


@dataclass
class StreamRun:
    outputs: np.ndarray      # what the unit produced, as the golden twin shapes it
    cycles: int              # first accepted input beat to last output beat
    sim_seconds: float
    build_seconds: float
    verilog_seconds: float


def _component(op, parameters):
    from vitforge.hw.nonlinear.gelu import GeluUnit
    from vitforge.hw.nonlinear.layernorm import LayerNormUnit
    from vitforge.hw.nonlinear.softmax import SoftmaxUnit

    factories = {"gelu": GeluUnit, "softmax": SoftmaxUnit, "layernorm": LayerNormUnit}
    return factories[op](**parameters)


def simulate_unit(op, parameters, arrays, *, seed=None, valid_rate=1.0, ready_rate=1.0,
                  log=None):
    """Build unit ``op`` with ``parameters`` and run the shared session on ``arrays``.

    ``seed`` turns on random stalls (input valid with probability
    ``valid_rate``, output ready with ``ready_rate``).
    """
    if op == "softmax":
        from .softmax_session import check_row_lengths
        check_row_lengths(arrays["lengths"], parameters["max_length"])
    toplevel = f"{op}_unit"
    verilog = cached_verilog(toplevel, json.dumps(parameters, sort_keys=True),
                             lambda: _component(op, parameters), log=log,
                             what=f"the {op} unit {parameters}")
    built = runner.build(verilog.text, toplevel, log=log)
    meta = {"op": op, "parameters": parameters, "seed": seed, "valid_rate": valid_rate,
            "ready_rate": ready_rate}

    def write_job(path):
        np.savez(path, meta=json.dumps(meta), **arrays)

    def read_results(path):
        with np.load(path) as archive:
            return archive["outputs"], int(archive["cycles"])

    if log:
        log(f"simulating the {op} unit")
    (outputs, cycles), seconds = run_job(built, TEST_MODULE, write_job, read_results)
    return StreamRun(outputs=outputs, cycles=cycles, sim_seconds=seconds,
                     build_seconds=built.seconds, verilog_seconds=verilog.seconds)


def load_job(path):
    """``(meta, arrays)`` of a job written by :func:`simulate_unit`."""
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files if name != "meta"}
        return json.loads(str(archive["meta"])), arrays


def save_results(path, outputs, cycles):
    np.savez(path, outputs=np.asarray(outputs), cycles=cycles)
