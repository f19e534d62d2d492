"""GELU and ADD (``Eltwise``) alone in Amaranth's simulator against the golden interpreter."""

import numpy as np
import pytest

from vitforge.hw.accel.eltwise import Eltwise, eltwise_cycles
from vitforge.hw.accel.isa import Opcode, decode, encode
from vitforge.sim.accel.unit_bench import random_machine, run_and_compare, small_config


def machine_with_extremes(config, seed):
    """Random memories; ACT words 0..7 hold only -128 and 127 (saturation), the rest random."""
    machine = random_machine(config, np.random.default_rng(seed))
    lanes = config.array
    machine.act[0:4] = 127
    machine.act[4:8] = -128
    machine.act[8] = np.where(np.arange(lanes) % 2, 127, -128)
    return machine


def add(x, y, dst, count, x_multiplier, y_multiplier, shift):
    return encode(Opcode.ADD, x=x, y=y, dst=dst, count=count, x_multiplier=x_multiplier,
                  y_multiplier=y_multiplier, shift=shift)


@pytest.mark.parametrize("ports", [1, 2])
def test_gelu_looks_up_every_lane_in_the_loaded_table(ports):
    """The unit's table is written through ``tbl_write`` from a random table first."""
    config = small_config(act_read_ports=ports)
    seed = 30 + ports
    counts = [9, 4, 1]
    words = [encode(Opcode.GELU, src=0, dst=100, count=9),          # -128, 127 and random
             encode(Opcode.GELU, src=60, dst=60, count=4),          # in place
             encode(Opcode.GELU, src=255, dst=0, count=1)]          # last word
    runs = run_and_compare(Eltwise(config), machine_with_extremes(config, seed), words,
                           err_msg=f"GELU, {ports} read ports, seed {seed}")
    # One word per cycle; the last write six cycles after the last read.
    assert [run.cycles for run in runs] == [count + 8 for count in counts] == [
        eltwise_cycles(config, Opcode.GELU, count) for count in counts]
    for run, count in zip(runs, counts):
        assert run.activity["act_read"] == list(range(1, count + 1))
        assert run.activity["act_write"][-1] - run.activity["act_read"][-1] == 6


@pytest.mark.parametrize("ports", [1, 2])
def test_add_rescales_rounds_and_saturates(ports):
    config = small_config(act_read_ports=ports)
    seed = 40 + ports
    rng = np.random.default_rng(seed)
    cases = [
        add(0, 0, 200, 9, 65535, 65535, 0),        # x = y = 127 or -128: both rails
        add(0, 4, 210, 4, 65535, 65535, 16),       # 127 and -128: -65535, rounds to -1
        add(0, 0, 220, 9, 65535, 0, 8),            # y ignored; x * 65535 / 256 saturates
        add(20, 40, 60, 7, 1 << 14, 1 << 14, 15),  # the rounded mean
        add(20, 40, 20, 7, int(rng.integers(1 << 16)), int(rng.integers(1 << 16)),
            int(rng.integers(10, 24))),            # random scales, in place over x
        add(0, 8, 230, 9, 3, 5, 63),               # rounding constant 2**62, result 0
        add(100, 130, 240, 1, 0, 0, 1),            # zero multipliers
    ]
    runs = run_and_compare(Eltwise(config), machine_with_extremes(config, seed), cases,
                           err_msg=f"ADD, {ports} read ports, seed {seed}")
    counts = [9, 4, 9, 7, 7, 9, 1]
    # Two read ports: one word per cycle; one port: x then y, one word per two cycles.
    per_word = 1 if ports == 2 else 2
    assert [run.cycles for run in runs] == [per_word * count + 8 for count in counts] == [
        eltwise_cycles(config, Opcode.ADD, count) for count in counts]
    for run in runs:
        assert run.activity["act_write"][-1] - run.activity["act_read"][-1] == 6


@pytest.mark.parametrize("ports", [1, 2])
def test_add_scales_x_and_y_each_by_its_own_multiplier(ports):
    """With one port, x and y take turns on one multiplier per lane: each gets its own scale,
    also right after a GELU and from one ADD to the next."""
    config = small_config(act_read_ports=ports)
    seed = 50 + ports
    cases = [
        add(0, 8, 200, 9, 0, 65535, 0),             # x ignored; y at both rails, saturated
        add(8, 0, 210, 9, 65535, 0, 16),            # y ignored; x * 65535 / 2**16, rounded
        encode(Opcode.GELU, src=20, dst=220, count=3),
        add(20, 40, 230, 16, 1, 65535, 16),         # random words, nearly y alone
        add(40, 20, 250, 5, 65535, 1, 0),           # nearly x * 65535: both rails
        add(60, 61, 62, 1, 1, 2, 0),                # x + 2 y, one word
    ]
    runs = run_and_compare(Eltwise(config), machine_with_extremes(config, seed), cases,
                           err_msg=f"ADD, {ports} read ports, seed {seed}")
    per_word = 1 if ports == 2 else 2
    words = [(9, per_word), (9, per_word), (3, 1), (16, per_word), (5, per_word), (1, per_word)]
    assert [run.cycles for run in runs] == [count * cycles + 8 for count, cycles in words] == [
        eltwise_cycles(config, decode(case).opcode, count)
        for case, (count, _) in zip(cases, words)]
