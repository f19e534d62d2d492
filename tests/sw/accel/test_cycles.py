"""The cycle model (``sw/accel/cycles.py``) on hand-made programs.

The Verilator co-verification tests check it against the hardware counters on
compiled programs (dense, packed, sparse, pruned); these check the
controller's rules one at a time, with the arithmetic written out.
"""

import numpy as np

from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.hw.accel.isa import Opcode, Space, decode, encode
from vitforge.hw.gemm.descriptor import GemmDescriptor
from vitforge.sw.accel.compiler import compile_model, config_for_model
from vitforge.sw.accel.cycles import (FETCH_CYCLES, ISSUE_CYCLES, SIDE_START_DELAY, predict,
                                     program_cycles)
from vitforge.sw.gemm.plan import command_cycles
from vitforge.sw.model.quantized_selector import random_pruned_vit
from vitforge.sw.model.selector import SelectorConfig
from vitforge.sw.model.vit import VitShape

CONFIG = AcceleratorConfig(array=4, act_depth=1024, wgt_depth=1024, prm_depth=64, lnp_depth=64,
                           k_max=64)
#: Controller cycles of an instruction fetched in FETCH, and of one fetched ahead (7 and 4).
FETCHED, AHEAD = FETCH_CYCLES + ISSUE_CYCLES, ISSUE_CYCLES
GEMM = dict(a_addr=0, a_stride=8, b_addr=0, b_stride=8, c_addr=100, c_stride=8, p_addr=0,
            k=8, m_tiles=2, n=8)


def program(*words):
    return [decode(encode(opcode, **fields)) for opcode, fields in words]


def gemm_cycles(**fields):
    """The engine's busy cycles, then the C words' register stage and ``done``."""
    return command_cycles(CONFIG.gemm, GemmDescriptor.from_fields({**GEMM, **fields})) + 2


def load(space, spad_addr, count):
    return Opcode.LOAD, dict(space=space, dram_addr=0, spad_addr=spad_addr, count=count)


def test_fetch_issue_and_a_weight_load_beside_a_gemm():
    gemm = gemm_cycles()                       # the engine's busy cycles and done
    long_load = gemm                           # outlasts the GEMM by the side start delay
    instructions = program(
        load(Space.ACT, 0, 16),                                 # FETCHED + (16 + 2)
        (Opcode.GEMM, GEMM),                  # FETCHED + SIDE_START_DELAY + long_load + 2
        load(Space.WGT, 512, long_load),                        # beside: no cycles of its own
        (Opcode.GELU, dict(src=100, dst=100, count=16)),        # FETCHED + (16 + 8),
                                                                # fetches the GEMM
        (Opcode.GEMM, GEMM),                                    # AHEAD + gemm, fetches ADD
        (Opcode.ADD, dict(x=100, y=100, dst=200, count=16, x_multiplier=1, y_multiplier=1,
                          shift=0)),                            # AHEAD + (16 + 8)
        (Opcode.DONE, {}))                                      # AHEAD
    stall = SIDE_START_DELAY + long_load + 2 - gemm
    predicted = program_cycles(CONFIG, instructions)
    assert predicted.class_cycles == {"fetch": 3 * FETCHED + 3 * AHEAD, "load_store": 18,
                                      "gemm": 2 * gemm, "softmax": 0, "layernorm": 0,
                                      "eltwise": 24 + 24, "move": 0, "select": 0,
                                      "stall": stall}
    assert predicted.cycles == sum(predicted.class_cycles.values())
    # The counter reads one less than the cycles elapsed when an instruction retires.
    retired = np.cumsum([FETCHED + 18, FETCHED + gemm + stall, 0, FETCHED + 24,
                         AHEAD + gemm, AHEAD + 24]) - 1
    retired[2] = 0
    assert predicted.retired_at[:6] == retired.tolist()


def test_a_load_the_gemm_reads_waits_and_nop_retires_at_dispatch():
    instructions = program((Opcode.GEMM, GEMM),
                           load(Space.WGT, 8, 4),               # GEMM's B: not beside it
                           (Opcode.NOP, {}), (Opcode.DONE, {}))
    predicted = program_cycles(CONFIG, instructions)
    assert predicted.class_cycles["fetch"] == FETCHED + AHEAD + 2 * FETCHED
    assert predicted.class_cycles["load_store"] == 4 + 2
    assert predicted.class_cycles["stall"] == 0
    assert predicted.cycles == FETCHED + gemm_cycles() + AHEAD + 6 + 2 * FETCHED


def test_a_pruned_program_is_predicted_at_its_run_time_token_counts():
    shape = VitShape(image_size=8, patch_size=2, in_channels=1, dim=32, depth=2, heads=2,
                     mlp=64, classes=3)
    model, selectors, patches = random_pruned_vit(
        shape, SelectorConfig(blocks=(1,), ratios=(0.3,), mode="threshold"), 3, images=1)
    config = config_for_model(model, 4, selectors=selectors)
    pruned = compile_model(config, model, patches[0], selectors=selectors)
    predicted = predict(pruned)
    as_written = program_cycles(config, pruned.instructions)      # every token kept
    assert predicted.class_cycles["select"] > 0
    assert predicted.class_cycles["gemm"] < as_written.class_cycles["gemm"], \
        (predicted.class_cycles, as_written.class_cycles)
    dense = compile_model(config, model, patches[0])
    assert predict(dense) == program_cycles(config, dense.instructions)
