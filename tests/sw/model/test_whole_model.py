"""Weights files, the embedded digits model, and the whole-model compile."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from vitforge.hw.accel.isa import Opcode, Space
from vitforge.sw.accel.compiler import compile_model, config_for_model
from vitforge.sw.golden.accel.interpreter import Machine, run_program
from vitforge.sw.golden.encoder import vit_logits
from vitforge.sw.model.digits import digits_split
from vitforge.sw.model.quantize import quantize_tensor, quantize_vit
from vitforge.sw.model.vit import PRESETS, forward, patchify, random_vit
from vitforge.sw.model.weights import EMBEDDED_WEIGHTS, load_vit, save_vit

DATA = Path(__file__).parent / "data"


def test_weights_round_trip(tmp_path):
    vit = random_vit(PRESETS["tiny"], np.random.default_rng(0))
    save_vit(tmp_path / "m.npz", vit, {"note": "x"})
    loaded, meta = load_vit(tmp_path / "m.npz")
    assert meta["note"] == "x" and loaded.shape == vit.shape
    images = np.random.default_rng(1).uniform(0, 1, (3, 1, 8, 8))
    np.testing.assert_allclose(forward(loaded, images), forward(vit, images), atol=1e-5)


def test_malformed_weight_files_are_rejected(tmp_path):
    vit = random_vit(PRESETS["tiny"], np.random.default_rng(0))
    path = tmp_path / "m.npz"
    save_vit(path, vit)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    broken = dict(arrays, **{"blocks.1.fc1_weight": np.zeros((32, 64), np.float32)})
    np.savez(tmp_path / "shape.npz", **broken)
    with pytest.raises(ValueError, match=r"key 'blocks\.1\.fc1_weight' has shape \(32, 64\), "
                                         r"expected \(32, 128\)$"):
        load_vit(tmp_path / "shape.npz")
    missing = {k: v for k, v in arrays.items() if k != "head_bias"}
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(ValueError, match=r"key 'head_bias' is missing \(expected shape "
                                         r"\(10,\)\)$"):
        load_vit(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not a model")
    with pytest.raises(ValueError, match=r"text\.npz is not a vitforge model file"):
        load_vit(tmp_path / "text.npz")


def test_digits_split_is_fixed():
    (train, train_labels), (test, test_labels) = digits_split()
    assert train.shape == (1438, 1, 8, 8) and test.shape == (359, 1, 8, 8)
    assert 0 <= train.min() and train.max() <= 1
    again = digits_split()
    np.testing.assert_array_equal(again[1][1], test_labels)


def test_embedded_model_keeps_its_accuracy_in_int8():
    vit, meta = load_vit(EMBEDDED_WEIGHTS)
    (train, _), (test, labels) = digits_split()
    model = quantize_vit(vit, train[:200])
    floats = forward(vit, test).argmax(1)
    integers = np.array([vit_logits(model, quantize_tensor(patchify(image[None], vit.shape)[0],
                                                           model.input_scale)).argmax()
                         for image in test])
    float_accuracy = (floats == labels).mean()
    assert float_accuracy == pytest.approx(meta["float_test_accuracy"])
    assert float_accuracy > 0.9
    assert (integers == labels).mean() >= float_accuracy - 0.01       # the goal


def random_model(seed, images=14):
    """A random ``tiny`` model calibrated on 10 images, and the patches of the others."""
    rng = np.random.default_rng(seed)
    vit = random_vit(PRESETS["tiny"], rng, scale=0.2)
    pictures = rng.uniform(0, 1, (images, 1, 8, 8))
    model = quantize_vit(vit, pictures[:10])
    return model, [quantize_tensor(patchify(picture[None], vit.shape)[0], model.input_scale)
                   for picture in pictures[10:]]


def run_logits(program):
    machine = Machine(program.config, program.image)
    run_program(machine, program.program_addr)
    return program.result(machine.dram)


@pytest.mark.parametrize("array", [4, 8])
def test_compiled_model_equals_the_direct_integer_model(array):
    """Compiled once; each image's patches are patched into the image."""
    model, images = random_model(3)
    program = compile_model(config_for_model(model, array), model)
    for index, patches in enumerate(images):
        np.testing.assert_array_equal(run_logits(program.with_input(patches)),
                                      vit_logits(model, patches), err_msg=f"image {index}")


@pytest.mark.parametrize("shifts", [(1, 3), (2, 0)])
def test_every_probability_scale_compiles_to_the_direct_integer_model(shifts):
    model, images = random_model(5, images=12)
    model = replace(model, blocks=tuple(replace(block, probability_shift=shift)
                                        for block, shift in zip(model.blocks, shifts)))
    program = compile_model(config_for_model(model, 4), model)
    for index, patches in enumerate(images):
        np.testing.assert_array_equal(run_logits(program.with_input(patches)),
                                      vit_logits(model, patches),
                                      err_msg=f"image {index}, shifts {shifts}")


def test_patched_inputs_give_the_image_of_a_fresh_compile():
    model, (first, second) = random_model(6, images=12)
    config = config_for_model(model, 4)
    program = compile_model(config, model, first)
    for patches in (first, second):
        assert program.with_input(patches).image == compile_model(config, model, patches).image
    assert compile_model(config, model).with_input(second) == \
        compile_model(config, model, second)
    with pytest.raises(ValueError, match=r"^patches must be int8 of shape \(16, 4\), not "
                                         r"int8 of shape \(17, 4\)$"):
        program.with_input(np.zeros((17, 4), np.int8))


@pytest.mark.parametrize("block_tokens", [(17, 9), (13, 1), (4, 4)])
def test_later_stages_on_fewer_tokens_keep_the_class_token(block_tokens):
    """Block ``i`` runs on the first ``block_tokens[i]`` tokens; the class token is row 0."""
    model, images = random_model(7, images=12)
    config = config_for_model(model, 4)
    program = compile_model(config, model, block_tokens=block_tokens)
    full = compile_model(config, model)
    # The counts are operands: the same instructions, except that fewer token tiles may cut
    # a layer into more column chunks (GEMMs and their weight loads), a head's softmax
    # into other pieces beside other hosts (their cycles change with the count), and the
    # next block's LN1 into one LayerNorm per token tile of that block, beside FC2's last
    # chunk split by token tiles where this block has two tiles or more (the parameters
    # loading in pieces beside them).
    def others(compiled):
        return [opcode for opcode, fields in compiled.instructions
                if opcode not in (Opcode.GEMM, Opcode.SOFTMAX, Opcode.LAYERNORM)
                and not (opcode == Opcode.LOAD
                         and fields["space"] in (Space.WGT, Space.PRM, Space.LNP))]
    assert others(program) == others(full)
    # Each block's two LayerNorms normalize its own token tiles, the final one the class
    # token's tile.
    normalized = sum(fields["m_tiles"] for opcode, fields in program.instructions
                     if opcode == Opcode.LAYERNORM)
    assert normalized == sum(2 * -(-tokens // 4) for tokens in block_tokens) + 1
    assert program.macs < full.macs
    for index, patches in enumerate(images):
        np.testing.assert_array_equal(run_logits(program.with_input(patches)),
                                      vit_logits(model, patches, block_tokens=block_tokens),
                                      err_msg=f"image {index}, stages {block_tokens}")


def test_quantized_model_round_trips_through_one_file(tmp_path):
    from vitforge.sw.model.quantized_io import load_quantized, save_quantized

    rng = np.random.default_rng(4)
    vit = random_vit(PRESETS["tiny"], rng, scale=0.2)
    images = rng.uniform(0, 1, (12, 1, 8, 8))
    model = quantize_vit(vit, images[:10])
    # Finer attention probabilities in block 1 (issue 14): stored and compiled too.
    model = replace(model, blocks=(model.blocks[0], replace(model.blocks[1],
                                                            probability_shift=2)))
    save_quantized(tmp_path / "q.npz", model)
    loaded = load_quantized(tmp_path / "q.npz")
    assert loaded.shape == model.shape and loaded.input_scale == model.input_scale
    assert [block.probability_shift for block in loaded.blocks] == [
        model.blocks[0].probability_shift, 2]
    assert loaded.activation_scales == model.activation_scales
    assert {"tokens", "0.scores", "1.x2", "logits"} <= set(loaded.activation_scales)
    for image in images[10:]:
        patches = quantize_tensor(patchify(image[None], vit.shape)[0], model.input_scale)
        np.testing.assert_array_equal(vit_logits(loaded, patches), vit_logits(model, patches))
    config = config_for_model(model, 4)
    assert compile_model(config, loaded, patches).image == \
        compile_model(config, model, patches).image


def test_files_with_the_class_token_last_are_converted():
    """A format-1 file (class token last) written by the code of that format.

    ``tiny_int8_format1.npz`` is the embedded digits model quantized on 16
    calibration images and saved by vitforge before the class token moved to
    row 0; ``..._io.npz`` holds three images' patch features and the logits
    that code computed for them.
    """
    from vitforge.sw.model.quantized_io import load_quantized

    model = load_quantized(DATA / "tiny_int8_format1.npz")
    assert model.activation_scales is None            # files before issue 14 have none
    assert [block.probability_shift for block in model.blocks] == [0, 0]
    with np.load(DATA / "tiny_int8_format1_io.npz") as saved:
        patches, logits = saved["patches"], saved["logits"]
    config = config_for_model(model, 4)
    for image, (features, expected) in enumerate(zip(patches, logits)):
        np.testing.assert_array_equal(vit_logits(model, features), expected,
                                      err_msg=f"image {image}")
        program = compile_model(config, model, features)
        machine = Machine(config, program.image)
        run_program(machine, program.program_addr)
        np.testing.assert_array_equal(program.result(machine.dram), expected,
                                      err_msg=f"image {image}, compiled")


def test_malformed_quantized_files_are_rejected(tmp_path):
    from vitforge.sw.model.quantized_io import load_quantized

    vit = random_vit(PRESETS["tiny"], np.random.default_rng(0))
    save_vit(tmp_path / "float.npz", vit)
    with pytest.raises(ValueError, match=r"float\.npz has format 'vitforge-float-vit-2', "
                                         r"expected 'vitforge-int8-vit-4'$"):
        load_quantized(tmp_path / "float.npz")
