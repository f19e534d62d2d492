"""What a design point runs: the study's model, quantized once per worker, with or without
token pruning at given keep ratios, compiled once per accelerator.

Everything here is cached per process (a local worker, a Ray worker, or the
command itself, whose cache forked workers inherit), keyed by what it depends
on, so a worker quantizes the model once and points that differ only in
clock or AXI settings share one compilation.
"""

from dataclasses import dataclass, replace

import numpy as np

from vitforge.errors import ConfigError

__all__ = ["Study", "loaded_model", "program", "accuracy", "model_sized", "keep_ratios"]


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


#: (model, seed, data, observer) -> (float ViT, calibration, quantized model, test, labels).
_MODELS = {}
#: (model key, keep ratios) -> QuantizedSelectors, or the ConfigError of bad ratios.
_SELECTORS = {}
#: (model key, keep ratios, AcceleratorConfig) -> CompiledProgram or ConfigError.
_PROGRAMS = {}
#: (model key, keep ratios) -> int8 top-1 on the test split, or None without labels.
_ACCURACIES = {}


def _key(study):
    return study.model, study.seed, study.data, study.observer


def loaded_model(study):
    """``(vit, calibration_images, quantized_model, test_images, test_labels)``."""
    key = _key(study)
    if key not in _MODELS:
        from vitforge.sim.model_run import load_model
        from vitforge.sw.model.quantize import quantize_vit

        vit, calibration, test_images, test_labels = load_model(study.model, study.seed,
                                                                study.data)
        _MODELS[key] = (vit, calibration, quantize_vit(vit, calibration, study.observer),
                        test_images, test_labels)
    return _MODELS[key]


def keep_ratios(value):
    """A space's ``keep`` value as a tuple of ratios, or ``None`` for ``"none"`` (dense)."""
    return None if value in (None, "none") else tuple(float(ratio) for ratio in value)


def _selectors(study, keep):
    """The study's selectors quantized for ``keep`` (``topk`` at those ratios), or ``None``
    for a dense point.

    Raises
    ------
    vitforge.errors.ConfigError
        If the ratios do not suit the selectors (one per stage, in (0, 1], not increasing).
    """
    if keep is None:
        return None
    key = _key(study), keep
    if key not in _SELECTORS:
        from vitforge.sim.model_run import load_pruning
        from vitforge.sw.model.quantized_selector import quantize_selectors

        vit, calibration, model, _, _ = loaded_model(study)
        try:
            selectors, config = load_pruning(study.prune, "topk", study.model, vit, study.seed)
            stages = len(config.blocks)
            if len(keep) != stages:
                raise ConfigError(f"keep must have one ratio per selector stage ({stages}, "
                                  f"before blocks {list(config.blocks)}), not {list(keep)}")
            config = replace(config, ratios=keep)
            _SELECTORS[key] = quantize_selectors(vit, selectors, config, calibration, model)
        except ConfigError as error:
            _SELECTORS[key] = error
    if isinstance(_SELECTORS[key], ConfigError):
        raise _SELECTORS[key]
    return _SELECTORS[key]


def program(study, keep, accelerator):
    """The study's model (pruned at ``keep``) compiled for ``accelerator``.

    Raises
    ------
    vitforge.errors.ConfigError
        If the model does not fit ``accelerator``, or ``keep`` does not suit the selectors.
    """
    from vitforge.sw.accel.compiler import compile_model

    selectors = _selectors(study, keep)
    key = _key(study), keep, accelerator
    if key not in _PROGRAMS:
        try:
            _PROGRAMS[key] = compile_model(accelerator, loaded_model(study)[2],
                                           selectors=selectors)
        except ConfigError as error:
            _PROGRAMS[key] = error
    if isinstance(_PROGRAMS[key], ConfigError):
        raise _PROGRAMS[key]
    return _PROGRAMS[key]


def accuracy(study, keep=None):
    """The int8 golden model's top-1 on the study's test split (pruned at ``keep``), or
    ``None`` without labels. The hardware is bit-exact, so it is every point's accuracy."""
    key = _key(study), keep
    if key not in _ACCURACIES:
        from vitforge.sw.golden.encoder import pruned_vit_logits, vit_logits
        from vitforge.sw.model.quantize import quantized_patches

        _, _, model, images, labels = loaded_model(study)
        if labels is None:
            _ACCURACIES[key] = None
        else:
            selectors = _selectors(study, keep)
            logits = [vit_logits(model, patches) if selectors is None else
                      pruned_vit_logits(model, patches, selectors)[0]
                      for patches in quantized_patches(model, images)]
            _ACCURACIES[key] = float(np.mean(np.argmax(logits, axis=1) == labels))
    return _ACCURACIES[key]


def model_sized(study, keep=None):
    """``array -> AcceleratorConfig`` sized to the study's model (and its selectors at
    ``keep``): what a space's ``"model"`` values take."""
    from vitforge.sw.accel.compiler import config_for_model

    return lambda array: config_for_model(loaded_model(study)[2], array,
                                          selectors=_selectors(study, keep))
