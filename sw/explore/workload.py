"""What a design point runs: the study's model, quantized once per worker, HP-pruned to a
sparsity and pruning tokens at keep ratios where the point asks, compiled once per
accelerator.

Everything here is cached per process (a local worker, a Ray worker, or the
command itself, whose cache forked workers inherit), keyed by what it depends
on, so a worker quantizes each model variant once and points that differ only
in clock or AXI settings share one compilation.
"""

from dataclasses import dataclass, replace

import numpy as np

from vitforge.errors import ConfigError

__all__ = ["Study", "Variant", "variant_of", "loaded_model", "variant_models", "selectors_for",
           "program", "accuracy", "model_sized"]


@dataclass(frozen=True)
class Study:
    """What an exploration evaluates: the model on a board, from a base config.

    Attributes
    ----------
    model : str
        A model name or file, as ``simulate --model`` takes it.
    board : str
    base : ShellConfig
        The board preset whose fields a point does not name.
    seed : int
        Of a preset's random weights and images.
    data : DataFiles or None
        ``--data`` and its options.
    observer : str
        How activations are calibrated (:func:`~vitforge.sw.model.quantize.quantize_vit`).
    prune : str
        Where the token selectors of a point's ``keep`` ratios come from, as
        ``simulate --prune`` takes it (``default`` or a selector file).
    """

    model: str
    board: str
    base: object
    seed: int = 0
    data: object = None
    observer: str = "auto"
    prune: str = "default"


@dataclass(frozen=True)
class Variant:
    """How a point changes the study's model: token pruning at ``keep`` ratios (``None``:
    dense), and HP weight sparsity ``sparsity`` (0: dense) in column groups of ``cols``
    (the point's array, so that the sparse layers run sparse on it)."""

    keep: tuple = None
    sparsity: float = 0.0
    cols: int = None


def variant_of(point, array):
    """The :class:`Variant` of a space point (its ``keep`` and ``sparsity``) on ``array``."""
    keep = point.get("keep", "none")
    sparsity = float(point.get("sparsity", 0))
    return Variant(keep=None if keep == "none" else tuple(float(ratio) for ratio in keep),
                   sparsity=sparsity, cols=array if sparsity else None)


#: (model, seed, data, observer) -> (float ViT, calibration, quantized model, test, labels).
_MODELS = {}
#: (model key, sparsity, cols) -> (float ViT, quantized model), HP-pruned.
_PRUNED = {}
#: (model key, variant) -> QuantizedSelectors, or the ConfigError of bad ratios.
_SELECTORS = {}
#: (model key, variant, AcceleratorConfig) -> CompiledProgram or ConfigError.
_PROGRAMS = {}
#: (model key, variant) -> int8 top-1 on the test split, or None without labels.
_ACCURACIES = {}


def _key(study):
    return study.model, study.seed, study.data, study.observer


def loaded_model(study, log=None):
    """``(vit, calibration_images, quantized_model, test_images, test_labels)``; ``log``
    receives a line when the model is loaded and its quantization starts."""
    key = _key(study)
    if key not in _MODELS:
        from vitforge.sim.model_run import load_model
        from vitforge.sw.model.quantize import quantize_vit

        vit, calibration, test_images, test_labels = load_model(study.model, study.seed,
                                                                study.data)
        if log:
            log(f"quantizing {study.model} on {len(calibration)} calibration images")
        _MODELS[key] = (vit, calibration, quantize_vit(vit, calibration, study.observer),
                        test_images, test_labels)
    return _MODELS[key]


def variant_models(study, variant):
    """``(float ViT, quantized model)`` of the study's model HP-pruned to the variant's
    sparsity (by magnitude, no fine-tuning), or the model itself at sparsity 0."""
    vit, calibration, model, _, _ = loaded_model(study)
    if not variant.sparsity:
        return vit, model
    key = _key(study), variant.sparsity, variant.cols
    if key not in _PRUNED:
        from vitforge.sw.model.hp_prune import prune_vit
        from vitforge.sw.model.quantize import quantize_vit

        pruned = prune_vit(vit, variant.sparsity, cols=variant.cols)
        _PRUNED[key] = pruned, quantize_vit(pruned, calibration, study.observer)
    return _PRUNED[key]


def selectors_for(study, variant):
    """The study's selectors quantized for the variant's ``keep`` ratios (``topk``), or
    ``None`` for a point without token pruning.

    Raises
    ------
    vitforge.errors.ConfigError
        If the ratios do not suit the selectors (one per stage, in (0, 1], not increasing).
    """
    if variant.keep is None:
        return None
    key = _key(study), variant
    if key not in _SELECTORS:
        from vitforge.sim.model_run import load_pruning
        from vitforge.sw.model.quantized_selector import quantize_selectors

        vit, model = variant_models(study, variant)
        calibration = loaded_model(study)[1]
        try:
            selectors, config = load_pruning(study.prune, "topk", study.model, vit, study.seed)
            stages = len(config.blocks)
            if len(variant.keep) != stages:
                raise ConfigError(f"keep must have one ratio per selector stage ({stages}, "
                                  f"before blocks {list(config.blocks)}), not "
                                  f"{list(variant.keep)}")
            config = replace(config, ratios=variant.keep)
            _SELECTORS[key] = quantize_selectors(vit, selectors, config, calibration, model)
        except ConfigError as error:
            _SELECTORS[key] = error
    if isinstance(_SELECTORS[key], ConfigError):
        raise _SELECTORS[key]
    return _SELECTORS[key]


def program(study, variant, accelerator):
    """The study's model as the variant changes it, compiled for ``accelerator``.

    Raises
    ------
    vitforge.errors.ConfigError
        If the model does not fit ``accelerator``, or ``keep`` does not suit the selectors.
    """
    from vitforge.sw.accel.compiler import compile_model

    selectors = selectors_for(study, variant)
    key = _key(study), variant, accelerator
    if key not in _PROGRAMS:
        try:
            _PROGRAMS[key] = compile_model(accelerator, variant_models(study, variant)[1],
                                           selectors=selectors)
        except ConfigError as error:
            _PROGRAMS[key] = error
    if isinstance(_PROGRAMS[key], ConfigError):
        raise _PROGRAMS[key]
    return _PROGRAMS[key]


def accuracy(study, variant=Variant()):
    """The int8 golden model's top-1 on the study's test split as the variant changes the
    model, or ``None`` without labels. The hardware is bit-exact, so it is every point's
    accuracy."""
    key = _key(study), variant
    if key not in _ACCURACIES:
        from vitforge.sw.golden.encoder import pruned_vit_logits, vit_logits
        from vitforge.sw.model.quantize import quantized_patches

        _, _, _, images, labels = loaded_model(study)
        if labels is None:
            _ACCURACIES[key] = None
        else:
            model = variant_models(study, variant)[1]
            selectors = selectors_for(study, variant)
            logits = [vit_logits(model, patches) if selectors is None else
                      pruned_vit_logits(model, patches, selectors)[0]
                      for patches in quantized_patches(model, images)]
            _ACCURACIES[key] = float(np.mean(np.argmax(logits, axis=1) == labels))
    return _ACCURACIES[key]


def model_sized(study, point=None):
    """``array -> AcceleratorConfig`` sized to the study's model as ``point`` (its ``keep``
    and ``sparsity``) changes it on that array: what a space's ``"model"`` values take."""
    from vitforge.sw.accel.compiler import config_for_model

    def sized(array):
        variant = variant_of(point or {}, array)
        return config_for_model(variant_models(study, variant)[1], array,
                                selectors=selectors_for(study, variant))

    return sized
