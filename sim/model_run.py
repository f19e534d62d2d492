"""A whole quantized ViT on the accelerator: the main job behind simulate, verify and demo."""

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from vitforge.errors import ConfigError
from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.sw.accel.compiler import compile_model, config_for_model
from vitforge.sw.accel.selection import block_counts
from vitforge.sw.golden.encoder import pruned_vit_logits, vit_logits
from vitforge.sw.model.quant_report import logit_comparison
from vitforge.sw.model.quantize import quantized_patches, quantize_vit
from vitforge.sw.model.quantized_selector import quantize_selectors
from vitforge.sw.model.selector import (MODES, default_stages, forward_pruned, load_selectors,
                                        random_selectors)
from vitforge.sw.model.vit import PRESETS, forward, random_vit
from vitforge.sw.model.weights import (DIGITS_CALIBRATION_IMAGES, EMBEDDED_HP50_WEIGHTS,
                                       EMBEDDED_WEIGHTS)

from .accel.cosim import coverify

__all__ = ["load_model", "data_source", "load_pruning", "ModelRun", "run_model", "PRUNE_CHOICES",
           "DIGITS_MODELS", "RANDOM_MODELS"]

#: The digits models by name: the embedded one and its HP-pruned, fine-tuned version.
DIGITS_MODELS = {"tiny": EMBEDDED_WEIGHTS, "tiny-hp50": EMBEDDED_HP50_WEIGHTS}
#: Models of random weights by name: the presets' shapes, and ``tiny-random`` (the embedded
#: model's shape), whose seeds make quick regression farms.
RANDOM_MODELS = {**PRESETS, "tiny-random": PRESETS["tiny"]}
#: ``--prune`` takes one of these or a selector file.
PRUNE_CHOICES = ("none", "default")


def load_model(name, seed=0, data=None):
    """``(float_vit, calibration_images, test_images, test_labels)`` for a model name or file.

    ``data``, a :class:`~vitforge.sw.model.data.DataFiles`, gives the images
    (and labels, if the file has them) instead of the model's own.

    ``tiny`` is the embedded digits model and ``tiny-hp50`` the same HP-pruned
    to 50 % and fine-tuned (:data:`DIGITS_MODELS`); they, and a model file whose
    meta says ``"data": "digits"``, use real data: calibration on 200 training
    images, tests on the held-out split. Another preset name gives random
    weights and random images; a path loads ``.npz`` weights (with the HP
    patterns of a pruned model) or a timm checkpoint.
    """
    from vitforge.sw.model.timm_import import load_float_model_meta
    from vitforge.sw.model.weights import load_vit

    rng = np.random.default_rng(seed)
    if name in DIGITS_MODELS:
        vit, meta = load_vit(DIGITS_MODELS[name])
        meta = {**meta, "data": "digits"}
    elif name in RANDOM_MODELS:
        vit, meta = random_vit(RANDOM_MODELS[name], rng), {}
    else:
        path = Path(name)
        if not path.exists():
            names = ", ".join(dict.fromkeys([*DIGITS_MODELS, *RANDOM_MODELS]))
            raise ConfigError(f"model must be one of {names} or an existing .npz file, not "
                              f"{name!r}")
        vit, meta = load_float_model_meta(path)
    if data is not None:
        images = data.load(vit.shape)
        return vit, images.calibration, images.test, images.labels
    if meta.get("data") == "digits":
        return (vit, *_digits_data(vit, name))
    shape = vit.shape
    images = rng.uniform(0, 1, (24, shape.in_channels, shape.image_size, shape.image_size))
    return vit, images[:16], images[16:], None


def _digits_data(vit, name):
    """``(calibration_images, test_images, test_labels)`` of the digits split, upsampled to
    ``vit``'s image size."""
    from vitforge.sw.model.digits import digits_split
    from vitforge.sw.model.train_selectors import digits_inputs

    (train_images, _), (test_images, test_labels) = digits_split()
    try:
        return (digits_inputs(train_images[:DIGITS_CALIBRATION_IMAGES], vit.shape),
                digits_inputs(test_images, vit.shape), test_labels)
    except ValueError as error:
        raise ConfigError(f"model {name} says its data is 'digits', but {error}") from None


def load_pruning(prune, mode, name, vit, seed=0):
    """The float selectors and their config for ``--prune``/``--prune-mode``, or ``None``.

    ``prune`` is ``"none"`` (dense), ``"default"`` (the trained selectors
    shipped with the embedded ``tiny`` model, also for its HP-pruned ``tiny-hp50``:
    they are quantized on its features; random selectors at
    :func:`~vitforge.sw.model.selector.default_stages` for a preset with random
    weights) or a selector file (:func:`~vitforge.sw.model.selector.save_selectors`).
    ``mode`` (``threshold``/``topk``) overrides the selectors' own mode.
    """
    from vitforge.sw.model.weights import EMBEDDED_SELECTORS

    if mode is not None and mode not in MODES:
        raise ConfigError(f"prune-mode must be one of {', '.join(MODES)}, not {mode!r}")
    if prune in (None, "none"):
        if mode is not None:
            raise ConfigError(f"prune-mode {mode} needs --prune default or a selector file")
        return None
    if prune == "default":
        if name in DIGITS_MODELS:
            selectors, config = load_selectors(EMBEDDED_SELECTORS, vit.shape)
        elif name in RANDOM_MODELS:
            config = default_stages(vit.shape.depth)
            selectors = random_selectors(vit.shape, config, np.random.default_rng(seed + 1))
        else:
            raise ConfigError(f"prune default has selectors only for the embedded tiny model and "
                              f"the presets; for model file {name} give --prune FILE (selectors "
                              f"from python -m vitforge.sw.model.train_selectors)")
    elif Path(prune).is_file():
        selectors, config = load_selectors(Path(prune), vit.shape)
    else:
        raise ConfigError(f"prune must be one of {', '.join(PRUNE_CHOICES)} or a selector "
                          f".npz file, not {prune!r}")
    return selectors, replace(config, mode=mode or config.mode)


@dataclass
class ModelRun:
    model: str
    images: int
    bit_exact: bool
    error: int
    cycles: list                 # per simulated image
    class_cycles: dict           # summed over images
    section_cycles: dict         # per layer (compiler section), summed over images
    macs: int                    # per image (pruned: the blocks' at the kept counts, mean)
    array: int
    accelerator: AcceleratorConfig = None     # what ran
    float_accuracy: float = None
    int8_accuracy: float = None
    top1_agreement: float = None
    logit_cosine: float = None
    predictions: list = field(default_factory=list)   # (rtl, golden, float, label) per image
    mismatch: str = ""
    predicted_cycles: list = field(default_factory=list)  # the cycle model's, per image
    side_cycles: dict = field(default_factory=dict)   # per class, beside a GEMM (the model's)
    cycle_model_mismatch: str = ""       # where the cycle model and the counters differ
    # With token selection (``prune``): the stages, and per simulated image the same image
    # dense (cycles, summed per layer) and per stage its kept patch indices and tokens.
    prune: str = "none"
    prune_mode: str = None
    data: str = ""              # where the images came from (:func:`data_source`)
    stage_blocks: tuple = ()
    dense_cycles: list = field(default_factory=list)
    dense_section_cycles: dict = field(default_factory=dict)
    kept_patches: list = field(default_factory=list)
    kept_tokens: list = field(default_factory=list)
    dense_macs: int = 0
    # With HP-sparse weights: the sparse layers, their bytes stored and dense, and the layers
    # this array runs dense all the same (its width does not divide the pattern's).
    sparse_layers: int = 0
    weight_bytes: int = 0
    dense_weight_bytes: int = 0
    dense_fallback: tuple = ()
    # Why the simulated program's heads run one after another ("": they overlap).
    sequential_reason: str = ""
    dense_float_accuracy: float = None
    dense_int8_accuracy: float = None

    @property
    def utilization(self):
        return self.macs * self.images / (self.array ** 2) / sum(self.cycles)


def _add(totals, counts):
    for key, value in counts.items():
        totals[key] = totals.get(key, 0) + value


def _float_comparison(run, vit, golden, test_images, test_labels, logit_scale, pruning):
    """Accuracies and agreement of the golden logits ``golden`` against the float model."""
    if pruning is None:
        floats = forward(vit, test_images)
    else:
        floats, _ = forward_pruned(vit, test_images, *pruning)
    scores = logit_comparison(golden, logit_scale, floats, test_labels)
    run.top1_agreement, run.logit_cosine = scores["top1_agreement"], scores["logit_cosine"]
    if test_labels is not None:
        run.float_accuracy, run.int8_accuracy = scores["float_accuracy"], scores["int8_accuracy"]
    return floats


def data_source(data, calibration, test_images, test_labels):
    """Where a model's images come from, in words, for its summary."""
    if data is not None:
        where = f" (calibration: {data.calibration})" if data.calibration else ""
        return (f"{data.path}: {len(calibration)} calibration, {len(test_images)} test "
                f"images{where}")
    if test_labels is not None:
        return "the digits data set (scikit-learn): training images calibrate, held-out test"
    return "random uniform images (no --data given)"


def run_model(name, *, images=4, array=4, seed=0, compare_float=True, waves_to=None,
              log=None, progress=None, prune="none", prune_mode=None, data=None,
              observer="auto"):
    """Quantize model ``name``, run ``images`` test images on the RTL and the golden model.

    ``array`` is an :class:`AcceleratorConfig` to run on exactly (a preset's:
    the model must fit it), or an int: the size of the PE array of an
    accelerator whose scratchpads are sized to the model (the run's
    ``accelerator`` says which). The float and int8 accuracies use the whole
    test split (golden model, no simulation); RTL == golden is checked on the
    first ``images`` test images.
    ``waves_to`` receives a VCD trace of the first image; ``progress(done,
    total)`` is called as images finish. ``prune``/``prune_mode`` select
    tokens at run time (:func:`load_pruning`): each image then also runs dense
    on the same accelerator, so the report compares both from one run, and
    the accuracies are those of the pruned models (the dense ones beside them).
    ``data`` (:class:`~vitforge.sw.model.data.DataFiles`) gives the images instead
    of the model's own; ``observer`` is :func:`quantize_vit`'s.
    """
    if not isinstance(images, int) or images <= 0:
        raise ConfigError(f"images must be a positive integer, not {images!r}")
    vit, calibration, test_images, test_labels = load_model(name, seed, data)
    if images > len(test_images):
        raise ConfigError(f"images must be at most {len(test_images)} for model {name!r}, "
                          f"not {images}")
    pruning = load_pruning(prune, prune_mode, name, vit, seed)
    model = quantize_vit(vit, calibration, observer)
    shape = vit.shape
    selectors = None if pruning is None else quantize_selectors(vit, *pruning, calibration,
                                                                 model)
    config = array if isinstance(array, AcceleratorConfig) else config_for_model(
        model, array, selectors=selectors)

    def patches_of(image):
        return quantized_patches(model, image[None])[0]

    run = ModelRun(model=name, images=images, bit_exact=True, error=0, cycles=[],
                   class_cycles={}, section_cycles={}, macs=0, array=config.array,
                   accelerator=config, prune=str(prune),
                   prune_mode=None if pruning is None else pruning[1].mode,
                   stage_blocks=() if pruning is None else pruning[1].blocks,
                   data=data_source(data, calibration, test_images, test_labels))
    programs = _compile(config, model, selectors, name)
    if selectors is not None:
        run.dense_macs = programs["dense"].macs
    if compare_float:
        dense = np.array([vit_logits(model, patches_of(image)) for image in test_images])
        golden = dense if selectors is None else np.array(
            [vit_logits(model, patches_of(image), selectors=selectors) for image in test_images])
        floats = _float_comparison(run, vit, golden, test_images, test_labels,
                                   model.logit_scale, pruning)
        if selectors is not None and test_labels is not None:
            run.dense_int8_accuracy = float((dense.argmax(1) == test_labels).mean())
            run.dense_float_accuracy = float(
                (forward(vit, test_images).argmax(1) == test_labels).mean())
    run.macs = programs["dense"].macs
    _sparse_weights(run, model, programs["dense"])
    run.sequential_reason = next(iter(programs.values())).sequential_reason or ""
    macs = []               # pruned: the blocks' MACs at each image's kept counts
    block_macs = {}         # ... by the tokens of each block
    for index, image in enumerate(test_images[:images]):
        if progress:
            progress(index, images)
        patches = patches_of(image)
        for kind, program in programs.items():
            first = index == 0 and kind == next(iter(programs))
            report = coverify(program.with_input(patches), waves_to=waves_to if first else None,
                              log=log if first else None)
            run.bit_exact &= report.match
            run.error = run.error or report.error
            run.mismatch = run.mismatch or report.mismatch
            if kind == "dense" and selectors is not None:
                run.dense_cycles.append(report.cycles)
                _add(run.dense_section_cycles, report.section_cycles)
                continue
            run.cycles.append(report.cycles)
            run.predicted_cycles.append(report.predicted.cycles)
            run.cycle_model_mismatch = (run.cycle_model_mismatch
                                        or report.prediction_mismatch())
            _add(run.class_cycles, report.class_cycles)
            _add(run.side_cycles, report.predicted.side_cycles)
            _add(run.section_cycles, report.section_cycles)
            rtl, expected = report.rtl_output, report.golden_output
        if selectors is not None:
            _, kept = pruned_vit_logits(model, patches, selectors)
            run.kept_patches.append([indices.tolist() for indices in kept])
            run.kept_tokens.append(_token_counts(kept, shape.patches))
            counts = block_counts(run.stage_blocks, run.kept_tokens[-1], shape)
            if counts not in block_macs:        # top-k: every image alike
                block_macs[counts] = compile_model(config, model, block_tokens=counts).macs
            macs.append(block_macs[counts])
        label = None if test_labels is None else int(test_labels[index])
        float_class = int(floats[index].argmax()) if compare_float else None
        run.predictions.append((int(rtl.argmax()), int(expected.argmax()), float_class, label))
    if progress:
        progress(images, images)
    if macs:
        run.macs = round(sum(macs) / len(macs))
    return run


def _compile(config, model, selectors, name):
    """``{"dense": program}``, or with ``selectors`` ``{"pruned": ..., "dense": ...}``.

    Compiled before any image runs, so a model that does not fit ``config``
    fails at once.

    Raises
    ------
    vitforge.errors.ConfigError
        Naming the model, if it does not fit ``config``.
    """
    try:
        programs = {"pruned" if selectors is not None else "dense":
                    compile_model(config, model, selectors=selectors)}
        if selectors is not None:
            programs["dense"] = compile_model(config, model)
    except ConfigError as error:
        raise ConfigError(f"model {name} does not fit the {config.array}x{config.array} "
                          f"accelerator: {error}") from None
    return programs


def _sparse_weights(run, model, program):
    """Record ``model``'s HP-sparse layers in ``run``, and those ``program`` runs dense."""
    layers = [model.patch, model.head, *(getattr(block, name) for block in model.blocks
                                         for name in ("qkv", "proj", "fc1", "fc2"))]
    sparse = [layer.sparse for layer in layers if layer.sparse is not None]
    run.sparse_layers = len(sparse)
    run.weight_bytes = sum(weight.storage_bytes() for weight in sparse)
    run.dense_weight_bytes = sum(weight.dense_bytes() for weight in sparse)
    run.dense_fallback = tuple(program.dense_fallback)


def _token_counts(kept, patches):
    """The tokens after each stage of an image of ``patches`` patches: the class token, the
    kept patches and one package token per stage that dropped a patch."""
    counts, packages, alive = [], 0, patches
    for indices in kept:
        packages += len(indices) < alive
        alive = len(indices)
        counts.append(1 + alive + packages)
    return counts
