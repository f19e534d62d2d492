"""The ZCU102 output (issues 6 and 13): generation, resources, clock evidence, AXI, FPS.

Side by side in one run:

1. ``vitforge generate`` of the ``small`` and ``zcu102`` presets without the
   estimate: seconds (goal <= 60 s for the full top) and byte-identical files
   when generated twice.
2. Each change of issue 13 as the accelerator it gives (:data:`CHANGES`, from
   the old 32x32 preset to the new ``zcu102``, the 40x40 cascade array):
   the per-module Yosys estimate
   with the clock evidence (LUT, FF, DSP, BRAM36, the share of DSPs doing
   MACs, the slowest path) and, for the small preset, per-module against flat
   synthesis (goal: within 5 % on LUT, FF, DSP, BRAM).
3. Each change's cycles for DeiT-T and DeiT-S from the cycle model (exact:
   item 5 checks it against the simulated counters), per class and beside a
   GEMM, with FPS at 250 MHz and at the clock the evidence supports; and for the
   ``zcu102`` preset what bounds its PE utilization (:func:`bounds`).
4. AXI overhead: the embedded digits model on the ``small`` preset, cycles
   with the ideal one-cycle memory against the AXI shell with cocotbext-axi's
   ``AxiRam`` (and with random back-pressure on every channel).
5. DeiT-T and DeiT-S (random weights, one 224x224 image each) compiled for
   each change's accelerator that times differently (:data:`TIMINGS`; with
   ``--coverify-final-only`` the ``zcu102`` preset alone) and co-verified bit for bit on
   it (ideal one-cycle memory): cycles per class and beside a GEMM against the
   cycle model, MACs/cycle, PE utilization and FPS at the preset's clock
   (goals: DeiT-S >= 110 FPS, DeiT-T >= 350, utilization >= 85 %).
   ``--skip-deit`` leaves this out (about an hour on two cores, the Verilator
   builds included).

Writes ``bench/results/zcu102.json``, ``zcu102_resources.png`` (the preset against the
device) and ``zcu102_changes.png`` (each change's cycles by class); ``--replot`` draws the
plots again from that JSON without measuring.

``--cycles-only`` runs item 3 alone (minutes) into ``zcu102_cycles.json`` and draws it as
``zcu102_cycles.png``. ``--bounds`` (seconds) writes ``zcu102_bounds.json`` and
``zcu102_bounds.png``: what bounds the ``zcu102`` preset's PE utilization, per kind of phase
the DMA's work against the engine's, and the ceilings that follow (:func:`bounds`).
``--pruned`` (about 15 minutes) writes ``zcu102_pruned.json`` and ``zcu102_pruned.png``: DeiT-T
and DeiT-S dense, token-pruned (top-k), HP-sparse and both on the preset (:func:`pruned`).

    python bench/zcu102.py [--skip-deit] [--skip-flat] [--coverify-final-only] [--replot]
                           [--cycles-only] [--bounds] [--pruned]
"""

import argparse
from dataclasses import replace
from functools import cache
import json
from pathlib import Path
import tempfile
import time

from vitforge.boards.presets import PRESETS
from vitforge.boards.vivado import CORE
from vitforge.hw.verilog import to_verilog
from vitforge.sw import resources
from vitforge.sw.generate import DEVICE, HEADROOM, generate

GOAL_GENERATE_SECONDS = 60
GOAL_ESTIMATE_SECONDS = 600
GOAL_ESTIMATE_AGREEMENT = 0.05
GOAL_MAC_DSP_FRACTION = 0.80
GOAL_FPS = {"deit-tiny": 350, "deit-small": 110}
GOAL_UTILIZATION = 0.85

_BEFORE = PRESETS["zcu102-32x32"]
_LIVENESS = replace(_BEFORE, accelerator=replace(_BEFORE.accelerator, act_depth=24576))
_K1 = PRESETS["zcu102-k1"]
_ONE_BANK = replace(_K1, accelerator=replace(_K1.accelerator, act_banks=1, act_depth=17408))
#: The zcu102 preset: the 40x40 array taking two steps of K per cycle on DSP48E2 cascades,
#: two ACT read ports and an ACT for pruned DeiT-S.
_FINAL = PRESETS["zcu102"]
#: The cascade array as it became the preset: one ACT read port, 20,480 ACT words.
_CASCADE = replace(_FINAL, accelerator=replace(_FINAL.accelerator, act_depth=20480,
                                               act_read_ports=1))
#: The name of the ``zcu102`` preset's change.
FINAL = "40x40 cascades, two ACT read ports (zcu102)"
#: Issue 13's changes in order, each as the accelerator it gives. The shared row
#: arithmetic, the one-DSP requantizer and FC1's GELU in its GEMM's write-back are in every
#: row: neither the RTL nor the compiler has a switch for them.
CHANGES = {
    "32x32, ACT for every region (zcu102-32x32)": _BEFORE,
    "32x32, ACT by liveness": _LIVENESS,
    "32x32, ACT by liveness, two MACs per DSP": replace(
        _LIVENESS, accelerator=replace(_LIVENESS.accelerator, macs_per_dsp=2)),
    "40x40, ACT by liveness, one ACT bank": _ONE_BANK,
    "40x40, two ACT banks, softmax beside GEMMs (zcu102-k1)": _K1,
    "40x40, two steps of K per cycle on DSP48E2 cascades": _CASCADE,
    FINAL: _FINAL,
}
#: The changes whose cycles differ: the ACT size and the packing change no cycle.
TIMINGS = {"32x32": _BEFORE, "40x40, one ACT bank": _ONE_BANK, "40x40 (zcu102-k1)": _K1,
           "40x40, k_per_cycle 2, one ACT read port": _CASCADE,
           "40x40, k_per_cycle 2 (zcu102)": _FINAL}
#: The clock the slowest path supports (docs/performance.md, Clock evidence), for FPS.
EVIDENCE_MHZ = 203


def _files(folder):
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(Path(folder).rglob("*")) if path.is_file()}


def generation(scratch):
    rows = {}
    for name in ("small", "zcu102"):
        seconds, contents = [], []
        for attempt in range(2):
            folder = Path(scratch) / f"{name}-{attempt}"
            started = time.monotonic()
            generate("zcu102", PRESETS[name], folder, resources=False)
            seconds.append(time.monotonic() - started)
            contents.append(_files(folder))
        rows[name] = {"seconds": round(max(seconds), 2),
                      "byte_identical": contents[0] == contents[1],
                      "verilog_bytes": len(contents[0][f"rtl/{CORE}.v"])}
        print(f"generate {name:7s} {rows[name]['seconds']:6.1f} s, byte-identical "
              f"{rows[name]['byte_identical']}", flush=True)
    return rows


def estimates(skip_flat):
    from vitforge.sw.generate import resource_report

    result = {"changes": {}}
    for name, shell in CHANGES.items():
        started = time.monotonic()
        core = to_verilog(shell.shell(), CORE, synthesis=True)
        total, parts, depths = resources.estimate_by_module(core, CORE, depth=True)
        seconds = time.monotonic() - started
        report = resource_report(total, parts, "per-module", resources.yosys_version(), depths,
                                 shell.clock_mhz)
        result["changes"][name] = {**report, "seconds": round(seconds, 1)}
        clock = report["clock"]
        print(f"{name}: {total} in {seconds:.0f} s", flush=True)
        print(f"  utilization {report['utilization']}, fits {report['fits']}, MAC DSP share "
              f"{report['mac_dsp_fraction']:.1%}; slowest path {clock['logic_levels']} LUT "
              f"levels + {clock['carry_bits']} carry bits ({clock['worst_module']}), about "
              f"{clock['max_clock_mhz_estimate']} MHz", flush=True)
    result["zcu102"] = result["changes"][FINAL]
    if not skip_flat:
        core = to_verilog(PRESETS["small"].shell(), CORE, synthesis=True)
        started = time.monotonic()
        per_module = resources.estimate(core, CORE, method="per-module")
        per_module_seconds = time.monotonic() - started
        started = time.monotonic()
        flat = resources.estimate(core, CORE, method="flat")
        flat_seconds = time.monotonic() - started
        keys = ("lut", "ff", "dsp", "bram36")
        difference = {key: (getattr(per_module, key) - getattr(flat, key))
                      / max(getattr(flat, key), 1) for key in keys}
        result["small"] = {"per_module": per_module.as_dict(), "flat": flat.as_dict(),
                           "relative_difference": {k: round(v, 4) for k, v in difference.items()},
                           "per_module_seconds": round(per_module_seconds, 1),
                           "flat_seconds": round(flat_seconds, 1)}
        print(f"small: per-module {per_module} in {per_module_seconds:.0f} s; flat {flat} in "
              f"{flat_seconds:.0f} s; differences {result['small']['relative_difference']}",
              flush=True)
    return result


def axi_overhead():
    from vitforge.sim.accel.cosim import coverify
    from vitforge.sim.accel.shell_session import run_on_shell
    from vitforge.sim.model_run import load_model
    from vitforge.sw.accel.compiler import compile_model
    from vitforge.sw.golden.accel.interpreter import Machine, run_program
    from vitforge.sw.model.quantize import quantize_tensor, quantize_vit
    from vitforge.sw.model.vit import patchify

    vit, calibration, test_images, _ = load_model("tiny")
    model = quantize_vit(vit, calibration)
    config = PRESETS["small"].accelerator
    patches = quantize_tensor(patchify(test_images[:1], vit.shape)[0], model.input_scale)
    program = compile_model(config, model, patches)
    ideal = coverify(program)
    machine = Machine(config, program.image)
    run_program(machine, program.program_addr)
    if not ideal.match:
        raise AssertionError(f"the simulated system disagrees with the golden model: "
                             f"{ideal.mismatch}")
    rows = {"ideal_memory": ideal.cycles}
    for back_pressure in (False, True):
        run = run_on_shell(PRESETS["small"], [(program.image, program.program_addr)],
                           back_pressure=back_pressure, seed=0)
        result, = run.runs
        if result["image"] != bytes(machine.dram):
            raise AssertionError(f"the AXI shell disagrees with the golden model "
                                 f"(back_pressure={back_pressure})")
        rows["axi_back_pressure" if back_pressure else "axi"] = result["cycles"]
    print(f"digits model on small: ideal memory {rows['ideal_memory']} cycles, AXI "
          f"{rows['axi']} ({rows['axi'] / rows['ideal_memory'] - 1:+.1%}), AXI with "
          f"back-pressure {rows['axi_back_pressure']} "
          f"({rows['axi_back_pressure'] / rows['ideal_memory'] - 1:+.1%})", flush=True)
    return rows


def _quantized(vit, calibration, images):
    """``vit`` quantized on ``calibration``, and the first of ``images`` as its patches."""
    from vitforge.sw.model.quantize import quantize_tensor, quantize_vit
    from vitforge.sw.model.vit import patchify

    model = quantize_vit(vit, calibration)
    return model, quantize_tensor(patchify(images[:1], vit.shape)[0], model.input_scale)


@cache
def _deit(name):
    """DeiT ``name`` (random weights) quantized, and one image's patches: the same for every
    accelerator, so made once."""
    from vitforge.sim.model_run import load_model

    vit, calibration, test_images, _ = load_model(name)
    return _quantized(vit, calibration, test_images)


def _deit_programs(config):
    """DeiT-T and DeiT-S (random weights, one image) compiled for ``config``, by name."""
    from vitforge.sw.accel.compiler import compile_model

    for name in ("deit-tiny", "deit-small"):
        yield name, compile_model(config, *_deit(name))


def modelled_cycles():
    """Every change's DeiT-T and DeiT-S cycles from the cycle model, side by side."""
    from vitforge.sw.accel.cycles import predict

    rows = {}
    for change, shell in CHANGES.items():
        config = shell.accelerator
        rows[change] = {}
        for name, program in _deit_programs(config):
            predicted = predict(program)
            cycles = predicted.cycles
            rows[change][name] = {
                "cycles": cycles, "class_cycles": predicted.class_cycles,
                "side_cycles": predicted.side_cycles, "heads_overlap": program.overlap,
                "utilization": round(program.macs / config.gemm.macs_per_cycle / cycles, 4),
                "fps_250mhz": round(250e6 / cycles, 1),
                f"fps_{EVIDENCE_MHZ}mhz": round(EVIDENCE_MHZ * 1e6 / cycles, 1)}
            print(f"{change}: {name} {cycles} cycles (model), "
                  f"{rows[change][name]['utilization']:.1%} of the PEs, "
                  f"{rows[change][name]['fps_250mhz']} FPS at 250 MHz", flush=True)
    return rows


#: The utilization ceilings :func:`bounds` reports: each phase as long as the larger of its
#: DMA's and its engine's work, the engine's counted as named, the weight loads at 1x or 2x.
CEILINGS = {
    "as scheduled (LayerNorm and moves on the engine's path)": (("layernorm", "move"), 1),
    "LayerNorm and moves hidden": ((), 1),
    "a weight path twice as wide": (("layernorm", "move"), 2),
    "both": ((), 2),
}


def _phase_kind(section):
    """``section`` without its block number: ``block 3 mlp`` -> ``mlp``."""
    words = section.split()
    return " ".join(words[2:]) if words[0] == "block" else section


def bounds(preset=_FINAL):
    """What bounds DeiT-T's and DeiT-S's PE utilization on ``preset``, from the cycle model.

    Per kind of phase (the compiler's sections: ``attention`` is LN1, QKV, the heads and
    proj; ``mlp`` LN2, FC1 and FC2) the cycles it takes, and the work of the DMA (every
    LOAD's and STORE's own cycles, the weights' apart), of the GEMM unit, of LayerNorm
    (where it does not run beside a GEMM) and of the moves. Each ceiling of :data:`CEILINGS` gives every phase the larger of its DMA's
    work and its engine's (the GEMMs plus what the ceiling leaves on the engine's path), as
    if each overlapped the other perfectly: a utilization no scheduling of the same work
    within the same phases can beat.
    """
    from vitforge.hw.accel.isa import ISA, Instruction, Opcode, Space
    from vitforge.sw.accel.cycles import predict, unit_cycles

    config, rows = preset.accelerator, {}
    for name, program in _deit_programs(config):
        predicted = predict(program)
        phases = {}
        work = ("cycles", "dma", "weights", "gemm", "layernorm", "move")
        for section, cycles in predicted.section_cycles(program).items():
            phase = phases.setdefault(_phase_kind(section), dict.fromkeys(work, 0))
            phase["cycles"] += cycles
        for (opcode, fields), section in zip(program.instructions, program.sections):
            instruction = Instruction(Opcode(opcode), dict(fields))
            phase, cycles = phases[_phase_kind(section)], unit_cycles(config, instruction)
            unit = ISA[instruction.opcode].unit
            if unit == "dma":
                phase["dma"] += cycles
                if instruction.opcode == Opcode.LOAD and instruction.space == Space.WGT:
                    phase["weights"] += cycles
            elif unit in ("gemm", "layernorm") and not instruction.fields.get("beside"):
                phase[unit] += cycles
            elif unit == "moves":
                phase["move"] += cycles
        useful = program.macs / config.gemm.macs_per_cycle
        ceilings = {}
        for ceiling, (engine, widening) in CEILINGS.items():
            floor = sum(max(phase["dma"] - phase["weights"] + phase["weights"] // widening,
                            phase["gemm"] + sum(phase[part] for part in engine))
                        for phase in phases.values())
            ceilings[ceiling] = {"cycles": floor, "utilization": round(useful / floor, 4)}
        rows[name] = {"cycles": predicted.cycles,
                      "utilization": round(useful / predicted.cycles, 4),
                      "gemm_only_utilization": round(
                          useful / sum(phase["gemm"] for phase in phases.values()), 4),
                      "phases": phases, "ceilings": ceilings}
        print(f"{name}: {predicted.cycles} cycles, {rows[name]['utilization']:.1%} of the PEs; "
              + "; ".join(f"{ceiling}: {value['utilization']:.1%}"
                          for ceiling, value in ceilings.items()), flush=True)
    return rows


#: Token pruning and HP sparsity on the ``zcu102`` preset: random selectors at the default
#: top-k stages, weights HP-pruned to 50% for groups of the array's 40 columns.
PRUNED_SETTINGS = ("dense", "top-k", "HP 50%", "HP 50% + top-k")


def _pruned_programs(config, name):
    """DeiT ``name`` compiled for ``config`` in each of :data:`PRUNED_SETTINGS`, with the
    golden logits each must give."""
    import numpy as np
    from vitforge.sim.model_run import load_model
    from vitforge.sw.accel.compiler import compile_model
    from vitforge.sw.golden.encoder import pruned_vit_logits, vit_logits
    from vitforge.sw.model.hp_prune import prune_vit
    from vitforge.sw.model.quantized_selector import quantize_selectors
    from vitforge.sw.model.selector import default_stages, random_selectors

    vit, calibration, images, _ = load_model(name)
    stages = default_stages(vit.shape.depth, "topk")
    selectors = random_selectors(vit.shape, stages, np.random.default_rng(1), scale=0.5)
    for weights, variant in (("", vit), ("HP 50%", prune_vit(vit, 0.5, cols=config.array))):
        model, patches = _quantized(variant, calibration, images)
        quantized = quantize_selectors(variant, selectors, stages, calibration, model)
        for chosen in (None, quantized):
            setting = " + ".join(part for part in (weights, chosen and "top-k") if part)
            expected = vit_logits(model, patches) if chosen is None else \
                pruned_vit_logits(model, patches, chosen)[0]
            yield setting or "dense", compile_model(config, model, patches, selectors=chosen), \
                expected


def pruned(preset=_FINAL, coverify_settings=("top-k", "HP 50% + top-k")):
    """DeiT-T and DeiT-S in each of :data:`PRUNED_SETTINGS` on ``preset``: cycles from the
    cycle model, and for ``coverify_settings`` co-verified in Verilator (bit for bit, the
    logits the golden model's, every counter the model's)."""
    import numpy as np
    from vitforge.sim.accel.cosim import coverify
    from vitforge.sw.accel.cycles import predict

    config, rows = preset.accelerator, {}
    for name in ("deit-tiny", "deit-small"):
        rows[name] = {}
        for setting, program, expected in _pruned_programs(config, name):
            cycles = predict(program).cycles
            row = rows[name][setting] = {
                "cycles": cycles, "fps": round(preset.clock_mhz * 1e6 / cycles, 1),
                "heads_overlap": program.overlap,
                "sparse_layers_dense": len(program.dense_fallback)}
            if setting in coverify_settings:
                started = time.monotonic()
                report = coverify(program)
                row.update(coverified_cycles=report.cycles,
                           bit_exact=report.match and np.array_equal(report.rtl_output,
                                                                     expected),
                           cycle_model_exact=not report.prediction_mismatch(),
                           coverify_seconds=round(time.monotonic() - started, 1))
            print(f"{name} {setting}: {row}", flush=True)
        dense = rows[name]["dense"]["cycles"]
        for row in rows[name].values():
            row["speedup"] = round(dense / row["cycles"], 3)
    return rows


def deit(preset):
    """One image of DeiT-T and DeiT-S compiled for the preset's own scratchpads, co-verified."""
    from vitforge.sim.accel.cosim import coverify

    rows = {}
    config = preset.accelerator
    started = time.monotonic()
    for name, program in _deit_programs(config):
        report = coverify(program, log=lambda line: print(f"  {line}", flush=True))
        cycles = report.cycles
        rows[name] = {"bit_exact": report.match, "cycles": cycles, "macs": program.macs,
                      "cycle_model_exact": not report.prediction_mismatch(),
                      "macs_per_cycle": round(program.macs / cycles, 1),
                      "utilization": round(program.macs / config.gemm.macs_per_cycle / cycles, 4),
                      "fps": round(preset.clock_mhz * 1e6 / cycles, 1),
                      "fps_goal": GOAL_FPS[name],
                      "class_cycles": report.class_cycles, "side_cycles": report.side_cycles,
                      "seconds": round(time.monotonic() - started, 1)}
        started = time.monotonic()
        print(f"{name}: {cycles} cycles, {rows[name]['macs_per_cycle']} MACs/cycle "
              f"({rows[name]['utilization']:.1%} of the PEs), {rows[name]['fps']} FPS at "
              f"{preset.clock_mhz} MHz, bit-exact {report.match}", flush=True)
    return rows


def plot_resources(report, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    used = report["utilization"]
    keys = ("lut", "ff", "dsp", "bram36")
    figure, axis = plt.subplots(figsize=(6, 3.2))
    bars = axis.bar([key.upper() for key in keys], [100 * used[key] for key in keys],
                    color="#4c72b0")
    axis.axhline(100 * HEADROOM, color="#c44e52", linestyle="--", label="routing headroom")
    for bar, key in zip(bars, keys):
        axis.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1,
                  f"{report[key]:g} / {DEVICE[key]}", ha="center", fontsize=8)
    axis.set_ylim(0, 100)
    axis.set_ylabel("% of XCZU9EG")
    axis.set_title("zcu102 preset, Yosys per-module estimate")
    axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_changes(modelled, path):
    """Each change's DeiT-T and DeiT-S cycles from the cycle model, stacked by instruction
    class, with the FPS they give at the evidence clock."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from vitforge.hw.accel.isa import COUNTER_CLASSES

    changes = list(modelled)[::-1]
    figure, axes = plt.subplots(1, 2, figsize=(12, 3.6), sharey=True)
    colours = plt.get_cmap("tab10").colors
    for axis, model in zip(axes, ("deit-tiny", "deit-small")):
        left = [0] * len(changes)
        for colour, name in zip(colours, COUNTER_CLASSES):
            widths = [modelled[change][model]["class_cycles"][name] / 1e6 for change in changes]
            if any(widths):
                axis.barh(changes, widths, left=left, color=colour, label=name)
                left = [start + width for start, width in zip(left, widths)]
        for row, change in enumerate(changes):
            fps = modelled[change][model][f"fps_{EVIDENCE_MHZ}mhz"]
            axis.text(left[row], row, f" {fps:g} FPS", va="center", fontsize=8)
        axis.set_xlim(0, max(left) * 1.25)
        axis.set_xlabel(f"million cycles per image (FPS at {EVIDENCE_MHZ} MHz)")
        axis.set_title(f"{model}, goal {GOAL_FPS[model]} FPS", fontsize=10)
    figure.legend(*axes[1].get_legend_handles_labels(), loc="lower center", ncol=8, fontsize=8)
    axes[0].tick_params(axis="y", labelsize=7)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_bounds(rows, path):
    """Per kind of phase of DeiT-T and DeiT-S: the cycles it takes beside its engine's work
    (GEMM, LayerNorm, moves) and its DMA's (weights, the rest), with the ceilings."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    parts = {"taken": (("cycles", "tab:gray"),),
             "engine": (("gemm", "tab:blue"), ("layernorm", "tab:orange"), ("move", "tab:green")),
             "DMA": (("weights", "tab:red"), ("other loads", "tab:pink"))}
    for axis, (model, row) in zip(axes, rows.items()):
        phases = list(row["phases"])
        for offset, (bar, pieces) in zip((-0.27, 0, 0.27), parts.items()):
            left = [0] * len(phases)
            for part, colour in pieces:
                widths = [(phase["dma"] - phase["weights"] if part == "other loads" else
                           phase[part]) / 1e3 for phase in map(row["phases"].get, phases)]
                axis.barh([index + offset for index in range(len(phases))], widths, 0.25,
                          left=left, color=colour, label=f"{bar}: {part}")
                left = [start + width for start, width in zip(left, widths)]
        axis.set_yticks(range(len(phases)), phases)
        axis.invert_yaxis()
        axis.set_xlabel("thousand cycles (all blocks)")
        ceilings = "\n".join(f"{name}: {value['utilization']:.1%}"
                             for name, value in row["ceilings"].items())
        axis.set_title(f"{model}: {row['utilization']:.1%} of the PEs; ceilings\n{ceilings}",
                       fontsize=8)
    figure.legend(*axes[1].get_legend_handles_labels(), loc="lower center", ncol=6, fontsize=8)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_pruned(rows, path):
    """FPS of DeiT-T and DeiT-S in each of :data:`PRUNED_SETTINGS` on the ``zcu102`` preset."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for axis, (model, settings) in zip(axes, rows.items()):
        fps = [settings[setting]["fps"] for setting in PRUNED_SETTINGS]
        axis.barh(PRUNED_SETTINGS, fps, color="tab:blue")
        for row, setting in enumerate(PRUNED_SETTINGS):
            axis.text(fps[row], row, f" {fps[row]:g} ({settings[setting]['speedup']:g}x)",
                      va="center", fontsize=8)
        axis.invert_yaxis()
        axis.set_xlim(0, max(fps) * 1.3)
        axis.set_xlabel("FPS at the preset's clock")
        axis.set_title(f"{model}, zcu102 preset", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def draw(results, out):
    plot_resources(results["resources"]["zcu102"], out / "zcu102_resources.png")
    plot_changes(results["modelled_cycles"], out / "zcu102_changes.png")
    drawn = "zcu102_changes.png"
    if "bounds" in results:     # runs before 2026-12-05 have none
        plot_bounds(results["bounds"], out / "zcu102_bounds.png")
        drawn += " and zcu102_bounds.png"
    print(f"wrote {out / 'zcu102_resources.png'}, {drawn}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-deit", action="store_true")
    parser.add_argument("--skip-flat", action="store_true")
    parser.add_argument("--coverify-final-only", action="store_true",
                        help="co-verify DeiT on the zcu102 preset only (the cycle model "
                             "gives every change's cycles)")
    parser.add_argument("--replot", action="store_true",
                        help="draw the plots from the JSON of an earlier run, measuring nothing")
    parser.add_argument("--cycles-only", action="store_true",
                        help="only every change's cycles from the cycle model")
    parser.add_argument("--pruned", action="store_true",
                        help="only token pruning and HP sparsity on the zcu102 preset "
                             "(co-verifies the pruned settings, about 15 minutes)")
    parser.add_argument("--bounds", action="store_true",
                        help="only what bounds the zcu102 preset's PE utilization (seconds)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.replot:
        draw(json.loads((args.out / "zcu102.json").read_text()), args.out)
        return
    for alone, stem, key, measure, plot in (
            (args.bounds, "zcu102_bounds", "bounds", bounds, plot_bounds),
            (args.pruned, "zcu102_pruned", "pruned", pruned, plot_pruned),
            (args.cycles_only, "zcu102_cycles", "modelled_cycles", modelled_cycles,
             plot_changes)):
        if alone:
            path, measured = args.out / f"{stem}.json", measure()
            path.write_text(json.dumps({key: measured}, indent=2) + "\n")
            plot(measured, args.out / f"{stem}.png")
            print(f"wrote {path} and {stem}.png")
            return

    results = {"goals": {"generate_seconds": GOAL_GENERATE_SECONDS,
                         "estimate_seconds": GOAL_ESTIMATE_SECONDS,
                         "estimate_agreement": GOAL_ESTIMATE_AGREEMENT,
                         "mac_dsp_fraction": GOAL_MAC_DSP_FRACTION, "fps": GOAL_FPS,
                         "utilization": GOAL_UTILIZATION}}
    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.out / "zcu102.partial.json"

    def keep(section, value):
        """Record a finished section; an interrupted run leaves what it measured in
        ``zcu102.partial.json``."""
        results[section] = value
        partial.write_text(json.dumps(results, indent=2) + "\n")

    keep("modelled_cycles", modelled_cycles())
    keep("bounds", bounds())
    with tempfile.TemporaryDirectory(prefix="vitforge-bench-") as scratch:
        keep("generate", generation(scratch))
    keep("resources", estimates(args.skip_flat))
    keep("axi_overhead", axi_overhead())
    if not args.skip_deit:
        timings = ({"40x40, k_per_cycle 2 (zcu102)": _FINAL} if args.coverify_final_only
                   else TIMINGS)
        keep("deit", {name: deit(shell) for name, shell in timings.items()})
    partial.replace(args.out / "zcu102.json")
    print(f"wrote {args.out / 'zcu102.json'}")
    draw(results, args.out)


if __name__ == "__main__":
    main()
