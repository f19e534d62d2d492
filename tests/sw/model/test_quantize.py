"""Float ViT model and post-training quantization of its encoder blocks."""

import numpy as np
import pytest

from vitforge.sw.accel.compiler import compile_blocks, config_for
from vitforge.sw.golden.accel.interpreter import Machine, run_program
from vitforge.sw.golden.encoder import encoder_blocks
from vitforge.sw.model.calibration import Calibration
from vitforge.sw.model.quantize import quantize_block, quantize_tensor
from vitforge.sw.model.vit import PRESETS, VitShape, forward, patchify, random_vit

SHAPE = PRESETS["tiny"]


def test_presets_have_the_deit_token_counts():
    assert PRESETS["deit-tiny"].tokens == 197 and PRESETS["deit-small"].dim == 384
    assert PRESETS["tiny"].tokens == 17


def test_patchify_orders_channel_row_column_within_row_major_patches():
    shape = VitShape(image_size=4, patch_size=2, in_channels=2, dim=4, depth=1, heads=1,
                     mlp=4, classes=2)
    images = np.arange(2 * 4 * 4, dtype=float).reshape(1, 2, 4, 4)
    patches = patchify(images, shape)
    assert patches.shape == (1, 4, 8)
    # Patch 1 is the top-right 2x2 block: channel 0 rows 0-1 cols 2-3, then channel 1.
    assert patches[0, 1].tolist() == [2, 3, 6, 7, 18, 19, 22, 23]


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_size=10, patch_size=4), r"^image_size must be a multiple of patch_size=4, "
                                        r"not 10$"),
    (dict(dim=30, heads=4), r"^dim must be a multiple of heads=4, not 30$"),
    (dict(depth=0), r"^depth must be a positive integer, not 0$"),
])
def test_bad_shapes_are_rejected(kwargs, message):
    settings = dict(image_size=8, patch_size=2, in_channels=1, dim=32, depth=2, heads=2,
                    mlp=64, classes=10)
    settings.update(kwargs)
    with pytest.raises(ValueError, match=message):
        VitShape(**settings)


def quantized_model(seed):
    rng = np.random.default_rng(seed)
    vit = random_vit(SHAPE, rng, scale=0.2)
    images = rng.uniform(0, 1, (16, 1, 8, 8))
    calibration = Calibration.of(vit, images[:12])
    scales = calibration.scales()
    input_scale = scales["tokens"]
    blocks, scale = [], input_scale
    for index, block in enumerate(vit.blocks):
        quantized, scale = quantize_block(block, SHAPE.heads, scales.__getitem__, index, scale,
                                          probability_shift=calibration.probability_shift(index))
        blocks.append(quantized)
    held_out = {}
    forward(vit, images[12:], record=held_out)
    return blocks, input_scale, scale, held_out


def test_int8_blocks_track_the_float_blocks():
    seed = 0
    blocks, input_scale, output_scale, held_out = quantized_model(seed)
    for image in range(4):
        y = encoder_blocks(quantize_tensor(held_out["tokens"][image], input_scale), blocks)
        expected = held_out[f"{SHAPE.depth - 1}.x2"][image]
        got = y * output_scale
        cosine = (got * expected).sum() / np.linalg.norm(got) / np.linalg.norm(expected)
        assert cosine > 0.99, f"seed {seed}, image {image}: cosine {cosine:.4f}"


def test_quantized_blocks_compile_and_run_bit_exactly():
    blocks, input_scale, _, held_out = quantized_model(1)
    x = quantize_tensor(held_out["tokens"][0], input_scale)
    config = config_for(blocks, SHAPE.tokens, 4)
    program = compile_blocks(config, blocks, x)
    machine = Machine(config, program.image)
    run_program(machine, program.program_addr)
    np.testing.assert_array_equal(program.read_output(machine.dram), encoder_blocks(x, blocks))
