"""The residual ADDs as the GEMMs' write-back (GEMM ``residual``), compiled: which layers
fuse, the program against the golden model, and what it saves against the ADDs."""

from dataclasses import replace

import numpy as np

from vitforge.hw.accel.isa import Instruction, Opcode, Space
from vitforge.sw.accel.compiler import compile_model, config_for_model
from vitforge.sw.accel.cycles import program_cycles
from vitforge.sw.accel.lowering import fuses_residual
from vitforge.sw.golden.accel.interpreter import Machine, run_program
from vitforge.sw.golden.encoder import vit_logits
from vitforge.sw.model.quantize import quantize_vit
from vitforge.sw.model.vit import PRESETS, random_vit


def _model_and_image(seed):
    rng = np.random.default_rng(seed)
    model = quantize_vit(random_vit(PRESETS["tiny"], rng, scale=0.2),
                         rng.uniform(0, 1, (4, 1, 8, 8)))
    image = rng.integers(-128, 128, (model.shape.patches, model.shape.patch_features),
                         dtype=np.int8)
    return model, image


def _logits(program):
    machine = Machine(program.config, program.image)
    run_program(machine, program.program_addr)
    return program.result(machine.dram)


def _residual_gemms(program):
    return [Instruction(opcode, fields) for opcode, fields in program.instructions
            if opcode == Opcode.GEMM and fields.get("residual")]


def test_two_read_ports_add_every_residual_in_a_gemm_and_equal_the_golden_model():
    """The patch embedding's position table and both residuals of every block: each
    column chunk of the layer adds its own columns of the residual; no ADD is left, and
    the logits are the golden model's bit for bit."""
    model, image = _model_and_image(7)
    config = config_for_model(model, 4)
    assert config.act_read_ports == 2
    assert fuses_residual(model.blocks[0].proj, model.shape.tokens, config)
    program = compile_model(config, model, image)
    opcodes = [opcode for opcode, _ in program.instructions]
    assert Opcode.ADD not in opcodes
    fused = _residual_gemms(program)
    # The patch GEMM adds the position table (x1), proj the block's source (x or x2), FC2
    # x1 (proj's sum): each residual lies in one of those regions.
    regions = [program.plan.region(Space.ACT, name) for name in ("x1", "x", "x2")]
    inside = [next((region.name for region in regions
                    if region.start <= gemm.r_addr < region.end), None) for gemm in fused]
    assert None not in inside and set(inside) == {"x1", "x", "x2"}, inside
    np.testing.assert_array_equal(_logits(program), vit_logits(model, image),
                                  err_msg="seed 7, residuals in the GEMMs")


def test_one_read_port_keeps_the_adds_and_the_fused_program_saves_their_cycles():
    """With one read port each residual is an ADD of its own (2 per block, 1 for the
    position table); with two, those cycles go, and both programs give the same logits."""
    model, image = _model_and_image(8)
    two = config_for_model(model, 4)
    one = replace(two, act_read_ports=1)
    fused, unfused = compile_model(two, model, image), compile_model(one, model, image)
    adds = [opcode for opcode, _ in unfused.instructions].count(Opcode.ADD)
    assert adds == 2 * len(model.blocks) + 1 and not _residual_gemms(unfused)
    assert len(_residual_gemms(fused)) >= adds
    np.testing.assert_array_equal(_logits(fused), _logits(unfused), err_msg="seed 8")
    cycles = [program_cycles(program.config, [Instruction(*item) for item in
                                              program.instructions])
              for program in (fused, unfused)]
    assert cycles[0].class_cycles["eltwise"] == 0 < cycles[1].class_cycles["eltwise"]
