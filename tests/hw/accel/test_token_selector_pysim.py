"""TOKEN_SELECT and TOKEN_MEAN (``TokenSelector``) alone in Amaranth's simulator vs the golden."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from vitforge.hw.accel.isa import SELECT_MODES, Opcode, encode
from vitforge.hw.accel.rounding_divider import RoundingDivider
from vitforge.hw.accel.token_selector import DENOMINATOR_BITS, NUMERATOR_BITS, TokenSelector, \
    mean_cycles, select_cycles
from vitforge.hw.numerics import SIGMOID_ONE
from vitforge.sim.accel.unit_bench import golden_after, random_machine, run_and_compare, \
    small_config
from vitforge.sw.golden.selector import round_div

THRESHOLD, TOPK = SELECT_MODES.index("threshold"), SELECT_MODES.index("topk")
ACT_DEPTH = 512


def machine_with_tables(config, seed, keep_table=None, weight_table=None):
    """A random machine; random SIG tables (Q0.15, 0 .. 1.0) unless given."""
    rng = np.random.default_rng(seed)
    machine = random_machine(config, rng)
    machine.sigmoid[:] = rng.integers(0, SIGMOID_ONE + 1, machine.sigmoid.shape)
    if keep_table is not None:
        machine.sigmoid[:256] = keep_table
    if weight_table is not None:
        machine.sigmoid[256:] = weight_table
    return machine, rng


def layout_select(config, base, tokens, alive, heads, channels, keep=0, mode=THRESHOLD):
    """A TOKEN_SELECT with its regions packed from word ``base``: (word, shape, end)."""
    lanes = config.array
    tiles = -(-tokens // lanes)
    src, src_stride = base, channels + 1
    scores, scores_stride = src + tiles * src_stride, heads + 2
    weights = scores + (alive + lanes) // lanes * scores_stride
    dst, dst_stride = weights + heads + 1, channels + 2
    end = dst + tiles * dst_stride
    assert end <= config.act_depth
    word = encode(Opcode.TOKEN_SELECT, src=src, src_stride=src_stride, dst=dst,
                  dst_stride=dst_stride, channels=channels, scores=scores,
                  scores_stride=scores_stride, weights=weights, heads=heads, tokens=tokens,
                  alive=alive, keep=keep, mode=mode)
    return word, (tokens, alive, heads, channels, mode), end


def run_selects(config, machine, cases, err_msg):
    """Run TOKEN_SELECTs (``cases``: keyword dicts of :func:`layout_select`), check all."""
    words, shapes, base = [], [], 0
    for case in cases:
        word, shape, base = layout_select(config, base, **case)
        words.append(word)
        shapes.append(shape)
    runs = run_and_compare(TokenSelector(config), machine, words, err_msg=err_msg,
                           max_cycles=20_000)
    for index, (run, expected, shape) in enumerate(zip(runs, golden_after(machine, words),
                                                       shapes)):
        what = f"{err_msg}, instruction {index}"
        assert [live for _, live in run.live_updates] == [expected.live], what
        assert run.live_updates[0][0] == run.cycles - 1, what
        assert run.cycles == select_cycles(config.array, *shape), what
    return runs


@pytest.mark.parametrize("array", [2, 4])
def test_token_mean_groups_in_place_and_no_alive_match_the_interpreter(array):
    config = small_config(array=array, act_depth=ACT_DEPTH)
    seed = 10 + array
    machine, _ = machine_with_tables(config, seed)
    cases = [  # src, src_stride, words, group, alive, dst, dst_stride, dst_tiles
        (0, 7, 6, 1, 9, 100, 7, 4),          # alive not a multiple of array
        (30, 8, 6, 3, 7, 130, 5, 2),         # groups of 3 words
        (60, 6, 6, 1, 2 * array - 1, 60, 6, 3),   # in place, 1 + alive = 2 tiles exactly
        (200, 5, 4, 2, 0, 220, 2, 3),        # no alive patch: means 0
        (240, 4, 4, 4, 5, 270, 2, 1),        # one group of all words
    ]
    words = [encode(Opcode.TOKEN_MEAN, src=src, src_stride=src_stride, words=count, group=group,
                    alive=alive, dst=dst, dst_stride=dst_stride, dst_tiles=dst_tiles)
             for src, src_stride, count, group, alive, dst, dst_stride, dst_tiles in cases]
    runs = run_and_compare(TokenSelector(config), machine, words,
                           err_msg=f"TOKEN_MEAN, array {array}, seed {seed}")
    for run, (_, _, count, group, alive, _, _, dst_tiles) in zip(runs, cases):
        assert run.live_updates == []
        assert run.cycles == mean_cycles(array, count, group, alive, dst_tiles)


@pytest.mark.parametrize("mode", [THRESHOLD, TOPK])
@pytest.mark.parametrize("array", [2, 3, 4])
def test_token_select_random_tables_match_the_interpreter(array, mode):
    config = small_config(array=array, act_depth=ACT_DEPTH)
    seed = 20 + 2 * array + mode
    machine, _ = machine_with_tables(config, seed)
    cases = [dict(tokens=13, alive=10, heads=3, channels=5, keep=6, mode=mode),  # 2 packages
             dict(tokens=9, alive=8, heads=1, channels=2, keep=3, mode=mode),
             dict(tokens=6, alive=3, heads=16, channels=3, keep=2, mode=mode),
             dict(tokens=3, alive=0, heads=2, channels=4, keep=1, mode=mode),  # nothing scored
             dict(tokens=20, alive=18, heads=2, channels=6, keep=11, mode=mode)]
    run_selects(config, machine, cases, f"TOKEN_SELECT {SELECT_MODES[mode]}, array {array}, "
                                        f"seed {seed}")


@pytest.mark.parametrize("array", [2, 4])
def test_keep_all_and_keep_only_the_class_token(array):
    # Keep table 1.0: threshold keeps every patch; topk with keep >= alive as well.
    # topk with keep 0 drops every patch into the package (T' = 2 + earlier rows,
    # below one tile for array 4); so does threshold with a keep table of 0.
    config = small_config(array=array, act_depth=ACT_DEPTH)
    seed = 30 + array
    for keep_value, cases in [
            (SIGMOID_ONE, [dict(tokens=11, alive=9, heads=2, channels=3, mode=THRESHOLD),
                           dict(tokens=8, alive=7, heads=3, channels=2, keep=9, mode=TOPK)]),
            (0, [dict(tokens=7, alive=6, heads=2, channels=3, mode=THRESHOLD),
                 dict(tokens=10, alive=7, heads=2, channels=4, keep=0, mode=TOPK)])]:
        keep_table = np.full(256, keep_value)
        machine, _ = machine_with_tables(config, seed, keep_table=keep_table,
                                         weight_table=np.arange(1, 257) * 100)
        runs = run_selects(config, machine, cases, f"keep table {keep_value}, array {array}, "
                                                   f"seed {seed}")
        for run, case in zip(runs, cases):
            (_, live), = run.live_updates
            if keep_value:
                assert live.alive == case["alive"] and live.tokens == case["tokens"]
            else:
                assert live.alive == 0 and live.tokens == case["tokens"] - case["alive"] + 1


@pytest.mark.parametrize("array", [2, 4])
def test_threshold_ties_keep_exactly_half(array):
    # Keep probabilities 0.5 (even bytes) or just below (odd bytes): a patch whose heads all
    # read even bytes has 2 K = 2**15 sum w exactly and is kept, the others are dropped.
    config = small_config(array=array, act_depth=ACT_DEPTH)
    seed = 40 + array
    keep_table = np.where(np.arange(256) % 2, SIGMOID_ONE // 2 - 1, SIGMOID_ONE // 2)
    machine, rng = machine_with_tables(config, seed, keep_table=keep_table)
    machine.act[:] = machine.act & ~rng.integers(0, 2, machine.act.shape, dtype=np.int8)
    cases = [dict(tokens=14, alive=12, heads=2, channels=3, mode=THRESHOLD),
             dict(tokens=9, alive=8, heads=1, channels=2, mode=THRESHOLD)]
    runs = run_selects(config, machine, cases, f"threshold ties, array {array}, seed {seed}")
    for run, case in zip(runs, cases):
        (_, live), = run.live_updates
        assert 0 < live.alive < case["alive"]          # both kinds present
    # All head weights 0: every patch is kept (0 >= 0).
    machine, _ = machine_with_tables(config, seed, weight_table=np.zeros(256))
    run_selects(config, machine, cases[:1], f"zero weights, array {array}, seed {seed}")


@pytest.mark.parametrize("array", [2, 4])
def test_topk_equal_scores_go_to_the_lower_index(array):
    # Three keep values and one head: most scores are tied; keep cuts through a tie.
    # (The unit reads through act_read alone: one activation read port is enough.)
    config = small_config(array=array, act_depth=ACT_DEPTH, act_read_ports=1)
    seed = 50 + array
    keep_table = np.array([0, SIGMOID_ONE // 3, SIGMOID_ONE])[np.arange(256) % 3]
    machine, _ = machine_with_tables(config, seed, keep_table=keep_table)
    cases = [dict(tokens=17, alive=15, heads=1, channels=2, keep=k, mode=TOPK)
             for k in (4, 9)]
    cases.append(dict(tokens=12, alive=11, heads=2, channels=3, keep=5, mode=TOPK))
    run_selects(config, machine, cases, f"topk ties, array {array}, seed {seed}")


def test_deit_tiny_cycle_counts_are_the_documented_ones():
    # T = 197, A = 196, H = 3, C = 192 on a 16 x 16 array (TokenSelector's docstring).
    assert select_cycles(16, 197, 196, 3, 192, TOPK) == 8_570
    assert select_cycles(16, 197, 196, 3, 192, THRESHOLD) == 6_761


def test_rounding_divider_rounds_half_up_over_the_int8_range():
    seed = 60
    rng = np.random.default_rng(seed)
    denominators = [1, 2, 3, 7, (1 << 32) - 1, *rng.integers(1, 1 << 32, 20)]
    cases = []
    for d in map(int, denominators):
        # What a mean of int8 values reaches (-128 d <= n <= 127 d): both ends, ties
        # (2 n + d an odd multiple of d, d even), just below a tie, random.
        tie = (2 * int(rng.integers(-128, 127)) + 1) * d // 2
        numerators = {-128 * d, 127 * d, -128 * d + 1, 127 * d - 1, tie, tie - 1,
                      int(rng.integers(-128 * d, 127 * d + 1))}
        cases += [(n, d) for n in numerators if -128 * d <= n <= 127 * d]
    divider = RoundingDivider(NUMERATOR_BITS, DENOMINATOR_BITS)
    results = []

    async def bench(ctx):
        for n, d in cases:
            ctx.set(divider.numerator, n)
            ctx.set(divider.denominator, d)
            ctx.set(divider.start, 1)
            await ctx.tick()
            ctx.set(divider.start, 0)
            for _ in range(RoundingDivider.LATENCY - 1):
                assert not ctx.get(divider.done)
                await ctx.tick()
            assert ctx.get(divider.done)
            results.append(ctx.get(divider.quotient))

    simulator = Simulator(divider)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    expected = [int(round_div(n, d)) for n, d in cases]
    assert results == expected, f"RoundingDivider, seed {seed}: {cases}"
