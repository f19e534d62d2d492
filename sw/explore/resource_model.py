"""A resource model of the accelerator shell: LUT, FF, DSP48E2 and BRAM36 from the config.

The Yosys per-module estimate (:func:`vitforge.sw.resources.estimate_by_module`)
of a large design takes minutes to tens of minutes; design-space exploration
needs thousands of points per minute. The model is linear in a few terms that
follow the design's structure, fitted by least squares on per-module
estimates of sample configs (:func:`fit`, ``bench/cost_models.py``):

- **PEs**: ``array**2`` multipliers, in ``array**2 / 2`` packed pairs with
  ``macs_per_dsp=2``, each with an accumulator of
  :func:`~vitforge.hw.gemm.config.accumulator_width` bits;
- **lanes**: what exists once per lane (row units, requantizers, element-wise,
  DMA gathering, scratchpad port multiplexers), ``array``;
- **memories**: each scratchpad as the block RAMs its entry width and depth
  need in the best single RAMB36E2/RAMB18E2 aspect ratio
  (:func:`block_rams`), once per read port;
- a constant: controller, decoder, AXI shell.

BRAM36 follows the memories alone; DSPs the PEs and the lanes. The fitted
coefficients ship in ``resource_model.json`` beside this file; the benchmark
reports the model's error on held-out configs.
"""

from dataclasses import dataclass
import json
from pathlib import Path

import numpy as np

from vitforge.errors import ConfigError
from vitforge.hw.accel.ports import scratchpad_entries
from vitforge.hw.gemm.config import accumulator_width

__all__ = ["ResourceModel", "features", "block_rams", "fit", "yosys_estimate", "RESOURCES",
           "FEATURES", "DEFAULT_MODEL"]

#: What the model predicts (keys of :class:`~vitforge.sw.resources.Resources`).
RESOURCES = ("lut", "ff", "dsp", "bram36")
#: The terms, in the order of each resource's coefficients.
FEATURES = ("one", "lanes", "pe_units", "pe_accumulator_bits", "pair_units",
            "pair_accumulator_bits", "act_bram", "other_bram")
#: Which terms each resource may use (the others' coefficients are 0).
_USES = {"lut": FEATURES[:6] + ("act_bram", "other_bram"),
         "ff": FEATURES[:6],
         "dsp": ("one", "lanes", "pe_units", "pair_units"),
         "bram36": ("one", "act_bram", "other_bram")}
#: RAMB36E2 (depth, width) aspect ratios, and RAMB18E2's (each half a RAMB36E2).
_RAMB36 = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36), (512, 72))
_RAMB18 = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
#: Memories this small (bits) stay in LUTs.
_LUTRAM_BITS = 4096
DEFAULT_MODEL = Path(__file__).with_name("resource_model.json")


def block_rams(width, depth):
    """RAMB36E2 equivalents of a ``width x depth`` memory with one read port: the cheapest
    tiling in one aspect ratio, a RAMB18E2 counting half; 0 for a memory small enough for
    LUTs."""
    if width * depth <= _LUTRAM_BITS:
        return 0.0
    options = [-(-depth // d) * -(-width // w) for d, w in _RAMB36]
    options += [0.5 * -(-depth // d) * -(-width // w) for d, w in _RAMB18]
    return float(min(options))


def features(config):
    """The model's terms for an :class:`~vitforge.hw.accel.config.AcceleratorConfig`."""
    pes = config.array ** 2
    acc = accumulator_width(config.k_max)
    packed = config.macs_per_dsp == 2
    memories = {name: block_rams(_bits(shape), depth)
                for name, (shape, depth) in scratchpad_entries(config).items()}
    return {"one": 1.0, "lanes": float(config.array),
            "pe_units": 0.0 if packed else float(pes),
            "pe_accumulator_bits": 0.0 if packed else float(pes * acc),
            "pair_units": float(pes // 2) if packed else 0.0,
            "pair_accumulator_bits": float(pes // 2 * acc) if packed else 0.0,
            "act_bram": memories["act"] * config.act_read_ports,
            "other_bram": sum(memories.values()) - memories["act"]}


def _bits(shape):
    from amaranth import Shape

    return Shape.cast(shape).width


@dataclass(frozen=True)
class ResourceModel:
    """Coefficients per resource over :data:`FEATURES`, and where they came from."""

    coefficients: dict          # resource -> {feature: coefficient}
    fitted_on: tuple            # the sample configs' names

    def predict(self, config):
        """``{resource: value}`` for an AcceleratorConfig (LUT/FF/DSP rounded, BRAM36 to
        halves)."""
        terms = features(config)
        values = {resource: sum(coefficient * terms[name]
                                for name, coefficient in self.coefficients[resource].items())
                  for resource in RESOURCES}
        return {resource: (round(value * 2) / 2 if resource == "bram36" else round(value))
                for resource, value in values.items()}

    def to_dict(self):
        return {"features": list(FEATURES), "coefficients": self.coefficients,
                "fitted_on": list(self.fitted_on)}

    def save(self, path):
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path=DEFAULT_MODEL):
        """Read a model :meth:`save` wrote.

        Raises
        ------
        vitforge.errors.ConfigError
            If the file is missing, not JSON or not a model of these features.
        """
        try:
            values = json.loads(Path(path).read_text())
            coefficients = {resource: {name: float(value) for name, value in
                                       values["coefficients"][resource].items()}
                            for resource in RESOURCES}
            if set().union(*coefficients.values()) - set(FEATURES):
                raise KeyError("features")
            return cls(coefficients=coefficients, fitted_on=tuple(values["fitted_on"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ConfigError(f"resource model {path} cannot be read: {error!r}") from None


def fit(samples):
    """Least-squares coefficients from ``samples``: ``(name, AcceleratorConfig, {resource:
    value})`` triples, the values from :func:`yosys_estimate`.

    Each resource uses only its own terms (``_USES``), fitted on relative error (each
    sample weighted by one over its value) so small configs count as much as large ones.
    """
    if not samples:
        raise ConfigError("samples must not be empty")
    rows = [features(config) for _, config, _ in samples]
    coefficients = {}
    for resource in RESOURCES:
        used = [name for name in FEATURES if name in _USES[resource]]
        matrix = np.array([[row[name] for name in used] for row in rows])
        target = np.array([values[resource] for _, _, values in samples], dtype=float)
        weight = 1.0 / np.maximum(target, 1.0)
        solution, *_ = np.linalg.lstsq(matrix * weight[:, None], target * weight, rcond=None)
        coefficients[resource] = {name: float(value) for name, value in zip(used, solution)}
    return ResourceModel(coefficients=coefficients,
                         fitted_on=tuple(name for name, _, _ in samples))


def yosys_estimate(config):
    """The Yosys per-module estimate of the shell of ``config`` (a
    :class:`~vitforge.boards.presets.ShellConfig`): what ``vitforge generate`` reports, its
    parts taken from the synthesis cache where they were synthesized before."""
    from vitforge.boards import vivado
    from vitforge.hw.verilog import to_verilog
    from vitforge.sw.resources import estimate_by_module

    core = to_verilog(config.shell(), vivado.CORE, zero_init=False)
    total, _ = estimate_by_module(core, vivado.CORE)
    return {resource: getattr(total, resource) for resource in RESOURCES}
