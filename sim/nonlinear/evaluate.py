"""One nonlinear unit end to end: RTL vs golden (exact) and golden vs float (error)."""

from dataclasses import dataclass

import numpy as np

from vitforge.errors import ConfigError
from vitforge.hw.checks import MAX_LANES, check_positive_int
from vitforge.hw.numerics import MAX_CHANNELS, OPERAND_BITS, softmax_one
from vitforge.sw.golden.nonlinear.gelu import gelu as golden_gelu
from vitforge.sw.golden.nonlinear.layernorm import layernorm as golden_layernorm
from vitforge.sw.golden.nonlinear.softmax import softmax as golden_softmax
from vitforge.sw.params import reference
from vitforge.sw.params.gelu import gelu_table
from vitforge.sw.params.layernorm import layernorm_params
from vitforge.sw.params.softmax import exp_params
from vitforge.sw.params.reference import check_scale

from .cosim import simulate_unit

__all__ = ["OPS", "Evaluation", "evaluate"]

OPS = ("gelu", "softmax", "layernorm")
#: The most rows one evaluation simulates (each a full softmax or LayerNorm row; the golden
#: model and the testbench hold all of them in memory at once).
MAX_ROWS = 65536
#: The longest softmax row, and the most GELU passes over the 256 int8 values, one evaluation
#: streams (ViT rows are 50 to 577 tokens long).
MAX_LENGTH = 4096
#: LayerNorm output scale: +-4 standard deviations over int8.
LAYERNORM_SCALE_OUT = 4 / 127
LAYERNORM_EPS = 1e-6           # DeiT's


@dataclass
class Evaluation:
    op: str
    match: bool                # RTL == golden, every element
    elements: int
    cycles: int                # first input beat to last output beat
    lanes: int
    max_abs_err: float         # golden vs float, real units
    mean_abs_err: float
    max_err_lsb: float         # the same in output LSBs
    rtl: np.ndarray
    golden: np.ndarray

    @property
    def elements_per_cycle(self):
        return self.elements / self.cycles

    def summary(self):
        return {"op": self.op, "match": self.match, "elements": self.elements,
                "cycles": self.cycles, "lanes": self.lanes,
                "elements_per_cycle": self.elements_per_cycle,
                "elements_per_cycle_per_lane": self.elements_per_cycle / self.lanes,
                "max_abs_err": self.max_abs_err, "mean_abs_err": self.mean_abs_err,
                "max_err_lsb": self.max_err_lsb}


def evaluate(op, *, scale=0.05, length=None, rows=8, lanes=1, seed=0, log=None):
    """Run ``op`` on random int8 input of real scale ``scale`` in Verilator.

    GELU takes every int8 value (``length`` times 256 when given, else once);
    softmax ``rows`` rows of ``length`` (default 197) elements; LayerNorm
    ``rows`` rows of ``length`` (default 192) channels.
    """
    if op not in OPS:
        raise ConfigError(f"op must be one of {', '.join(OPS)}, not {op!r}")
    scale = check_scale("scale", scale)
    check_positive_int("lanes", lanes, MAX_LANES)
    check_positive_int("rows", rows, MAX_ROWS)
    rng = np.random.default_rng(seed)
    if op == "gelu":
        return _gelu(scale, length or 1, lanes, log)
    if op == "softmax":
        length = 197 if length is None else length
        check_positive_int("length", length, MAX_LENGTH)
        return _softmax(rng, scale, length, rows, lanes, log)
    length = 192 if length is None else length
    check_positive_int("length", length, MAX_CHANNELS)
    return _layernorm(rng, scale, length, rows, lanes, log)


def _finish(op, run, golden, real, exact, output_scale, lanes):
    errors = np.abs(real - exact)
    return Evaluation(op=op, match=bool(np.array_equal(run.outputs, golden)),
                      elements=golden.size, cycles=run.cycles, lanes=lanes,
                      max_abs_err=float(errors.max()), mean_abs_err=float(errors.mean()),
                      max_err_lsb=float(errors.max() / output_scale),
                      rtl=run.outputs, golden=golden)


def _gelu(scale, repeats, lanes, log):
    check_positive_int("length", repeats, MAX_LENGTH)
    table = gelu_table(scale, scale)
    values = np.tile(np.arange(-128, 128).astype(np.int8), repeats)
    run = simulate_unit("gelu", {"lanes": lanes}, {"table": table, "values": values}, log=log)
    golden = golden_gelu(values, table)
    exact = reference.gelu(values * scale)
    return _finish("gelu", run, golden, golden * scale, exact, scale, lanes)


def _softmax(rng, scale, length, rows, lanes, log):
    params = exp_params(scale)
    matrix = rng.integers(-128, 128, (rows, length)).astype(np.int8)
    run = simulate_unit(
        "softmax", {"lanes": lanes, "max_length": length, "out_bits": OPERAND_BITS},
        {"values": matrix.ravel(), "lengths": np.full(rows, length),
         "exp_params": np.array([params.ratio, params.alpha, params.beta, params.gamma])},
        log=log)
    golden = np.concatenate([golden_softmax(row, params) for row in matrix])
    exact = reference.softmax(matrix * scale).ravel()
    one = softmax_one(OPERAND_BITS)
    return _finish("softmax", run, golden, golden / one, exact, 1 / one, lanes)


def _layernorm(rng, scale, channels, rows, lanes, log):
    if channels % lanes:
        raise ConfigError(f"length must be a multiple of lanes={lanes}, not {channels}")
    gamma = rng.uniform(0.5, 1.5, channels)
    beta = rng.uniform(-0.5, 0.5, channels)
    params = layernorm_params(scale, gamma, beta, LAYERNORM_EPS, LAYERNORM_SCALE_OUT)
    matrix = rng.integers(-128, 128, (rows, channels)).astype(np.int8)
    run = simulate_unit(
        "layernorm", {"lanes": lanes, "channels": channels},
        {"values": matrix.ravel(), "gamma": params.gamma, "beta": params.beta,
         "scalars": np.array([params.eps, params.multiplier, params.shift])}, log=log)
    golden = np.concatenate([golden_layernorm(row, params) for row in matrix])
    exact = np.clip(reference.layernorm(matrix * scale, gamma, beta, LAYERNORM_EPS),
                    -128 * LAYERNORM_SCALE_OUT, 127 * LAYERNORM_SCALE_OUT).ravel()
    return _finish("layernorm", run, golden, golden * LAYERNORM_SCALE_OUT, exact,
                   LAYERNORM_SCALE_OUT, lanes)
