"""One design point: its config, resources, whether it fits, and cycles, FPS and accuracy.

:func:`evaluate_point` runs in a worker (a local process or a Ray task): it
takes a :class:`~.workload.Study` (what is explored) and a point of the space
and returns one row of the results; :func:`simulate_point` co-verifies a row's
program cycle-accurately.
"""

import json
import time

from vitforge.errors import ConfigError

from . import workload

__all__ = ["evaluate_point", "simulate_point", "row_key", "blank_row", "ROW_FIELDS",
           "STATUSES"]

#: ``ok``: evaluated; ``invalid``: a value breaks a config rule; ``no-fit``: the model does
#: not fit the accelerator's scratchpads or limits; ``failed``: the evaluation crashed or its
#: worker died (after retries).
STATUSES = ("ok", "invalid", "no-fit", "failed")
#: The columns of ``points.csv``, in order; ``point`` is the point's own fields as JSON.
ROW_FIELDS = ("index", "point", "status", "error", "config_hash", "array", "act_depth",
              "wgt_depth", "prm_depth", "lnp_depth", "k_max", "act_read_ports", "macs_per_dsp",
              "act_banks", "clock_mhz", "keep", "sparsity", "lut", "ff", "dsp", "bram36",
              "lut_util", "ff_util", "dsp_util", "bram36_util", "fits", "headroom", "cycles",
              "fps", "latency_ms", "pe_utilization", "accuracy", "simulated_cycles",
              "bit_exact", "seconds")


class _NoFit(Exception):
    """The model cannot be sized to the point's array."""


def blank_row(index, point):
    """A row of ``point`` with every column empty."""
    return {**dict.fromkeys(ROW_FIELDS), "index": index, "point": row_key(point)}


def row_key(point):
    """The text that identifies ``point`` in the results (its fields, sorted)."""
    return json.dumps(point, sort_keys=True, separators=(",", ":"))


def point_shell(study, point):
    """The ShellConfig of ``point``, its ``"model"`` sizes resolved for the model as the
    point's ``keep`` and ``sparsity`` change it.

    Raises
    ------
    ValueError, TypeError
        If a value breaks a config rule (:class:`_NoFit` if the model cannot be sized).
    """
    from .space import point_config

    sized = workload.model_sized(study, point)

    def sizing(array):
        try:
            return sized(array)
        except ConfigError as error:
            raise _NoFit(str(error)) from None

    return point_config(study.base, point, sizing)


def evaluate_point(study, index, point, resource_model=None):
    """Row ``index`` of the results: ``point`` (``{field: value}``) of ``study``, with cycles
    from the cycle model and resources from the resource model (the shipped one by default).

    A point with ``keep`` ratios runs the study's token selectors in ``topk`` mode at those
    ratios: its token counts are then fixed at compile time, and so are its cycles. A point
    with a ``sparsity`` runs the model HP-pruned to it by magnitude (no fine-tuning) in column
    groups of its array, so that its sparse layers run as ``GEMM_SPARSE``.
    """
    from vitforge.boards.presets import config_hash
    from vitforge.sw.accel.cycles import predict, program_cycles
    from vitforge.sw.generate import DEVICE, HEADROOM

    from .resource_model import ResourceModel

    started = time.monotonic()
    row = blank_row(index, point)

    def finished(status, **columns):
        return {**row, **columns, "status": status,
                "seconds": round(time.monotonic() - started, 3)}

    keep = point.get("keep", "none")
    row["keep"] = keep if keep == "none" else json.dumps(keep)
    row["sparsity"] = point.get("sparsity", 0)
    try:
        # The ratios must suit the selectors (checked on the dense model: no array yet).
        workload.selectors_for(study, workload.variant_of({"keep": keep}, None))
        config = point_shell(study, point)
        variant = workload.variant_of(point, config.accelerator.array)
    except _NoFit as error:
        return finished("no-fit", error=str(error))
    except (ValueError, TypeError) as error:
        return finished("invalid", error=str(error))
    accelerator = config.accelerator
    row.update({name: getattr(accelerator, name) for name in
                ("array", "act_depth", "wgt_depth", "prm_depth", "lnp_depth", "k_max",
                 "act_read_ports", "macs_per_dsp", "act_banks")},
               clock_mhz=config.clock_mhz, config_hash=config_hash(config),
               accuracy=workload.accuracy(study, variant))
    resources = (resource_model or ResourceModel.load()).predict(accelerator)
    utilization = {name: value / DEVICE[name] for name, value in resources.items()}
    row.update(resources, **{f"{name}_util": round(value, 4)
                             for name, value in utilization.items()},
               fits=all(value <= 1 for value in utilization.values()),
               headroom=utilization["lut"] <= HEADROOM and utilization["bram36"] <= HEADROOM)
    try:
        compiled = workload.program(study, variant, accelerator)
    except ConfigError as error:
        return finished("no-fit", error=str(error))
    # top-k keeps counts the compiler knows: the program as written is what runs.
    cycles = (predict(compiled) if variant.keep is None else
              program_cycles(accelerator, compiled.instructions)).cycles
    return finished("ok", error="", cycles=cycles,
                    fps=round(config.clock_mhz * 1e6 / cycles, 3),
                    latency_ms=round(cycles / (config.clock_mhz * 1e3), 4),
                    pe_utilization=round(compiled.macs / (cycles * accelerator.array ** 2), 4))


def simulate_point(study, row):
    """``row`` (an ``ok`` row) with its program co-verified cycle-accurately on the first test
    image: ``simulated_cycles`` and ``bit_exact`` (RTL == golden over the whole memory)."""
    from vitforge.sim.accel.cosim import coverify
    from vitforge.sw.model.quantize import quantized_patches

    started = time.monotonic()
    point = json.loads(row["point"])
    accelerator = point_shell(study, point).accelerator
    variant = workload.variant_of(point, accelerator.array)
    model = workload.variant_models(study, variant)[1]
    patches = quantized_patches(model, workload.loaded_model(study)[3][:1])[0]
    report = coverify(workload.program(study, variant, accelerator).with_input(patches))
    return {**row, "simulated_cycles": report.cycles,
            "bit_exact": report.match and not report.error,
            "seconds": round(row["seconds"] + time.monotonic() - started, 3)}
