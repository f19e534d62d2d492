"""The live token registers in hardware: the same substitution as ``isa.resolve``."""

import numpy as np
from amaranth.sim import Simulator

from vitforge.hw.accel.isa import ISA, LiveState, decode, encode, resolve
from vitforge.hw.accel.live import LiveFields

ARRAY = 4


def random_instruction(rng, opcode):
    """Fields near a random live state, so some live values exceed them and some do not."""
    spec = ISA[opcode]
    values = {}
    for name, field in spec.fields.items():
        limit = 1 << min(field.width, 7)
        values[name] = int(rng.integers(0, limit))
    values["live"] = int(rng.integers(0, 1 << len(spec.live)))
    return encode(opcode, **values)


def test_live_fields_resolve_like_the_isa_and_the_registers_follow_updates():
    rng = np.random.default_rng(11)
    cases = []
    for opcode, spec in ISA.items():
        if spec.live:
            for _ in range(12):
                tokens = int(rng.integers(1, 120))
                state = LiveState.of(tokens, int(rng.integers(0, tokens)), ARRAY)
                cases.append((random_instruction(rng, opcode), state))
    dut = LiveFields()
    seen = []

    async def testbench(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert (ctx.get(dut.tokens), ctx.get(dut.alive), ctx.get(dut.tiles)) == (0, 0, 0)
        for word, state in cases:
            ctx.set(dut.update.en, 1)
            for name, value in state._asdict().items():
                ctx.set(getattr(dut.update, name), value)
            await ctx.tick()
            ctx.set(dut.update.en, 0)
            ctx.set(dut.instruction, word)
            await ctx.tick()                  # a TILE_WORDS product takes a cycle
            resolved = ctx.get(dut.resolved)
            await ctx.tick()                  # ... and the comparisons another
            seen.append((resolved, ctx.get(dut.exceeds),
                         (ctx.get(dut.tokens), ctx.get(dut.alive), ctx.get(dut.tiles))))
        ctx.set(dut.clear, 1)
        await ctx.tick()
        assert ctx.get(dut.tokens) == 0

    simulator = Simulator(dut)
    simulator.add_clock(1e-6)
    simulator.add_testbench(testbench)
    simulator.run()
    flagged = 0
    for (word, state), (resolved, exceeds, registers) in zip(cases, seen):
        instruction = decode(word)
        expected, exceeding = resolve(instruction, state)
        assert registers == tuple(state), (instruction, state)
        assert decode(resolved) == expected, f"seed 11: {instruction} in {state}"
        assert exceeds == bool(exceeding), f"seed 11: {instruction} in {state}"
        flagged += instruction.fields["live"] != 0
    assert flagged > len(cases) // 2
    assert any(bool(resolve(decode(word), state)[1]) for word, state in cases)
