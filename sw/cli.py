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
import importlib.util
from pathlib import Path
import platform
import shlex
import sys
import tempfile
import traceback

import numpy as np

from vitforge.errors import (EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_MISMATCH, EXIT_OK,
                             ConfigError, ToolchainError, UserError, exit_status)

from .cli_model import demo, simulate, verify
from .cli_doctor import doctor, package_version
from .cli_explore import add_explore_parser, add_farm_options, explore_command
from .cli_quantize import add_quantize_parser, quantize
from .cli_replay import add_replay_parser, replay
from .processes import interrupt_on_sigterm, stop_descendants
from .cli_support import (add_data_options, add_force_option, check_output_folder, log,
                          prepare_out_folder, print_class_cycles, seed_argument, shell_config,
                          write_json)

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2, like every other bad input."""

    def error(self, message):
        raise UserError(message)


def _sparsity(text):
    """The ``--sparsity`` type: a fraction of the weights pruned, in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], not {text}")
    return value


def _block_rows(value):
    """``--block-rows`` checked as the sparse format requires, as a usage error."""
    from vitforge.sw.gemm.sparse import check_block_rows

    try:
        check_block_rows(value)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return value


def _sparse_job(config, problem, sparsity, block_rows):
    """``problem`` with B HP-pruned by magnitude to ``sparsity``, placed as a sparse job;
    returns ``(job, weight, dense cycles of the same pruned GEMM)``."""
    from dataclasses import replace

    from vitforge.sw.gemm.plan import command_cycles, plan_gemm, plan_sparse_gemm
    from vitforge.sw.gemm.sparse import HPSparseWeight
    from vitforge.sw.model.hp_prune import hp_pattern

    pattern = hp_pattern(problem.b.astype(np.float64), sparsity, cols=config.cols,
                         block_rows=_block_rows(block_rows))
    weight = HPSparseWeight.encode((problem.b * pattern.mask()).astype(np.int8), pattern)
    problem = replace(problem, b=weight.dense())
    dense = command_cycles(config, plan_gemm(config, problem).descriptor)
    return plan_sparse_gemm(config, problem, weight), weight, dense


def gemm(args):
    """Generate the engine, simulate one GEMM, compare with the golden model."""
    from vitforge.hw.gemm.config import GemmConfig
    from vitforge.sim.gemm.cosim import first_mismatch, simulate
    from vitforge.sw.gemm.plan import check_shape, plan_gemm
    from vitforge.sw.gemm.problems import random_problem

    check_output_folder(args.json)
    config = GemmConfig(rows=args.rows, cols=args.cols, macs_per_dsp=args.macs_per_dsp,
                        k_per_cycle=args.k_per_cycle)
    check_shape(config, args.m, args.k, args.n)         # before the operands exist
    problem = random_problem(np.random.default_rng(args.seed), args.m, args.k, args.n,
                             pattern=args.pattern)
    sparse = {}
    if args.sparsity is None:
        job = plan_gemm(config, problem)
    else:
        job, weight, dense_cycles = _sparse_job(config, problem, args.sparsity,
                                                args.block_rows)
        pattern = weight.pattern
        sparse = {"sparsity": args.sparsity, "pruned": float(pattern.sparsity),
                  "block_rows": pattern.block_rows, "blocks": pattern.kept_blocks,
                  "kept_rows": pattern.kept_rows, "dense_cycles": dense_cycles,
                  "storage_bytes": weight.storage_bytes(), "dense_bytes": weight.dense_bytes()}
    report = simulate(config, [job], log=log)
    (result,) = report.jobs
    summary = {
        "match": result.match,
        "cycles": result.cycles,
        "ideal_cycles": result.ideal_cycles,
        "utilization": result.utilization,
        "mac_cycles": result.mac_cycles,
        "rows": args.rows, "cols": args.cols, "macs_per_dsp": args.macs_per_dsp,
        "k_per_cycle": args.k_per_cycle,
        "m": args.m, "k": args.k, "n": args.n,
        "seed": args.seed, "pattern": args.pattern, **sparse,
        "verilog_seconds": report.verilog_seconds,
        "build_seconds": report.build_seconds,
        "sim_seconds": report.sim_seconds,
    }
    steps = f", {args.k_per_cycle} steps of K per cycle" if args.k_per_cycle > 1 else ""
    print(f"GEMM {args.m}x{args.k} @ {args.k}x{args.n} on a {args.rows}x{args.cols} PE array"
          f"{steps} "
          f"(seed {args.seed}, {args.pattern} operands)")
    print(f"  RTL == golden   {'yes' if result.match else 'NO'} "
          f"({args.m * args.n} int8 results and their padding lanes)")
    print(f"  cycles          {result.cycles}")
    if sparse:
        print(f"  HP sparse       {sparse['pruned']:.1%} of B pruned: {sparse['blocks']} blocks "
              f"x {sparse['kept_rows']} rows of {sparse['block_rows']} kept per column tile")
        print(f"  dense           {sparse['dense_cycles']} cycles (sparse: "
              f"{result.cycles / sparse['dense_cycles']:.2f}x); B stored in "
              f"{sparse['storage_bytes']} bytes, dense {sparse['dense_bytes']} "
              f"({sparse['storage_bytes'] / sparse['dense_bytes']:.2f}x, indices included)")
    print(f"  ideal cycles    {result.ideal_cycles:.0f}  (M*K*N / (rows*cols*k_per_cycle))")
    print(f"  utilization     {result.utilization:.1%}")
    if not result.match:
        mismatch = first_mismatch(result.rtl, result.golden)
        if mismatch is None:
            print("  results agree; padding lanes of the C buffer differ")
        else:
            row, col, rtl, golden = mismatch
            print(f"  first mismatch  C[{row}, {col}]: RTL {rtl}, golden {golden}")
    write_json(args.json, summary)
    return EXIT_OK if result.match else EXIT_MISMATCH


def _fine_tune(pruned, epochs, labelled):
    """``pruned`` after ``epochs`` of masked fine-tuning on the digits training split."""
    if not labelled:
        raise ConfigError("fine-tune-epochs needs a model with training data: tiny, tiny-hp50 "
                          "or a digits .npz model")
    if importlib.util.find_spec("torch") is None:
        raise ToolchainError("fine-tuning needs PyTorch: pip install 'vitforge[train]' (a CPU "
                             "build is enough)")
    from vitforge.sw.model.digits import digits_split
    from vitforge.sw.model.finetune_pruned import finetune_pruned

    (images, labels), _ = digits_split()
    return finetune_pruned(pruned, images, labels, epochs=epochs, lr=1e-3, log=log)


def prune(args):
    """HP-prune a float model's encoder layers by magnitude, optionally fine-tune, save it."""
    from vitforge.hw.checks import check_positive_int
    from vitforge.sim.model_run import load_model
    from vitforge.sw.model.hp_prune import prune_vit
    from vitforge.sw.model.vit import forward
    from vitforge.sw.model.weights import save_vit

    check_output_folder(args.out)
    check_positive_int("cols", args.cols)
    if args.fine_tune_epochs < 0:
        raise ConfigError(f"fine-tune-epochs must be non-negative, not {args.fine_tune_epochs}")
    vit, _, test_images, test_labels = load_model(args.model, args.seed)
    pruned = prune_vit(vit, args.sparsity, cols=args.cols, block_rows=_block_rows(args.block_rows))
    if args.fine_tune_epochs:
        pruned = _fine_tune(pruned, args.fine_tune_epochs, test_labels is not None)
    meta = {"hp": {"sparsity": args.sparsity, "cols": args.cols, "block_rows": args.block_rows,
                   "fine_tune_epochs": args.fine_tune_epochs, "source": args.model}}
    if test_labels is not None:
        meta["data"] = "digits"
        meta["accuracy"] = {name: float((forward(model, test_images).argmax(1)
                                         == test_labels).mean())
                            for name, model in (("dense", vit), ("pruned", pruned))}
    save_vit(args.out, pruned, extra_meta=meta)
    print(f"{args.model} HP-pruned to {args.sparsity:.0%} for {args.cols}-column tiles, blocks "
          f"of {args.block_rows} rows -> {args.out}")
    patterns = pruned.sparsity.values()
    stored = sum(pattern.storage_bytes() for pattern in patterns)
    dense = sum(pattern.dense_bytes() for pattern in patterns)
    for name, pattern in pruned.sparsity.items():
        print(f"  {name:16} {pattern.kept_blocks:3d} blocks x {pattern.kept_rows:3d} rows kept "
              f"per tile ({pattern.sparsity:.1%} pruned)")
    print(f"  int8 weights     {stored} bytes stored, {dense} dense ({stored / dense:.2f}x, "
          f"indices included)")
    if "accuracy" in meta:
        print(f"  float accuracy   dense {meta['accuracy']['dense']:.2%}, pruned "
              f"{meta['accuracy']['pruned']:.2%} (held-out split)")
    return EXIT_OK


def nonlinear(args):
    """Run a nonlinear unit in simulation against its golden twin and the float reference."""
    from vitforge.sim.nonlinear.evaluate import evaluate

    check_output_folder(args.json)
    result = evaluate(args.op, scale=args.scale, length=args.length, rows=args.rows,
                      lanes=args.lanes, seed=args.seed, log=log)
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
    write_json(args.json, summary)
    return EXIT_OK if result.match else EXIT_MISMATCH


#: ``block``'s largest sizes: tokens and channels of the largest ViTs (2,305 tokens at 384x384
#: with 8x8 patches; 1,024 channels and a 4,096 MLP for ViT-L), 64 lanes (``MAX_LANES``).
_BLOCK_LIMITS = {"tokens": 4096, "dim": 1024, "heads": 64, "mlp": 4096, "blocks": 64,
                 "rows": 64}


def block(args):
    """Compile random integer encoder blocks, run them on the RTL and the golden interpreter."""
    from vitforge.hw.checks import check_positive_int
    from vitforge.sim.accel.cosim import coverify
    from vitforge.sim.report import before_blocks
    from vitforge.sw.accel.compiler import compile_blocks, config_for
    from vitforge.sw.model.random_block import block_selectors, random_blocks

    check_output_folder(args.json)
    for name, maximum in _BLOCK_LIMITS.items():
        check_positive_int(name, getattr(args, name), maximum)
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
    report = coverify(program, log=log)
    pruning, dense_ok = {}, True
    if selectors is not None:
        from vitforge.sw.golden.encoder import pruned_encoder_blocks

        dense = coverify(compile_blocks(config, blocks, x), log=log)
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
               "class_cycles": report.class_cycles,
               "side_cycles": report.predicted.side_cycles, "macs": program.macs,
               "heads_overlap": program.overlap,
               "sequential_reason": program.sequential_reason or "",
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
    print(f"  softmax beside    "
          f"{'GEMMs' if program.overlap else 'nothing: ' + program.sequential_reason}")
    print_class_cycles(report.class_cycles, report.predicted.side_cycles, report.cycles,
                       indent=4, width=12)
    write_json(args.json, summary)
    return EXIT_OK if summary["match"] else EXIT_MISMATCH


def generate_command(args):
    """Verilog, constraints, Vivado scripts, register map and resource estimate for a board."""
    from vitforge.boards.presets import config_hash
    from vitforge.sw.generate import generate

    config, _ = shell_config(args.preset, args.config)
    if args.clock_mhz is not None:
        from dataclasses import replace

        config = replace(config, clock_mhz=args.clock_mhz)
    out = prepare_out_folder(args.out, args.force)
    result = generate(args.board, config, out, resources=not args.no_resources, log=log,
                      force=args.force)
    accelerator = config.accelerator
    print(f"vitforge generate: {args.board}, {accelerator.array}x{accelerator.array} array at "
          f"{config.clock_mhz} MHz, config {config_hash(config)} -> {out}")
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
        clock = estimate["clock"]
        print(f"  slowest path         {clock['logic_levels']} LUT levels, "
              f"{clock['carry_bits']}-bit carry chain in {clock['worst_module']}: about "
              f"{clock['max_clock_mhz_estimate']} MHz (-2 delay model)")
    elif estimate is not None:
        print(f"  resources            not estimated: {estimate['reason']}")
    print(f"  next                 {out}/build.sh (needs Vivado)")
    for warning in result.warnings:
        log(f"warning: {warning}")
    return EXIT_OK


def _add_model_options(parser, images, prune="none"):
    parser.add_argument("--images", type=int, default=images,
                        help=f"test images to simulate (default {images})")
    add_data_options(parser)
    parser.add_argument("--prune", default=prune, metavar="{none,default,FILE}",
                        help="token selection at run time: none, default (the selectors "
                             "shipped with tiny; random ones for a preset) or a selector .npz "
                             f"(default {prune}); each image then also runs dense")
    parser.add_argument("--prune-mode", choices=("threshold", "topk"),
                        help="keep tokens by keep probability >= 0.5 or keep exactly the "
                             "stage's ratio (default: the selectors' own mode)")
    _add_config_options(parser, "run on this preset's accelerator, exactly as generate builds "
                                "it (default: one sized to the model)")
    parser.add_argument("--rows", type=int,
                        help="PE array size of the accelerator sized to the model (default 4); "
                             "with --preset or --config the config's array")
    parser.add_argument("--seed", type=seed_argument, default=0, help="random seed")
    parser.add_argument("--clock-mhz", type=int,
                        help="clock for latency and FPS (default: the config's, else the "
                             "zcu102 preset's)")
    parser.add_argument("--waves", metavar="FILE.vcd",
                        help="dump a VCD trace (top two hierarchy levels) of the first "
                             "image's run")


def _add_config_options(parser, preset_help):
    """``--preset NAME | --config FILE``, as generate, simulate, verify and demo take them."""
    from vitforge.boards.presets import PRESETS

    parser.add_argument("--preset", help=f"{preset_help}: {', '.join(PRESETS)}")
    parser.add_argument("--config", metavar="FILE",
                        help="hardware config as JSON, instead of --preset (a generated "
                             "config.json works)")


def _parser():
    parser = _Parser(prog="vitforge",
                     description="Generate, simulate and co-verify ViT accelerators.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    commands.add_parser("doctor", help="show tool versions, or how to install what is missing")

    gemm_parser = commands.add_parser(
        "gemm", help="simulate one int8 GEMM on the engine and check it bit for bit")
    gemm_parser.add_argument("--rows", type=int, default=16, help="PE rows (default 16)")
    gemm_parser.add_argument("--cols", type=int, default=16, help="PE columns (default 16)")
    gemm_parser.add_argument("--macs-per-dsp", type=int, default=1, choices=(1, 2),
                             help="2 packs two columns' MACs into each DSP48E2 (default 1)")
    gemm_parser.add_argument("--k-per-cycle", type=int, default=1,
                             help="reduction steps per cycle: 1, or 2 or 4 summed on DSP48E2 "
                                  "cascades (needs --macs-per-dsp 2; default 1)")
    gemm_parser.add_argument("--m", type=int, default=197, help="rows of A (default 197)")
    gemm_parser.add_argument("--k", type=int, default=192, help="columns of A (default 192)")
    gemm_parser.add_argument("--n", type=int, default=192, help="columns of B (default 192)")
    gemm_parser.add_argument("--seed", type=seed_argument, default=0,
                             help="random seed (default 0)")
    gemm_parser.add_argument("--pattern", default="random",
                             help="operands: random, min, max, alternating or zeros")
    gemm_parser.add_argument("--sparsity", type=_sparsity, metavar="S",
                             help="HP-prune B by magnitude to this fraction (0..1) and run "
                                  "GEMM_SPARSE; the summary compares it with dense")
    gemm_parser.add_argument("--block-rows", type=int, default=32, metavar="KB",
                             help="rows per HP block, a power of two 2..256 (default 32)")
    gemm_parser.add_argument("--json", metavar="FILE", help="write the summary as JSON")

    prune_parser = commands.add_parser(
        "prune", help="HP-prune a model's encoder weights (balanced blocks of rows), save it")
    prune_parser.add_argument("--model", default="tiny",
                              help="tiny, deit-tiny, ... or a weights file (as simulate)")
    prune_parser.add_argument("--sparsity", type=_sparsity, required=True, metavar="S",
                              help="fraction of each layer's weights to prune (0..1)")
    prune_parser.add_argument("--out", required=True, metavar="FILE.npz",
                              help="the pruned float model, for simulate/verify --model")
    prune_parser.add_argument("--cols", type=int, default=16,
                              help="GEMM columns the pattern is for; arrays whose width "
                                   "divides it run it sparse (default 16)")
    prune_parser.add_argument("--block-rows", type=int, default=32, metavar="KB",
                              help="rows per block, a power of two 2..256 (default 32)")
    prune_parser.add_argument("--fine-tune-epochs", type=int, default=0, metavar="E",
                              help="masked fine-tune on the digits training split (needs "
                                   "PyTorch, the 'train' extra; default 0: none)")
    prune_parser.add_argument("--seed", type=seed_argument, default=0, help="random seed")

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
    nonlinear_parser.add_argument("--seed", type=seed_argument, default=0, help="random seed")
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
    block_parser.add_argument("--seed", type=seed_argument, default=0, help="random seed")
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
                                  help="tiny (embedded digits model), tiny-random, deit-tiny, "
                                       "deit-small, deit-base (random weights from --seed) or a "
                                       "weights file (.npz, timm .pth or .safetensors)")
        _add_model_options(model_parser, images=4)
        model_parser.add_argument("--json", metavar="FILE", help="write the summary as JSON")
        if name == "verify":
            add_farm_options(model_parser)
    generate_parser = commands.add_parser(
        "generate", help="Verilog, XDC, Vivado scripts, register map and resource estimate")
    generate_parser.add_argument("--board", default="zcu102", help="target board (zcu102)")
    _add_config_options(generate_parser, "hardware preset (default zcu102)")
    generate_parser.add_argument("--out", required=True, metavar="DIR",
                                 help="output folder (replaced whole)")
    add_force_option(generate_parser)
    generate_parser.add_argument("--no-resources", action="store_true",
                                 help="skip the yosys resource estimate")
    generate_parser.add_argument("--clock-mhz", type=int,
                                 help="pl_clk0 of the block design (default: the config's); "
                                      "generate warns when the estimate's slowest path does "
                                      "not support it")

    demo_parser = commands.add_parser(
        "demo", help="the embedded digits ViT end to end, report and plots in a folder")
    _add_model_options(demo_parser, images=6, prune="default")
    demo_parser.add_argument("--out", default="build/demo", help="report folder")
    add_force_option(demo_parser)
    add_quantize_parser(commands)
    add_explore_parser(commands)
    add_replay_parser(commands)
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
    write_atomic(path, f"vitforge {package_version('vitforge')}, Python "
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
                "simulate": simulate, "verify": verify, "demo": demo, "prune": prune,
                "generate": generate_command, "quantize": quantize, "explore": explore_command,
                "replay": replay}
    interrupt_on_sigterm()
    try:
        args = _parser().parse_args(argv)
        return handlers[args.command](args)
    except KeyboardInterrupt:
        stop_descendants()
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
