"""The command-line handlers of whole models: ``simulate``, ``verify`` and ``demo``."""

from dataclasses import replace

from vitforge.errors import EXIT_MISMATCH, EXIT_OK, ConfigError

from .cli_support import (check_output_folder, data_files, log, prepare_out_folder,
                          print_class_cycles, progress, shell_config, write_json)

__all__ = ["simulate", "verify", "demo"]


def _model_summary(run, shell, config_source, clock_source):
    """The JSON summary of ``run`` on ``shell`` (the accelerator that ran, at the clock used)."""
    from vitforge.boards.presets import config_hash

    cycles = sum(run.cycles) / len(run.cycles)
    clock_mhz = shell.clock_mhz
    return {
        "model": run.model, "data": run.data, "images": run.images,
        "bit_exact": run.bit_exact,
        "error": run.error, "cycles": cycles, "cycles_per_image": run.cycles,
        "predicted_cycles_per_image": run.predicted_cycles,
        "cycle_model_exact": not run.cycle_model_mismatch,
        "per_layer": {name: value / len(run.cycles)
                      for name, value in run.section_cycles.items()},
        "per_class": {name: value / len(run.cycles) for name, value in run.class_cycles.items()},
        "per_class_beside": {name: value / len(run.cycles)
                             for name, value in run.side_cycles.items()},
        "utilization": run.utilization, "macs": run.macs, "array": run.array,
        "config": shell.to_dict(), "config_hash": config_hash(shell),
        "config_source": config_source, "clock_source": clock_source,
        "clock_mhz": clock_mhz, "latency_ms": cycles / (clock_mhz * 1e3),
        "fps": clock_mhz * 1e6 / cycles,
        "float_accuracy": run.float_accuracy, "int8_accuracy": run.int8_accuracy,
        "top1_agreement": run.top1_agreement, "logit_cosine": run.logit_cosine,
        "predictions": run.predictions,
        **_pruning_summary(run),
        "sparse_layers": run.sparse_layers, "weight_bytes": run.weight_bytes,
        "dense_weight_bytes": run.dense_weight_bytes,
        "dense_fallback": list(run.dense_fallback),
        "heads_overlap": not run.sequential_reason, "sequential_reason": run.sequential_reason,
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
    from vitforge.sim.report import accelerator_text

    print(f"model {summary['model']} on a {summary['array']}x{summary['array']} array, "
          f"{summary['images']} image(s) simulated")
    print(f"  accelerator          {accelerator_text(summary)}")
    print(f"  images               {summary['data']}")
    print(f"  RTL == golden        {'yes' if summary['bit_exact'] else 'NO'} (whole external "
          f"memory, every image)")
    print(f"  cycles per image     {summary['cycles']:.0f}  ({summary['latency_ms']:.3f} ms, "
          f"{summary['fps']:.0f} images/s at {summary['clock_mhz']} MHz)")
    print(f"  cycle model          {'exact' if summary['cycle_model_exact'] else 'NOT exact'}"
          f" (total, per class and per layer against the hardware counters)")
    print(f"  PE utilization       {summary['utilization']:.1%}")
    overlap = "yes" if summary["heads_overlap"] else f"no: {summary['sequential_reason']}"
    print(f"  softmax beside GEMMs {overlap}")
    if summary["prune"] != "none":
        from vitforge.sim.report import before_blocks, mean_kept_tokens

        print(f"  token selection      {summary['prune_mode']} "
              f"{before_blocks(summary['stage_blocks'])}; tokens kept per stage (mean) "
              f"{mean_kept_tokens(summary)}")
        print(f"  dense, same images   {summary['dense_cycles']:.0f} cycles: pruned is "
              f"{summary['speedup']:.2f}x faster")
    if summary["sparse_layers"]:
        fallback = ", ".join(summary["dense_fallback"]) or "none"
        ratio = summary["weight_bytes"] / summary["dense_weight_bytes"]
        print(f"  HP sparse weights    {summary['sparse_layers']} layers, stored in "
              f"{summary['weight_bytes']} bytes ({ratio:.2f}x dense, indices included); run "
              f"dense on this array: {fallback}")
    print("  cycles per layer")
    for name, cycles in summary["per_layer"].items():
        print(f"    {name:22} {cycles:10.0f}  {cycles / summary['cycles']:6.1%}")
    print_class_cycles(summary["per_class"], summary["per_class_beside"], summary["cycles"],
                       indent=4, width=22)
    if verify:
        if summary["float_accuracy"] is not None:
            print(f"  accuracy             float {summary['float_accuracy']:.2%}, int8 "
                  f"{summary['int8_accuracy']:.2%} (held-out split, golden model)")
        if summary.get("dense_float_accuracy") is not None:
            print(f"  dense accuracy       float {summary['dense_float_accuracy']:.2%}, int8 "
                  f"{summary['dense_int8_accuracy']:.2%}")
        print(f"  top-1 agreement      {summary['top1_agreement']:.2%}; logit cosine "
              f"{summary['logit_cosine']:.4f}")


def _array(rows, shell, source):
    """What the model runs on: ``--rows`` for an accelerator sized to the model, or exactly
    the accelerator of ``--preset``/``--config`` (``source``), whose array ``--rows`` must
    then equal if given."""
    from vitforge.hw.checks import check_lanes

    if source is None:
        rows = 4 if rows is None else rows
        check_lanes("rows", rows)
        return rows
    array = shell.accelerator.array
    if rows not in (None, array):
        raise ConfigError(f"rows must be left out or equal the array of {source} ({array}), "
                          f"not {rows}")
    return shell.accelerator


def _clocked(shell, clock_mhz, source):
    """``shell`` at ``--clock-mhz`` where given, and where its clock comes from."""
    from vitforge.boards.presets import DEFAULT_PRESET

    if clock_mhz is None:
        return shell, source or f"preset {DEFAULT_PRESET}"
    return replace(shell, clock_mhz=clock_mhz), "--clock-mhz"


def _run_model(args, compare_float):
    from vitforge.sim.model_run import run_model

    check_output_folder(args.json)
    check_output_folder(args.waves)
    shell, source = shell_config(args.preset, args.config)
    array = _array(args.rows, shell, source)
    shell, clock_source = _clocked(shell, args.clock_mhz, source)
    run = run_model(args.model, images=args.images, array=array, seed=args.seed,
                    compare_float=compare_float, waves_to=args.waves, log=log,
                    progress=progress, prune=args.prune, prune_mode=args.prune_mode,
                    data=data_files(args), observer=args.observer)
    shell = replace(shell, accelerator=run.accelerator)
    return run, _model_summary(run, shell, source or "sized to the model", clock_source)


def simulate(args):
    """Cycle-accurate run of a quantized model: cycles per class, utilization, latency, FPS."""

    run, summary = _run_model(args, compare_float=False)
    _print_model_summary(summary, verify=False)
    write_json(args.json, summary)
    return EXIT_OK if run.bit_exact and not run.error else EXIT_MISMATCH


def verify(args):
    """RTL vs golden (bit-exact) and golden vs float (accuracy, agreement); with ``--seeds``
    or ``--configs`` a regression farm (:func:`~.cli_explore.verify_farm`)."""
    if args.seeds is not None or args.configs is not None:
        from .cli_explore import verify_farm

        return verify_farm(args)
    run, summary = _run_model(args, compare_float=True)
    _print_model_summary(summary, verify=True)
    if run.mismatch:
        print(f"  first mismatch       {run.mismatch}")
    write_json(args.json, summary)
    return EXIT_OK if run.bit_exact and not run.error else EXIT_MISMATCH


def demo(args):
    """The embedded digits model end to end, with a report and plots in a folder."""
    from vitforge.sim.report import write_demo_report

    args.model, args.json = "tiny", None
    prepare_out_folder(args.out, args.force)
    run, summary = _run_model(args, compare_float=True)
    _print_model_summary(summary, verify=True)
    folder = write_demo_report(args.out, run, summary, force=args.force)
    print(f"  report               {folder}/report.md (plots beside it)")
    return EXIT_OK if run.bit_exact and not run.error else EXIT_MISMATCH
