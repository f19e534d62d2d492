"""``vitforge quantize``: calibrate a float model, measure int8 against float, report per layer."""

import json
from pathlib import Path
import time

import numpy as np

from vitforge.errors import EXIT_OK, ConfigError

from .cli_support import (add_data_options, add_force_option, check_output_folder, data_files,
                          log, prepare_out_folder, progress, seed_argument, write_json)

__all__ = ["add_quantize_parser", "quantize", "REPORT_IMAGES"]

#: The per-layer report compares float and int8 activations on this many test images.
REPORT_IMAGES = 8


def add_quantize_parser(commands):
    parser = commands.add_parser(
        "quantize", help="quantize a model to int8 and measure it against float, per layer")
    parser.add_argument("--model", default="tiny",
                        help="tiny, a preset name (random weights) or a weights file (.npz, "
                             "timm .safetensors or .pth)")
    add_data_options(parser)
    parser.add_argument("--images", type=int,
                        help="test images to measure accuracy on (default: all)")
    parser.add_argument("--seed", type=seed_argument, default=0, help="random seed (random models)")
    parser.add_argument("--out", metavar="FILE.npz", help="write the int8 model")
    parser.add_argument("--report", metavar="DIR",
                        help=f"write the SQNR and max error of every quantized activation "
                             f"(on the first {REPORT_IMAGES} test images) as JSON and a plot")
    parser.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    add_force_option(parser, "--report")


def _measure(vit, model, images, labels):
    """Float against int8 (golden model) on ``images``, an image at a time for the progress
    bar: :func:`~vitforge.sw.model.quant_report.logit_comparison`."""
    from vitforge.sw.golden.encoder import vit_logits
    from vitforge.sw.model.quant_report import logit_comparison
    from vitforge.sw.model.quantize import quantized_patches
    from vitforge.sw.model.vit import forward

    floats, integers = [], []
    for index, image in enumerate(images):
        floats.append(forward(vit, image[None])[0])
        integers.append(vit_logits(model, quantized_patches(model, image[None])[0]))
        progress(index + 1, len(images))
    return {"test_images": len(images),
            **logit_comparison(integers, model.logit_scale, floats, labels)}


def _write_report(folder, rows, summary, force):
    """``errors.json`` and ``sqnr.png`` (SQNR per block, a line per activation) in ``folder``."""
    from vitforge.sw.files import atomic_folder

    with atomic_folder(folder, force) as staging:
        clean = [{key: (None if isinstance(value, float) and not np.isfinite(value) else value)
                  for key, value in row.items()} for row in rows]
        (staging / "errors.json").write_text(
            json.dumps({"summary": summary, "activations": clean}, indent=2) + "\n")
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            log("no sqnr.png: plots need matplotlib (pip install matplotlib)")
            return

        figure, axis = plt.subplots(figsize=(9, 4.5))
        names = dict.fromkeys(row["name"].split(".", 1)[1] for row in rows
                              if row["block"] is not None)
        for index, name in enumerate(names):
            points = [(row["block"], row["sqnr_db"]) for row in rows
                      if row["block"] is not None and row["name"].endswith(f".{name}")]
            axis.plot(*zip(*points), marker="o", markersize=3, label=name,
                      color=plt.cm.tab20(index), linestyle="-" if index % 2 else "--")
        axis.set_xlabel("encoder block")
        axis.set_ylabel("SQNR against float (dB)")
        axis.set_title(f"int8 {Path(summary['model']).name}: error accumulated up to each "
                       f"activation")
        axis.legend(ncol=4, fontsize=8)
        axis.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(staging / "sqnr.png", dpi=110)
        plt.close(figure)


def quantize(args):
    """Calibrate, quantize, measure float against int8 and write what was asked for."""
    from vitforge.sim.model_run import data_source, load_model
    from vitforge.sw.model.calibration import Calibration
    from vitforge.sw.model.quant_report import activation_errors
    from vitforge.sw.model.quantize import quantize_calibrated
    from vitforge.sw.model.quantized_io import save_quantized

    for path in (args.out, args.json):
        check_output_folder(path)
    if args.report:
        prepare_out_folder(args.report, args.force)
    data = data_files(args)
    vit, calibration_images, test, labels = load_model(args.model, args.seed, data)
    if args.images is not None:
        if not 1 <= args.images <= len(test):
            raise ConfigError(f"images must lie in [1, {len(test)}], not {args.images}")
        test, labels = test[:args.images], None if labels is None else labels[:args.images]
    log(f"calibrating on {len(calibration_images)} images")
    started = time.monotonic()
    calibration = Calibration.of(vit, calibration_images, progress)
    model = quantize_calibrated(vit, calibration, args.observer)
    seconds = time.monotonic() - started
    log(f"measuring float against int8 on {len(test)} test images")
    summary = {"model": args.model,
               "data": data_source(data, calibration_images, test, labels),
               "observer": args.observer, "calibration_images": len(calibration_images),
               "quantize_seconds": seconds,
               "probability_shifts": [block.probability_shift for block in model.blocks],
               **_measure(vit, model, test, labels)}
    print(f"model {args.model}: int8 with the {args.observer} observer, "
          f"{len(calibration_images)} calibration images ({seconds:.1f} s)")
    print(f"  images               {summary['data']}")
    if labels is not None:
        print(f"  top-1 accuracy       float {summary['float_accuracy']:.2%}, int8 "
              f"{summary['int8_accuracy']:.2%}")
    print(f"  top-1 agreement      {summary['top1_agreement']:.2%}; logit cosine "
          f"{summary['logit_cosine']:.4f}")
    print(f"  probability shifts   {summary['probability_shifts']} (per block)")
    if args.out:
        save_quantized(args.out, model)
        print(f"  int8 model           {args.out}")
    if args.report:
        rows = activation_errors(vit, model, test[:REPORT_IMAGES])
        worst = min(rows, key=lambda row: row["sqnr_db"])
        _write_report(args.report, rows, summary, args.force)
        print(f"  lowest SQNR          {worst['name']}: {worst['sqnr_db']:.1f} dB")
        print(f"  report               {args.report}/errors.json (and sqnr.png)")
    write_json(args.json, summary)
    return EXIT_OK
