"""A resource model of the accelerator shell: LUT, FF, DSP48E2 and BRAM36 from the config.

The Yosys per-module estimate (:func:`vitforge.sw.resources.estimate_by_module`)
of a large design takes minutes to tens of minutes; design-space exploration
needs thousands of points per minute. The model follows the estimate's own
structure, two parts fitted by least squares (non-negative coefficients) on the
per-module estimates of sample configs (:func:`fit`,
``bench/resource_samples.py``):

- **the PEs**: ``array**2`` processing elements, or ``array**2 / 2`` packed
  pairs with ``macs_per_dsp=2``, or ``array**2 / 2`` cascaded dot pairs (each
  with its ``k_per_cycle`` DSP48E2s) with ``k_per_cycle`` 2 or 4, each costing
  ``a + b * accumulator bits``
  (:func:`~vitforge.hw.gemm.config.accumulator_width` of ``k_max``), fitted on
  the PE part of each sample;
- **the rest** (row units, requantizers, element-wise, DMA, scratchpads and
  their port multiplexers, controller, AXI shell), linear in: a constant, the
  lanes (``array``), the lanes times the accumulator bits (the requantizers'
  inputs), the lanes times a second ACT read port, and the memories: each
  scratchpad as the block RAMs its entry width and depth need in the best
  single RAMB36E2/RAMB18E2 aspect ratio (:func:`block_rams`), once per read
  port, ACT apart from the others, and ACT and WGT as the ``k_per_cycle``
  interleaved memories they are (:data:`~vitforge.hw.accel.ports.INTERLEAVED`);
  and the lanes times ``k_per_cycle - 1`` (the slab reads' multiplexers); and
  for the cascade array, whose rows read their result registers through
  multiplexers, the result bits those choose from (``array**2`` times the
  accumulator bits). BRAM36 uses only the constant and the memories; DSPs no
  memories.

The fitted coefficients ship in ``resource_model.json`` beside this file;
``bench/cost_models.py`` reports the model's error on held-out configs.
"""

from dataclasses import dataclass
import json
from pathlib import Path

import numpy as np

from vitforge.errors import ConfigError
from vitforge.hw.accel.ports import INTERLEAVED, scratchpad_entries
from vitforge.hw.gemm.config import accumulator_width

__all__ = ["ResourceModel", "rest_features", "pe_count", "block_rams", "fit",
           "yosys_estimate", "RESOURCES", "REST_FEATURES", "DEFAULT_MODEL", "PE_KINDS"]

#: What the model predicts (keys of :class:`~vitforge.sw.resources.Resources`).
RESOURCES = ("lut", "ff", "dsp", "bram36")
#: The rest's terms.
REST_FEATURES = ("one", "lanes", "lane_accumulator_bits", "lane_second_port", "lane_slab",
                 "act_bram", "other_bram", "drain_bits")
#: Which terms each resource's rest may use.
_USES = {"lut": REST_FEATURES, "ff": REST_FEATURES[:5],
         "dsp": ("one", "lanes", "lane_second_port"),
         "bram36": ("one", "act_bram", "other_bram")}
#: ``(macs_per_dsp, k_per_cycle)`` -> the PE part's kind.
PE_KINDS = {(1, 1): "pe", (2, 1): "pe_pair", (2, 2): "dot_pair_k2", (2, 4): "dot_pair_k4"}
#: The kind -> its module's name in the Verilog (a cascade's DSP48E2 links are its children).
_PE_MODULES = {"pe": "pe", "pe_pair": "pe_pair", "dot_pair_k2": "dot_pair",
               "dot_pair_k4": "dot_pair"}
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


def pe_count(config):
    """``(kind, count)``: the PE part of an AcceleratorConfig (a kind of :data:`PE_KINDS`) and
    how many there are."""
    return (PE_KINDS[config.macs_per_dsp, config.k_per_cycle],
            config.array ** 2 // config.macs_per_dsp)


def rest_features(config):
    """The rest's terms for an :class:`~vitforge.hw.accel.config.AcceleratorConfig`."""
    from amaranth import Shape

    k = config.k_per_cycle

    def interleaved_rams(name, depth):
        width = Shape.cast(scratchpad_entries(config)[name][0]).width
        memories = k if name in INTERLEAVED else 1
        return memories * block_rams(width, depth // memories)

    memories = {name: interleaved_rams(name, depth)
                for name, (_, depth) in scratchpad_entries(config).items()}
    if config.act_bank_start is not None:       # two memories, one per bank
        memories["act"] = (interleaved_rams("act", config.act_bank_start)
                           + interleaved_rams("act", config.act_depth - config.act_bank_start))
    lanes = float(config.array)
    return {"one": 1.0, "lanes": lanes,
            "lane_accumulator_bits": lanes * accumulator_width(config.k_max),
            "lane_second_port": lanes * (config.act_read_ports - 1),
            "lane_slab": lanes * (k - 1),
            "act_bram": memories["act"] * config.act_read_ports,
            "other_bram": sum(memories.values()) - memories["act"],
            "drain_bits": (lanes ** 2 * accumulator_width(config.k_max) if k > 1 else 0.0)}


@dataclass(frozen=True)
class ResourceModel:
    """Fitted coefficients: ``pe[kind][resource] = (a, b)`` (one PE costs ``a + b *
    accumulator bits``) and ``rest[resource] = {term: coefficient}``."""

    pe: dict
    rest: dict
    fitted_on: tuple            # the sample configs' names

    def predict(self, config):
        """``{resource: value}`` for an AcceleratorConfig (LUT/FF/DSP rounded, BRAM36 to
        halves)."""
        kind, count = pe_count(config)
        bits = accumulator_width(config.k_max)
        terms = rest_features(config)
        values = {}
        for resource in RESOURCES:
            a, b = self.pe[kind][resource]
            rest = sum(coefficient * terms[name]
                       for name, coefficient in self.rest[resource].items())
            value = count * (a + b * bits) + rest
            values[resource] = round(value * 2) / 2 if resource == "bram36" else round(value)
        return values

    def to_dict(self):
        return {"pe": {kind: {resource: [round(c, 6) for c in pair]
                              for resource, pair in costs.items()}
                       for kind, costs in self.pe.items()},
                "rest": {resource: {name: round(c, 6) for name, c in terms.items()}
                         for resource, terms in self.rest.items()},
                "fitted_on": list(self.fitted_on)}

    def save(self, path):
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path=DEFAULT_MODEL):
        """Read a model :meth:`save` wrote.

        Raises
        ------
        vitforge.errors.ConfigError
            If the file is missing, not JSON or not a model of these terms.
        """
        try:
            values = json.loads(Path(path).read_text())
            pe = {kind: {resource: tuple(float(c) for c in values["pe"][kind][resource])
                         for resource in RESOURCES} for kind in PE_KINDS.values()}
            rest = {resource: {name: float(value) for name, value in
                               values["rest"][resource].items()} for resource in RESOURCES}
            if set().union(*rest.values()) - set(REST_FEATURES):
                raise KeyError("rest terms")
            return cls(pe=pe, rest=rest, fitted_on=tuple(values["fitted_on"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ConfigError(f"resource model {path} cannot be read: {error!r}") from None


def _nonnegative_fit(matrix, target):
    """Least squares on relative error (rows weighted by one over the target) with
    non-negative coefficients."""
    from scipy.optimize import nnls

    weight = 1.0 / np.maximum(np.asarray(target, dtype=float), 1.0)
    solution, _ = nnls(np.asarray(matrix, dtype=float) * weight[:, None],
                       np.asarray(target, dtype=float) * weight)
    return solution


def fit(samples):
    """A :class:`ResourceModel` from ``samples``: ``(name, AcceleratorConfig, estimate)``,
    the estimates as :func:`yosys_estimate` gives them (the total and the PE part).

    Raises
    ------
    vitforge.errors.ConfigError
        Without samples, or without a sample of each PE kind.
    """
    if not samples:
        raise ConfigError("samples must not be empty")
    pe = {}
    for (macs_per_dsp, k_per_cycle), kind in PE_KINDS.items():
        rows = [(accumulator_width(config.k_max), estimate["pe"]["unit"])
                for _, config, estimate in samples if pe_count(config)[0] == kind]
        if not rows:
            raise ConfigError(f"samples must include macs_per_dsp={macs_per_dsp} with "
                              f"k_per_cycle={k_per_cycle} ({kind})")
        # DSP48E2s and block RAMs per PE do not grow with the accumulator.
        pe[kind] = {resource: tuple(float(c) for c in _nonnegative_fit(
            [[1.0, bits if resource in ("lut", "ff") else 0.0] for bits, _ in rows],
            [unit[resource] for _, unit in rows]))
            for resource in RESOURCES}
    rest = {}
    for resource in RESOURCES:
        used = [name for name in REST_FEATURES if name in _USES[resource]]
        matrix, target = [], []
        for _, config, estimate in samples:
            terms = rest_features(config)
            kind, count = pe_count(config)
            matrix.append([terms[name] for name in used])
            target.append(estimate["total"][resource] - count * estimate["pe"]["unit"][resource])
        rest[resource] = dict(zip(used, map(float, _nonnegative_fit(matrix, target))))
    return ResourceModel(pe=pe, rest=rest, fitted_on=tuple(name for name, _, _ in samples))


def yosys_estimate(config):
    """The Yosys per-module estimate of the shell of ``config`` (a
    :class:`~vitforge.boards.presets.ShellConfig`), as ``vitforge generate`` makes it (parts
    from the synthesis cache where they were synthesized before): ``{"total": {resource:
    value}, "pe": {"count": n, "unit": {resource: value}}}``."""
    from vitforge.boards import vivado
    from vitforge.hw.verilog import to_verilog
    from vitforge.sw.resources import estimate_by_module

    core = to_verilog(config.shell(), vivado.CORE, synthesis=True)
    total, parts, _ = estimate_by_module(core, vivado.CORE, depth=True)   # generate's parts
    kind, count = pe_count(config.accelerator)
    module = _PE_MODULES[kind]

    def is_pe(part):
        return part.startswith(f"{module}_") and part[len(module) + 1:][:1].isdigit()

    def in_pe(name):            # a PE, or a DSP48E2 link of a cascade's dot pair
        *_, parent, last = ["", *name.split(".")]
        return is_pe(last) or (last.startswith("link_") and is_pe(parent))
    pe_parts = [(n, unit) for name, (n, unit) in parts.items() if in_pe(name)]
    # Edge PEs are separate modules of (nearly) the same cost: their mean is the unit.
    return {"total": {resource: getattr(total, resource) for resource in RESOURCES},
            "pe": {"count": count,
                   "unit": {resource: sum(n * getattr(unit, resource) for n, unit in pe_parts)
                            / count for resource in RESOURCES}}}
