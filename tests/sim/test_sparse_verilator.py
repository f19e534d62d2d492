"""HP sparse weights on the accelerator in Verilator: LOAD_SPARSE and GEMM_SPARSE bit for bit,
mixed with dense layers and with token selection, and the GEMM cycles they save."""

from dataclasses import replace

import numpy as np
import pytest

from vitforge.hw.accel.accelerator import ERROR_NONE
from vitforge.hw.accel.isa import Opcode
from vitforge.sim.accel.cosim import coverify
from vitforge.sw.accel.compiler import compile_blocks, compile_model, config_for, \
    config_for_model
from vitforge.sw.golden.encoder import encoder_block, pruned_vit_logits
from vitforge.sw.model.quantized_selector import random_pruned_vit
from vitforge.sw.model.random_block import random_blocks, sparsify, sparsify_block
from vitforge.sw.model.selector import SelectorConfig
from vitforge.sw.model.vit import VitShape

pytestmark = pytest.mark.verilator

ARRAY = 4
#: dim 32 in 4 blocks of 8 rows, hidden 64 in 8; 2 blocks of 4 rows kept: 50 % / 75 % sparse.
PATTERN = dict(cols=8, block_rows=8, kept_blocks=2, kept_rows=4)


def _opcodes(program):
    return [opcode for opcode, _ in program.instructions]


def test_sparse_and_dense_layers_match_the_golden_model_and_save_gemm_cycles():
    seed = 11
    rng = np.random.default_rng(seed)
    x, blocks, _ = random_blocks(rng, tokens=13, dim=32, heads=2, hidden=64, count=2)
    # Block 0 wholly sparse; block 1 mixes a sparse fc2 with dense layers.
    sparse = [sparsify_block(rng, blocks[0], **PATTERN),
              replace(blocks[1], fc2=sparsify(rng, blocks[1].fc2, **PATTERN))]
    config = config_for(sparse, 13, ARRAY)
    program = compile_blocks(config, sparse, x, trace=True)
    dense = compile_blocks(config, blocks, x)
    assert _opcodes(program).count(Opcode.GEMM_SPARSE) >= 5
    assert _opcodes(program).count(Opcode.LOAD_SPARSE) >= 5
    report = coverify(program)
    assert (report.done, report.error) == (True, ERROR_NONE)
    assert report.match, f"seed {seed}: {report.mismatch}"
    expected = x
    for block in sparse:
        expected = encoder_block(expected, block)
    np.testing.assert_array_equal(report.rtl_output, expected, err_msg=f"seed {seed}")
    dense_report = coverify(dense)
    assert dense_report.match, f"seed {seed}: {dense_report.mismatch}"
    # The cycle model (sw/accel/cycles.py) predicts every counter exactly.
    assert not report.prediction_mismatch(), report.prediction_mismatch()
    assert report.class_cycles["gemm"] < dense_report.class_cycles["gemm"], \
        (report.class_cycles, dense_report.class_cycles)


# The zcu102 preset's DSP48E2 cascade (two steps of K per cycle) as well as one step.
@pytest.mark.parametrize("overrides", [{}, {"macs_per_dsp": 2, "k_per_cycle": 2}])
def test_sparse_weights_with_token_selection_match_the_golden_model(overrides):
    shape = VitShape(image_size=8, patch_size=2, in_channels=1, dim=32, depth=2, heads=2,
                     mlp=64, classes=3)
    seed = 4
    model, selectors, patches = random_pruned_vit(
        shape, SelectorConfig(blocks=(1,), ratios=(0.5,), mode="threshold"), seed, images=1)
    rng = np.random.default_rng(seed)
    model = replace(model, blocks=tuple(sparsify_block(rng, block, **PATTERN)
                                        for block in model.blocks))
    config = replace(config_for_model(model, ARRAY, selectors=selectors), **overrides)
    program = compile_model(config, model, patches[0], selectors=selectors)
    live = [fields["live"] for opcode, fields in program.instructions
            if opcode == Opcode.GEMM_SPARSE]
    assert any(live) and not all(live), live
    report = coverify(program)
    expected, kept = pruned_vit_logits(model, patches[0], selectors)
    assert (report.done, report.error) == (True, ERROR_NONE)
    assert report.match, f"seed {seed}, {overrides}: {report.mismatch}"
    np.testing.assert_array_equal(report.rtl_output, expected,
                                  err_msg=f"seed {seed}, {overrides}, kept "
                                          f"{[k.tolist() for k in kept]}")
    assert not report.prediction_mismatch(), report.prediction_mismatch()
