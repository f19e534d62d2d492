"""Token selection on the accelerator in Verilator: pruned models bit for bit, live counts
(threshold) and overlapped heads on known ones (top-k)."""

import numpy as np
import pytest

from vitforge.hw.accel.accelerator import ERROR_NONE
from vitforge.hw.accel.isa import Opcode
from vitforge.sim.accel.cosim import coverify
from vitforge.sw.accel.compiler import compile_model, config_for_model
from vitforge.sw.golden.encoder import pruned_vit_logits
from vitforge.sw.model.quantized_selector import random_pruned_vit
from vitforge.sw.model.selector import SelectorConfig
from vitforge.sw.model.vit import VitShape

pytestmark = pytest.mark.verilator

# 25 patches (26 tokens, not a multiple of the array), 3 blocks, 2 heads of 8 channels; a
# stage before block 0 and a live one before block 2.
SHAPE = VitShape(image_size=10, patch_size=2, in_channels=1, dim=16, depth=3, heads=2, mlp=32,
                 classes=3)


@pytest.mark.parametrize("mode, seed", [("threshold", 5), ("topk", 6)])
def test_pruned_models_match_the_golden_model_on_the_rtl(mode, seed):
    config = SelectorConfig(blocks=(0, 2), ratios=(0.6, 0.2), mode=mode)
    model, selectors, patches = random_pruned_vit(SHAPE, config, seed, images=2)
    accelerator = config_for_model(model, 4, selectors=selectors)
    kept_counts = []
    for index, image in enumerate(patches):
        # The first image also stores every intermediate result and compares it.
        program = compile_model(accelerator, model, image, selectors=selectors,
                                trace=index == 0)
        report = coverify(program)
        expected, kept = pruned_vit_logits(model, image, selectors)
        assert (report.done, report.error) == (True, ERROR_NONE)
        assert report.match, f"{mode}, seed {seed}, image {index}: {report.mismatch}"
        np.testing.assert_array_equal(report.rtl_output, expected,
                                      err_msg=f"{mode}, seed {seed}, image {index}")
        # The cycle model (sw/accel/cycles.py) predicts every counter exactly.
        assert not report.prediction_mismatch(), report.prediction_mismatch()
        assert report.class_cycles["select"] > 0
        assert {"select 0", "select 1"} <= set(report.section_cycles)
        kept_counts.append([len(stage) for stage in kept])
    if mode == "threshold":
        assert kept_counts[0] != kept_counts[1], kept_counts
    else:
        assert kept_counts == [[15, 5], [15, 5]]
    flagged = [fields.get("live", 0) for opcode, fields in program.instructions
               if opcode == Opcode.GEMM]
    if mode == "threshold":
        assert 0 in flagged and any(flagged), "live and fixed GEMMs mixed in one program"
    else:
        # Top-k counts are the compiler's to know: nothing live, heads overlapped.
        assert not any(flagged) and program.overlap, program.sequential_reason
