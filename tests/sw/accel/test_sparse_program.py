"""Programs with HP-pruned (GEMM_SPARSE) layers on the golden interpreter == the dense golden model.

A sparse layer's ``weight`` is its decoded dense matrix, so the reference is the
ordinary integer model on those weights; the program must match it bit for bit.
"""

from dataclasses import replace

import numpy as np
import pytest

from vitforge.errors import ProgramError
from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.hw.accel.isa import (Instruction, Opcode, Space, encode,
                                   load_may_run_beside)
from vitforge.sw.accel.compiler import compile_blocks, compile_model, config_for_model
from vitforge.sw.accel.lowering import fuses_residual, sparse_weights, tile_cycles
from vitforge.sw.accel.memory import pack_entries, pack_sparse
from vitforge.sw.gemm.sparse import HPSparseWeight
from vitforge.sw.golden.accel.interpreter import Machine, run_program
from vitforge.sw.golden.encoder import encoder_block, linear, pruned_vit_logits, vit_logits
from vitforge.sw.gemm.sparse_problems import random_pattern
from vitforge.sw.model.quantized import QuantizedLinear
from vitforge.sw.model.quantized_selector import random_pruned_vit
from vitforge.sw.model.random_block import random_blocks, sparsify, sparsify_block
from vitforge.sw.model.selector import SelectorConfig
from vitforge.sw.model.vit import VitShape

CONFIG = AcceleratorConfig(array=4, act_depth=4096, wgt_depth=4096, prm_depth=1024,
                           lnp_depth=256, k_max=256)
#: Blocks of 8 rows: dim 32 has 4, hidden 64 has 8; each group keeps 2 blocks of 5 rows.
PATTERN = dict(cols=8, block_rows=8, kept_blocks=2, kept_rows=5)


def make_blocks(seed, tokens=17, dim=32, heads=2, hidden=64, count=1):
    rng = np.random.default_rng(seed)
    x, blocks, _ = random_blocks(rng, tokens=tokens, dim=dim, heads=heads, hidden=hidden,
                                 count=count)
    return rng, x, blocks


def reference(x, blocks):
    for block in blocks:
        x = encoder_block(x, block)
    return x


def run(program):
    machine = Machine(program.config, program.image)
    run_program(machine, program.program_addr)
    return program.result(machine.dram)


def opcodes(program):
    return [opcode for opcode, _ in program.instructions]


@pytest.mark.parametrize("seed, array", [(0, 4), (1, 8), (2, 8)])
def test_sparse_blocks_equal_the_reference(seed, array):
    rng, x, blocks = make_blocks(seed, count=2)
    blocks = [sparsify_block(rng, block, **PATTERN) for block in blocks]
    config = replace(CONFIG, array=array)
    program = compile_blocks(config, blocks, x)
    expected = reference(x, blocks)
    np.testing.assert_array_equal(run(program), expected, err_msg=f"seed {seed}, array {array}")
    assert np.unique(expected).size > 30, f"seed {seed}: degenerate result"
    assert opcodes(program).count(Opcode.GEMM_SPARSE) >= 2 * 4
    assert program.dense_fallback == ()
    dense = compile_blocks(config, [replace(block, **{name: replace(getattr(block, name),
                                                                   sparse=None)
                                                      for name in ("qkv", "proj", "fc1", "fc2")})
                                    for block in blocks], x)
    assert Opcode.GEMM_SPARSE not in opcodes(dense)
    assert program.dense_macs == dense.macs == dense.dense_macs
    # Each sparse layer reduces over 10 of dim = 32 (hidden = 64) rows.
    saved = 17 * ((32 - 10) * (3 * 32 + 32 + 64) + (64 - 10) * 32)
    assert program.macs == dense.macs - 2 * saved


def test_dense_and_sparse_layers_mix_in_one_program():
    rng, x, blocks = make_blocks(3, count=2)
    blocks = [sparsify_block(rng, blocks[0], layers=("fc1", "proj"), **PATTERN),
              sparsify_block(rng, blocks[1], layers=("qkv",), **PATTERN)]
    program = compile_blocks(CONFIG, blocks, x)
    np.testing.assert_array_equal(run(program), reference(x, blocks), err_msg="seed 3")
    sparse = [fields for opcode, fields in program.instructions if opcode == Opcode.GEMM_SPARSE]
    assert len(sparse) == 3 and opcodes(program).count(Opcode.LOAD_SPARSE) == 3
    assert {fields["depth"] for fields in sparse} == {32}
    assert {fields["k"] for fields in sparse} == {10}


def test_keeping_every_row_is_the_dense_program():
    rng, x, blocks = make_blocks(4)
    whole = dict(cols=4, block_rows=8, kept_blocks=4, kept_rows=8)
    sparse = [sparsify_block(rng, blocks[0], layers=("qkv", "proj", "fc1"), **whole)]
    assert all(np.array_equal(getattr(sparse[0], name).weight, getattr(blocks[0], name).weight)
               for name in ("qkv", "proj", "fc1"))
    # GEMM_SPARSE would take as many steps as GEMM (and load index records besides).
    program, dense = compile_blocks(CONFIG, sparse, x), compile_blocks(CONFIG, blocks, x)
    assert Opcode.GEMM_SPARSE not in opcodes(program)
    assert program.dense_fallback == ("block 0 qkv", "block 0 proj", "block 0 fc1")
    assert program.instructions == dense.instructions
    np.testing.assert_array_equal(run(program), reference(x, blocks), err_msg="seed 4")
    assert program.macs == program.dense_macs == dense.macs


def test_on_the_cascade_array_a_layer_runs_sparse_only_where_it_saves_steps():
    # Two steps of K per cycle: keeping half the rows (or more) is no faster than dense.
    rng, x, blocks = make_blocks(6)
    config = replace(CONFIG, macs_per_dsp=2, k_per_cycle=2)
    block = sparsify_block(rng, blocks[0], layers=("qkv", "fc1"), cols=4, block_rows=8,
                           kept_blocks=2, kept_rows=4)
    block = replace(block, fc1=sparsify(rng, block.fc1, cols=4, block_rows=8, kept_blocks=4,
                                        kept_rows=4))
    program = compile_blocks(config, [block], x)
    assert program.dense_fallback == ("block 0 fc1",)
    assert opcodes(program).count(Opcode.GEMM_SPARSE) >= 1
    np.testing.assert_array_equal(run(program), reference(x, [block]), err_msg="seed 6")


def _half_kept_layer(seed):
    """A 256 x 40 layer keeping 16 rows of each of its 8 blocks of 32 (half its rows)."""
    rng = np.random.default_rng(seed)
    dense = QuantizedLinear(rng.integers(-128, 128, (256, 40), dtype=np.int8),
                            np.zeros(40, np.int64), np.full(40, 1 << 14), np.full(40, 20))
    return sparsify(rng, dense, cols=40, block_rows=32, kept_blocks=8, kept_rows=16)


@pytest.mark.parametrize("m_tiles, residual, runs_sparse", [
    (1, False, True), (1, True, True),      # weight-bound: half the words to load
    (4, False, True), (4, True, False),     # the ADD it cannot fuse outweighs the saving
    (6, False, True), (6, True, False)])    # GEMM-bound: as many cycles, a shorter load
def test_on_the_cascade_array_half_the_rows_kept_runs_sparse_where_the_weights_bind(
        m_tiles, residual, runs_sparse):
    layer = _half_kept_layer(8)
    config = AcceleratorConfig(array=40, act_depth=4096, wgt_depth=4096, prm_depth=1024,
                               lnp_depth=256, k_max=512, macs_per_dsp=2, k_per_cycle=2,
                               act_read_ports=2)
    dense_load, dense_gemm = tile_cycles(config, layer, None, m_tiles)
    sparse = layer.sparse.for_cols(40).nonempty()
    sparse_load, sparse_gemm = tile_cycles(config, layer, sparse, m_tiles)
    # Two steps of K per cycle: the sparse GEMM takes as many steps; its load fewer words
    # (record bytes 8 x 17, then 128 entries of 40 bytes against 256).
    assert (dense_gemm, sparse_gemm) == (m_tiles * 128, m_tiles * 128)
    assert (dense_load, sparse_load) == (640, 8 * 17 + 320)
    chosen = sparse_weights(layer, config, m_tiles, residual)
    assert (chosen is not None) == runs_sparse, (m_tiles, residual)
    if residual:        # the plan and the lowering ask the same question
        assert fuses_residual(layer, 40 * m_tiles, config) == (not runs_sparse)


def test_a_fully_pruned_layer_gives_its_bias_path():
    rng, x, blocks = make_blocks(5)
    block = sparsify_block(rng, blocks[0], layers=("fc1",), cols=8, block_rows=8,
                           kept_blocks=0, kept_rows=3)
    assert not block.fc1.weight.any()
    program = compile_blocks(CONFIG, [block], x)
    np.testing.assert_array_equal(run(program), reference(x, [block]), err_msg="seed 5")
    (fields,) = [f for opcode, f in program.instructions if opcode == Opcode.GEMM_SPARSE]
    assert (fields["k"], fields["b_stride"], fields["depth"]) == (1, 1, 32)
    rows = linear(x, block.fc1)
    assert (rows == rows[0]).all()          # every token gets the same, requantized bias


def test_sparse_weights_that_load_longer_than_the_gemm_before_them_are_cut_into_chunks():
    """Four token tiles on a 32-lane array: a 36-entry column tile (two external words each,
    and 39 record bytes) loads in 111 cycles, its GEMM takes 144; the layers run as column
    chunks of whole tiles, each chunk's LOAD_SPARSE beside the GEMM before it."""
    rng, x, blocks = make_blocks(6, tokens=100, dim=64, hidden=256, count=2)
    pattern = dict(cols=64, block_rows=16, kept_blocks=3, kept_rows=12)
    blocks = [sparsify_block(rng, block, **pattern) for block in blocks]
    config = AcceleratorConfig(array=32, act_depth=8192, wgt_depth=16384, prm_depth=2048,
                               lnp_depth=256, k_max=512)
    program = compile_blocks(config, blocks, x)
    np.testing.assert_array_equal(run(program), reference(x, blocks), err_msg="seed 6")
    instructions = program.instructions
    sparse = [index for index, opcode in enumerate(opcodes(program))
              if opcode == Opcode.GEMM_SPARSE]
    assert len(sparse) > 2 * 4                      # more than one GEMM_SPARSE per layer
    beside = 0
    for index in sparse:
        following, fields = instructions[index + 1]
        if following == Opcode.LOAD_SPARSE:
            beside += 1
            gemm = Instruction(Opcode.GEMM_SPARSE, instructions[index][1])
            assert load_may_run_beside(Opcode.GEMM_SPARSE, gemm, Opcode.LOAD_SPARSE,
                                              Instruction(Opcode.LOAD_SPARSE, fields), 32), index
    assert beside > 2


def sparse_model(model, rng, pattern):
    """``model`` with every linear layer sparse, the patch embedding's and the head's too."""
    return replace(model, blocks=tuple(sparsify_block(rng, block, **pattern)
                                       for block in model.blocks),
                   patch=sparsify(rng, model.patch, **{**pattern, "kept_blocks": 1}),
                   head=sparsify(rng, model.head, **pattern))


# 25 patches, 4 blocks, 2 heads of 8 channels (as test_pruned_program.py).
SHAPE = VitShape(image_size=10, patch_size=2, in_channels=1, dim=16, depth=4, heads=2, mlp=32,
                 classes=3)
STAGES = SelectorConfig(blocks=(0, 2, 3), ratios=(0.7, 0.49, 0.1))
#: dim 16 has 4 blocks of 4 rows, 4 patch features 1; the head's 3 classes one padded group.
MODEL_PATTERN = dict(cols=8, block_rows=4, kept_blocks=2, kept_rows=3)


@pytest.mark.parametrize("mode, array, seed", [("threshold", 4, 1), ("topk", 8, 2)])
def test_sparse_weights_and_token_selectors_together(mode, array, seed):
    model, selectors, patches = random_pruned_vit(SHAPE, replace(STAGES, mode=mode), seed)
    model = sparse_model(model, np.random.default_rng(seed), MODEL_PATTERN)
    config = config_for_model(model, array, selectors=selectors)
    program = compile_model(config, model, selectors=selectors)
    plain = compile_model(config, model)
    first_select = opcodes(program).index(Opcode.TOKEN_SELECT)
    live = [fields["live"] for opcode, fields in program.instructions[first_select:]
            if opcode == Opcode.GEMM_SPARSE]
    if mode == "threshold":
        assert live and any(live) and not all(live)      # the head runs on one tile
    else:
        assert live and not any(live)       # top-k: the compiler knows every count
    for index, image in enumerate(patches):
        expected, kept = pruned_vit_logits(model, image, selectors)
        np.testing.assert_array_equal(
            run(program.with_input(image)), expected,
            err_msg=f"{mode}, array {array}, seed {seed}, image {index}: kept "
                    f"{[k.tolist() for k in kept]}")
        np.testing.assert_array_equal(run(plain.with_input(image)), vit_logits(model, image),
                                      err_msg=f"array {array}, seed {seed}, image {index}")


def test_an_array_that_does_not_divide_the_pattern_runs_the_layer_dense():
    rng, x, blocks = make_blocks(7)
    block = sparsify_block(rng, blocks[0], layers=("fc1", "fc2"), cols=12, block_rows=8,
                           kept_blocks=2, kept_rows=4)
    block = replace(block, proj=sparsify(rng, block.proj, **PATTERN))
    config = replace(CONFIG, array=8)
    program = compile_blocks(config, [block], x)
    np.testing.assert_array_equal(run(program), reference(x, [block]), err_msg="seed 7")
    assert program.dense_fallback == ("block 0 fc1", "block 0 fc2")
    assert opcodes(program).count(Opcode.GEMM_SPARSE) == 1         # proj's
    # On 4 lanes (which divides 12) all three run sparse.
    assert compile_blocks(CONFIG, [block], x).dense_fallback == ()


def test_load_sparse_bytes_are_records_then_values():
    rng = np.random.default_rng(8)
    pattern = random_pattern(rng, 20, 6, cols=4, block_rows=8, kept_blocks=2, kept_rows=3)
    weight = rng.integers(-128, 128, (20, 6)).astype(np.int8)
    sparse = HPSparseWeight.encode(np.where(pattern.mask(), weight, 0).astype(np.int8), pattern)
    raw = pack_sparse(sparse, CONFIG)
    tile = 16 + 6 * 16                          # one record word, 6 one-word entries
    assert len(raw) == 2 * tile
    for group in range(2):
        chunk = raw[group * tile:(group + 1) * tile]
        assert chunk[:16] == sparse.index_bytes()[group].tobytes()
        assert chunk[16:] == pack_entries(Space.WGT, sparse.values[group], CONFIG)
    with pytest.raises(ValueError, match=r"^weight must be pruned on groups of array=8 "
                                         r"columns, not 4$"):
        pack_sparse(sparse, replace(CONFIG, array=8))


SMALL = AcceleratorConfig(array=4, act_depth=64, wgt_depth=64, prm_depth=16, lnp_depth=16,
                          k_max=32)


def sparse_program(record, gemm):
    """LOAD_SPARSE of one tile (``record``: 16 bytes, 2 entries of 1 block x 2 rows) to WGT 0,
    then a GEMM_SPARSE with ``gemm``'s fields over the defaults."""
    fields = {**dict(a_addr=0, a_stride=8, b_addr=0, b_stride=2, c_addr=40, c_stride=4,
                     p_addr=0, k=2, m_tiles=1, n=4, depth=8), **gemm}
    words = [encode(Opcode.LOAD_SPARSE, dram_addr=6, spad_addr=0, tiles=1, blocks=1,
                    kept_rows=2, block_shift=fields.pop("block_shift", 3)),
             encode(Opcode.GEMM_SPARSE, **fields), encode(Opcode.DONE)]
    program = b"".join(word.to_bytes(32, "little") for word in words)     # external words 0..5
    return Machine(SMALL, program + bytes(record) + bytes(32))


@pytest.mark.parametrize("record, gemm, message", [
    ([0, 1, 7], {}, None),
    ([1, 0, 1], {}, r"^instruction 1 \(GEMM_SPARSE\): IDX entry 0 holds row 8, beyond "
                    r"depth=8$"),
    ([0, 1, 9], {}, r"^instruction 1 \(GEMM_SPARSE\): IDX entry 1 holds row 9, beyond "
                    r"depth=8$"),
    ([0, 1, 7], {"depth": 40, "a_stride": 40},
     r"^instruction 1 \(GEMM_SPARSE\): depth must be at most k_max=32, not 40$"),
    ([0, 1, 7], {"c_addr": 4}, r"^instruction 1 \(GEMM_SPARSE\): result words 4\.\.7 "
                               r"overlap operand A's words 0\.\.7$"),
    ([255, 0, 1], {"block_shift": 9}, r"^instruction 0 \(LOAD_SPARSE\): tile 0: row 130561 "
                                      r"\(\(block << block_shift\) \+ offset\) must be below "
                                      r"2\*\*16$"),
])
def test_the_interpreter_checks_sparse_indices(record, gemm, message):
    machine = sparse_program(record + [0] * 13, gemm)
    if message is None:
        run_program(machine, 0)
        np.testing.assert_array_equal(machine.idx[:2], [1, 7])
        return
    with pytest.raises(ProgramError, match=message):
        run_program(machine, 0)


def test_a_plain_load_into_idx_is_refused():
    words = [encode(Opcode.LOAD, space=Space.IDX, dram_addr=0, spad_addr=0, count=1)]
    machine = Machine(SMALL, b"".join(word.to_bytes(32, "little") for word in words))
    with pytest.raises(ProgramError, match=r"^instruction 0 \(LOAD\): a LOAD must not write "
                                           r"IDX \(LOAD_SPARSE fills it\)$"):
        run_program(machine, 0)
