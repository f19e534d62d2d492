"""Overlapped heads: each head's softmax beside a GEMM of the next head, on two ACT banks
(``Lowering.attention``), and the fallback to heads in turn where the banked plan does not
fit."""

from dataclasses import replace
import itertools
import re

import numpy as np
import pytest

from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.hw.accel.isa import (ROW_HOSTS, Instruction, Opcode, beside_refusal, decode,
                                   encode)
from vitforge.sim.accel.cosim import describe_mismatch
from vitforge.sw.accel.compiler import compile_blocks, compile_model, config_for, \
    config_for_model
from vitforge.sw.accel.cycles import SIDE_START_DELAY, predict, unit_cycles
from vitforge.sw.accel.emitter import Emitter
from vitforge.sw.accel.lowering import Lowering, _gemm_shape
from vitforge.sw.golden.accel.interpreter import Machine, run_program
from vitforge.sw.golden.encoder import encoder_blocks, vit_logits
from vitforge.sw.model.quantize import quantize_vit
from vitforge.sw.model.random_block import random_blocks
from vitforge.sw.model.vit import PRESETS, random_vit


def run(program):
    machine = Machine(program.config, program.image)
    run_program(machine, program.program_addr)
    return program.result(machine.dram), machine.dram


def instruction(opcode, fields):
    """The :class:`Instruction` as it executes, every field filled in."""
    return decode(encode(opcode, **fields))


def side_pairs(program):
    """``(host, side)`` for every instruction whose ``beside`` field is set; the host is
    the instruction before it, trace STOREs skipped."""
    computing = [(opcode, fields) for (opcode, fields), section
                 in zip(program.instructions, program.sections) if section != "trace"]
    return [(instruction(*host), instruction(*side)) for host, side
            in zip(computing, computing[1:]) if side[1].get("beside")]


def attention_order(program, block):
    """The instructions of ``block``'s heads, one letter each: K (copy of K^T), G (GEMM),
    Q (GEMM reading K in ACT: ``Q K^T`` with no copy), S (softmax), s (softmax beside the
    GEMM), V (transpose of V), and L for a load: after the last head (proj's weights, to
    run beside its P V GEMM) and, where proj adds the residual, LN2's parameters after head
    0's first Q K^T, which hosts no softmax (not the loads after a softmax piece beside a
    GEMM: those run in the far slot, ``tests/sw/accel/test_schedule.py``)."""
    letters = {Opcode.COPY_TO_WGT: "K", Opcode.GEMM: "G", Opcode.TRANSPOSE_TO_WGT: "V",
               Opcode.LOAD: "L"}
    # Not the loads beside a GEMM and the softmax piece beside it (the far slot).
    order = "".join("s" if fields.get("beside") else
                    "Q" if fields.get("b_act") else letters.get(opcode, "S")
                    for ((opcode, fields), section), (_, before) in zip(
                        zip(program.instructions, program.sections),
                        [(None, {}), *program.instructions])
                    if section == f"block {block} attention"
                    and opcode in (*letters, Opcode.SOFTMAX)
                    and not (opcode == Opcode.LOAD and before.get("beside")))
    # Not the QKV and proj GEMMs: from head 0's first instruction (its copy or Q K^T) to the
    # load after the last transpose.
    first = min(order.index(letter) for letter in "KQ" if letter in order)
    return order[first:order.index("L", order.rindex("V")) + 1]


def random_case(seed):
    """Random blocks of 2 to 4 heads on a random array, random stage token counts."""
    rng = np.random.default_rng(seed)
    array, heads, count = int(rng.choice([4, 8, 16])), int(rng.integers(2, 5)), 2
    dim = heads * int(rng.choice([4, 8, 12]))
    tokens = int(rng.integers(2, 50))
    x, blocks, _ = random_blocks(rng, tokens=tokens, dim=dim, heads=heads,
                                 hidden=2 * dim, count=count)
    counts = np.minimum.accumulate(rng.integers(1, tokens + 1, count))
    return x, blocks, array, tuple(int(n) for n in counts)


def beside_tiles(program, block):
    """Per SOFTMAX of ``block``'s attention, ``m_tiles`` if it runs beside the GEMM before
    it, else ``None``."""
    return [fields["m_tiles"] if fields.get("beside") else None
            for (opcode, fields), section in zip(program.instructions, program.sections)
            if section == f"block {block} attention" and opcode == Opcode.SOFTMAX]


@pytest.mark.parametrize("seed", range(12))
def test_each_softmax_runs_beside_the_hosts_between_its_scores_and_its_use(seed):
    x, blocks, array, block_tokens = random_case(seed)
    config = config_for(blocks, len(x), array, block_tokens=block_tokens)
    program = compile_blocks(config, blocks, x, block_tokens=block_tokens, trace=seed % 3 == 0)
    assert (program.overlap, program.sequential_reason) == (True, None)
    for host, side in side_pairs(program):
        # A softmax piece beside attention's GEMMs and moves, or a piece of the next
        # block's LN1 beside a token tile of FC2's last chunk.
        assert host.opcode in ROW_HOSTS and side.opcode in (Opcode.SOFTMAX, Opcode.LAYERNORM)
        if side.opcode == Opcode.LAYERNORM:
            assert (host.opcode, host.m_tiles, host.residual, side.m_tiles) == (
                Opcode.GEMM, 1, 1, 1)
        assert beside_refusal(host, side, array, config.act_bank_start) is None
    # Q K^T of head 0 (reading K in ACT: no copy), maybe in two GEMMs with the first piece
    # of its softmax beside the second, LN2's parameters loaded after the first; then the
    # hosts of each head's softmax, each maybe with a piece of it: head 1's Q K^T (and
    # before it, in the early schedule, head 0's V transpose); per head h > 0 head h + 1's
    # Q K^T and head h - 1's V transpose and P V;
    # for the last head the transpose and P V of the head before it and its own transpose;
    # the last P V and proj's load.
    heads = blocks[0].heads
    letters = {"scores": "Q", "values": "V", "product": "G"}
    patterns = ["QL?(Qs)?" + "".join(f"{letters[kind]}s?" for steps in schedule
                                   for kind, _ in steps) + "GL"
                for schedule in (Lowering.attention_schedule(heads, early)
                                 for early in (False, True)[:heads - 1])]
    assert patterns[0] == "QL?(Qs)?Qs?" + "Qs?Vs?Gs?" * (heads - 2) + "Vs?Gs?Vs?GL"
    for index, tokens in enumerate(block_tokens):
        order = attention_order(program, index)
        assert any(re.fullmatch(pattern, order) for pattern in patterns), (order, patterns)
        tiles = beside_tiles(program, index)
        assert None not in tiles and sum(tiles) == heads * -(-tokens // array), tiles
    result, dram = run(program)
    np.testing.assert_array_equal(result, encoder_blocks(x, blocks, block_tokens),
                                  err_msg=f"seed {seed}")
    if program.trace:
        assert describe_mismatch(program, dram, dram) == ""


def test_a_deit_head_s_softmax_is_split_where_it_hides_best():
    """DeiT-T's shape on 40 lanes, one ACT read port: 197 tokens in 5 tiles; a K^T copy
    takes 323 cycles, Q K^T 1,649, a V transpose 443, P V 2,015; a softmax of 1 to 5 tiles
    728, 1,394, 2,060, 2,726 or 3,392 (a maxima pass per tile, and each instruction fills
    its exp table: with one read port no piece resumes). Head 0 has head 1's copy and
    Q K^T to hide behind (1 + 4 tiles would outlast them by 1,500 cycles), and its own
    Q K^T split in two GEMMs of 2 and 3 token tiles (689 and 1,009 cycles, 49 more than
    one): 1 tile beside the second, then 1 + 3 outlast their hosts by 836. Head 1 has head
    2's copy and Q K^T and head 0's transpose and P V: 2 tiles beside Q K^T and 3 beside P V
    outlast them by 55. Head 2 has head 1's transpose and P V and its own transpose: 1 + 3
    + 1 tiles."""
    rng = np.random.default_rng(1)
    x, blocks, _ = random_blocks(rng, tokens=197, dim=192, heads=3, hidden=16, count=1)
    config = replace(config_for(blocks, len(x), 40), act_read_ports=1)
    program = compile_blocks(config, blocks, x)
    assert beside_tiles(program, 0) == [1, 1, 3, 2, 3, 1, 3, 1]
    assert attention_order(program, 0) == "KGGsKsGsKGsVGsVsGsVsGL"
    sequential = compile_blocks(replace(config, act_banks=1), blocks, x)
    assert predict(sequential).cycles - predict(program).cycles > 3 * 3392 - 1649 - 2015


def test_a_deit_head_0_s_softmax_hides_behind_its_values_where_that_loses_less(monkeypatch):
    """DeiT-T's shape on the cascade array (two steps of K per cycle), two ACT read ports:
    no K^T copies (Q K^T reads K in ACT), so head 0's softmax has only head 1's Q K^T
    after its own; the early schedule moves head 0's V transpose before it (one tile
    beside it), which loses fewer cycles than the other schedule, and the result is the
    golden blocks'. Proj adds the residual, so LN2's parameters load after the first piece
    of head 0's Q K^T."""
    rng = np.random.default_rng(1)
    x, blocks, _ = random_blocks(rng, tokens=197, dim=192, heads=3, hidden=16, count=1)
    config = replace(config_for(blocks, len(x), 40), macs_per_dsp=2, k_per_cycle=2)
    program = compile_blocks(config, blocks, x)
    assert attention_order(program, 0) == "QLQsVsQsQsGsVsGsVsGL"
    assert beside_tiles(program, 0) == [1, 1, 3, 2, 3, 1, 3, 1]
    np.testing.assert_array_equal(run(program)[0], encoder_blocks(x, blocks))
    late = Lowering.attention_schedule
    monkeypatch.setattr(Lowering, "attention_schedule",
                        staticmethod(lambda heads, early=False: late(heads)))
    other = compile_blocks(config, blocks, x)
    assert attention_order(other, 0) == "QLQsQsQsVsGsVsGsVsGL"
    assert predict(program).cycles < predict(other).cycles


def test_the_early_schedule_moves_only_head_0_s_values():
    assert Lowering.attention_schedule(4) == [
        [("scores", 1)],
        [("scores", 2), ("values", 0), ("product", 0)],
        [("scores", 3), ("values", 1), ("product", 1)],
        [("values", 2), ("product", 2), ("values", 3)]]
    assert Lowering.attention_schedule(4, early=True) == [
        [("values", 0), ("scores", 1)],
        [("scores", 2), ("product", 0)],
        [("scores", 3), ("values", 1), ("product", 1)],
        [("values", 2), ("product", 2), ("values", 3)]]


@pytest.mark.parametrize("hosts", [(323, 1649), (323, 1649, 812, 2015), (812, 2015, 812),
                                   (5000, 10, 10), (10, 10, 10, 10), (1400, 1400, 60, 1400)])
def test_the_softmax_split_is_the_best_of_every_split(hosts):
    """Against every way of cutting 5 tiles into len(hosts) pieces, counted one by one: no
    split outlasts its hosts by fewer cycles, and none that ties has fewer instructions."""
    rng = np.random.default_rng(1)
    x, blocks, _ = random_blocks(rng, tokens=197, dim=192, heads=3, hidden=16, count=1)
    lowering = Lowering(config_for(blocks, len(x), 40), None, None, 192)
    lowering.tokens, lowering.token_tiles = 197, 5
    assert lowering.config.act_read_ports == 2
    softmax = {resume: [unit_cycles(lowering.config, Instruction(Opcode.SOFTMAX, dict(
        m_tiles=count, length=197, resume=resume))) for count in range(6)] for resume in (0, 1)}

    def cost(counts):
        # Every piece after the first resumes from the one before it.
        stall = sum(max(0, SIDE_START_DELAY + softmax[int(sum(counts[:index]) > 0)][count]
                        - host)
                    for index, (count, host) in enumerate(zip(counts, hosts)) if count)
        return stall, sum(1 for count in counts if count)

    every = [counts for counts in itertools.product(range(6), repeat=len(hosts))
             if sum(counts) == 5]
    split = lowering.softmax_pieces(hosts)
    counts = tuple(0 if piece is None else piece[1] - piece[0] for piece in split)
    starts = [piece[0] for piece in split if piece is not None]
    assert starts == sorted(starts) and sum(counts) == 5
    assert cost(counts) == min(cost(other) for other in every), (split, hosts)


@pytest.mark.parametrize("hosts", [(323, 1045), (323, 1649), (10, 10), (5000, 5000), (1045,),
                                   (10,)])
def test_head_0_splits_its_own_scores_where_that_loses_fewest_cycles(hosts):
    """Head 0's softmax beside head 1's copy and Q K^T (``hosts``; Q K^T alone where K is
    read in ACT), and perhaps a first piece beside the second part of its own Q K^T:
    against every split point and every way of cutting the rest, counted one by one, none
    loses fewer cycles (stalls and the second GEMM's), and none that ties has fewer
    instructions."""
    rng = np.random.default_rng(2)
    x, blocks, _ = random_blocks(rng, tokens=197, dim=192, heads=3, hidden=16, count=1)
    lowering = Lowering(config_for(blocks, len(x), 40), None, None, 192)
    lowering.tokens, lowering.token_tiles = 197, 5
    config = lowering.config

    def gemm(m_tiles):
        return unit_cycles(config, _gemm_shape(64, m_tiles, 197))

    def stall(first, count, host):
        softmax = unit_cycles(config, Instruction(Opcode.SOFTMAX, dict(
            m_tiles=count, length=197, resume=int(first > 0))))
        return max(0, SIDE_START_DELAY + softmax - host)

    def cost(done, counts):
        lost, first, pieces = 0, done, int(done > 0)
        if done:
            lost += gemm(done + 1) + gemm(4 - done) - gemm(5) + stall(0, done, gemm(4 - done))
        for count, host in zip(counts, hosts):
            if count:
                lost, pieces = lost + stall(first, count, host), pieces + 1
            first += count
        return lost, pieces

    every = [(done, counts) for done in range(4)
             for counts in itertools.product(range(6), repeat=len(hosts))
             if done + sum(counts) == 5]
    chosen, _ = lowering.first_head_split(blocks[0], hosts)
    counts = lowering.best_split(hosts, chosen)[1]
    assert cost(chosen, counts) == min(cost(*other) for other in every), (chosen, counts)


def test_a_whole_model_overlaps_its_heads():
    rng = np.random.default_rng(3)
    model = quantize_vit(random_vit(PRESETS["tiny"], rng, scale=0.2),
                         rng.uniform(0, 1, (4, 1, 8, 8)))
    image = rng.integers(-128, 128, (model.shape.patches, model.shape.patch_features),
                         dtype=np.int8)
    program = compile_model(config_for_model(model, 4), model, image)
    assert program.overlap and side_pairs(program)
    np.testing.assert_array_equal(run(program)[0], vit_logits(model, image))


def make_blocks(heads):
    x, blocks, _ = random_blocks(np.random.default_rng(heads), tokens=17, dim=32, heads=heads,
                                 hidden=64, count=2)
    return x, blocks


#: 17 tokens (5 tiles of 4), C = 32: the unbanked plan needs 1450 ACT words.
CONFIG = AcceleratorConfig(array=4, act_depth=4096, wgt_depth=2048, prm_depth=512,
                           lnp_depth=64, k_max=64)


@pytest.mark.parametrize("heads, changes, reason", [
    (2, dict(act_banks=1), "act_banks=1"),
    # Bank 1 holds words 2048..2111, too few for two buffers of scores (2 x 85 words).
    (2, dict(act_depth=2112), "the banked plan does not fit: activation region scores needs "
                              "ACT words 2048..2217, beyond act_depth=2112"),
    # Bank 0 holds words 0..1023: qkv (480 words), two buffers of probabilities (170), x and
    # normalized (160 each) leave too few for x1, which proj writes in attention (its
    # residual sum); it goes after context (bank 1 from 1024) and ends beyond ACT.
    (2, dict(act_depth=1500), "the banked plan does not fit: activation region x1 needs "
                              "ACT words 1354..1513, beyond act_depth=1500"),
    (1, {}, "every block has one head"),
])
def test_heads_run_in_turn_where_they_cannot_overlap(heads, changes, reason):
    x, blocks = make_blocks(heads)
    program = compile_blocks(replace(CONFIG, **changes), blocks, x)
    assert (program.overlap, program.sequential_reason) == (False, reason)
    assert program.plan.bank_start is None and not side_pairs(program)
    for index in range(len(blocks)):
        # Proj adds the residual: LN2's parameters load after head 0's Q K^T.
        assert attention_order(program, index) == "QLSVG" + "QSVG" * (heads - 1) + "L"
    np.testing.assert_array_equal(run(program)[0], encoder_blocks(x, blocks))


def test_a_side_instruction_that_may_not_run_beside_is_a_compiler_error():
    emit = Emitter(CONFIG, trace=False)
    emit(Opcode.GELU, src=0, dst=0, count=4)
    with pytest.raises(RuntimeError, match=r"^compiler error: SOFTMAX\(.*\) is to run beside "
                                           r"instruction 0 \(GELU\(.*\)\), but the instruction "
                                           r"before it is GELU, not one of \['GEMM', "
                                           r"'GEMM_SPARSE', 'COPY_TO_WGT', "
                                           r"'TRANSPOSE_TO_WGT'\]$"):
        emit(Opcode.SOFTMAX, src=2048, src_stride=4, dst=0, dst_stride=4, m_tiles=1, length=4,
             ratio=1000, alpha=100, beta=40000, gamma=20000, probability_shift=1, beside=1)
    assert [opcode for opcode, _ in emit.instructions] == [Opcode.GELU]


def test_softmax_beside_goes_before_the_trace_store_of_its_gemm():
    emit = Emitter(CONFIG, trace=True)
    gemm = dict(a_addr=0, a_stride=4, b_addr=0, b_stride=4, c_addr=2048, c_stride=4, p_addr=0,
                k=4, m_tiles=1, n=4)
    emit(Opcode.GEMM, **gemm)
    emit(Opcode.SOFTMAX, src=2052, src_stride=4, dst=100, dst_stride=4, m_tiles=1, length=4,
         ratio=1000, alpha=100, beta=40000, gamma=20000, probability_shift=1, beside=1)
    assert [opcode for opcode, _ in emit.instructions] == [Opcode.GEMM, Opcode.SOFTMAX,
                                                           Opcode.STORE, Opcode.STORE]
    assert [(entry.index, entry.act_addr) for entry in emit.traced] == [(0, 2048), (1, 100)]
    assert emit.sections == [None, None, "trace", "trace"]
