"""A whole quantized ViT on the accelerator: the main job behind simulate, verify and demo."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitforge.errors import ConfigError
from vitforge.sw.accel.compiler import compile_model, config_for_model
from vitforge.sw.golden.encoder import vit_logits
from vitforge.sw.model.quantize import quantize_tensor, quantize_vit
from vitforge.sw.model.vit import PRESETS, forward, patchify, random_vit

from .accel.cosim import coverify

__all__ = ["load_model", "ModelRun", "run_model"]


def load_model(name, seed=0):
    """``(float_vit, calibration_images, test_images, test_labels)`` for a model name or file.

    ``tiny`` is the embedded digits model (real data: calibration on 200
    training images, tests on the held-out split); another preset name gives
    random weights and random images; a path loads ``.npz`` weights.
    """
    from vitforge.sw.model.weights import EMBEDDED_WEIGHTS, load_vit

    rng = np.random.default_rng(seed)
    if name == "tiny":
        from vitforge.sw.model.digits import digits_split

        vit, _ = load_vit(EMBEDDED_WEIGHTS)
        (train_images, _), (test_images, test_labels) = digits_split()
        return vit, train_images[:200], test_images, test_labels
    if name in PRESETS:
        vit = random_vit(PRESETS[name], rng)
    else:
        path = Path(name)
        if not path.exists():
            raise ConfigError(f"model must be one of {', '.join(PRESETS)} or an existing .npz "
                              f"file, not {name!r}")
        from vitforge.sw.model.timm_import import load_float_model
        vit = load_float_model(path)
    shape = vit.shape
    images = rng.uniform(0, 1, (24, shape.in_channels, shape.image_size, shape.image_size))
    return vit, images[:16], images[16:], None


@dataclass
class ModelRun:
    model: str
    images: int
    bit_exact: bool
    error: int
    cycles: list                 # per simulated image
    class_cycles: dict           # summed over images
    section_cycles: dict         # per layer (compiler section), summed over images
    macs: int                    # per image
    array: int
    float_accuracy: float = None
    int8_accuracy: float = None
    top1_agreement: float = None
    logit_cosine: float = None
    predictions: list = field(default_factory=list)   # (rtl, golden, float, label) per image
    mismatch: str = ""

    @property
    def utilization(self):
        return self.macs * self.images / (self.array ** 2) / sum(self.cycles)


def run_model(name, *, images=4, array=4, seed=0, compare_float=True, waves_to=None,
              log=None, progress=None):
    """Quantize model ``name``, run ``images`` test images on the RTL and the golden model.

    The float and int8 accuracies use the whole test split (golden model, no
    simulation); RTL == golden is checked on the first ``images`` test images.
    ``waves_to`` receives a VCD trace of the first image; ``progress(done,
    total)`` is called as images finish.
    """
    if not isinstance(images, int) or images <= 0:
        raise ConfigError(f"images must be a positive integer, not {images!r}")
    vit, calibration, test_images, test_labels = load_model(name, seed)
    if images > len(test_images):
        raise ConfigError(f"images must be at most {len(test_images)} for model {name!r}, "
                          f"not {images}")
    model = quantize_vit(vit, calibration)
    shape = vit.shape
    config = config_for_model(model, array)

    def patches_of(image):
        return quantize_tensor(patchify(image[None], shape)[0], model.input_scale)

    run = ModelRun(model=name, images=images, bit_exact=True, error=0, cycles=[],
                   class_cycles={}, section_cycles={}, macs=0, array=array)
    if compare_float:
        golden = np.array([vit_logits(model, patches_of(image)) for image in test_images])
        floats = forward(vit, test_images)
        run.top1_agreement = float((golden.argmax(1) == floats.argmax(1)).mean())
        scaled = golden * model.logit_scale
        run.logit_cosine = float(np.mean(np.sum(scaled * floats, axis=1)
                                         / np.linalg.norm(scaled, axis=1)
                                         / np.linalg.norm(floats, axis=1)))
        if test_labels is not None:
            run.float_accuracy = float((floats.argmax(1) == test_labels).mean())
            run.int8_accuracy = float((golden.argmax(1) == test_labels).mean())
    compiled = compile_model(config, model)
    run.macs = compiled.macs
    for index, image in enumerate(test_images[:images]):
        if progress:
            progress(index, images)
        report = coverify(compiled.with_input(patches_of(image)),
                          waves_to=waves_to if index == 0 else None,
                          log=log if index == 0 else None)
        run.bit_exact &= report.match
        run.error = run.error or report.error
        run.mismatch = run.mismatch or report.mismatch
        run.cycles.append(report.cycles)
        for key, value in report.class_cycles.items():
            run.class_cycles[key] = run.class_cycles.get(key, 0) + value
        for key, value in report.section_cycles.items():
            run.section_cycles[key] = run.section_cycles.get(key, 0) + value
        label = None if test_labels is None else int(test_labels[index])
        float_class = int(floats[index].argmax()) if compare_float else None
        run.predictions.append((int(report.rtl_output.argmax()),
                                int(report.golden_output.argmax()), float_class, label))
    if progress:
        progress(images, images)
    return run

