"""The weight gearbox (``EntryGearbox``): entries back to back in words, taken apart."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from vitforge.hw.accel.config import DRAM_WORD_BYTES
from vitforge.hw.accel.entry_gearbox import EntryGearbox, gearbox_fills


def test_the_fills_are_those_the_words_and_entries_reach():
    assert gearbox_fills(40) == [0, 8, 16, 24, 32]
    assert gearbox_fills(20) == [0, 4, 8, 12, 16]
    assert gearbox_fills(48) == [0, 16, 32]
    with pytest.raises(ValueError, match=r"^entry_bytes must be more than a word \(16\), "
                                         r"not 16$"):
        EntryGearbox(16)


@pytest.mark.parametrize("entry_bytes", [20, 40, 56])
def test_runs_of_entries_come_out_whole_whatever_the_gaps_and_padding(entry_bytes):
    """Runs of 1 to 9 entries, each from a word boundary with random padding after its last
    entry, words taken with random idle cycles between them and a restart between runs."""
    rng = np.random.default_rng(entry_bytes)
    runs = [rng.integers(-128, 128, (int(count), entry_bytes), dtype=np.int64)
            for count in rng.integers(1, 10, 12)]
    dut = EntryGearbox(entry_bytes)
    got = []

    async def bench(ctx):
        for entries in runs:
            data = entries.astype(np.int8).tobytes()
            words = -(-len(data) // DRAM_WORD_BYTES)
            padded = data + rng.integers(0, 256, words * DRAM_WORD_BYTES - len(data),
                                         dtype=np.uint8).tobytes()
            ctx.set(dut.restart, 1)
            await ctx.tick()
            ctx.set(dut.restart, 0)
            out = []
            for index in range(words):
                while rng.random() < 0.3:             # an idle cycle
                    ctx.set(dut.take, 0)
                    await ctx.tick()
                chunk = padded[index * DRAM_WORD_BYTES:(index + 1) * DRAM_WORD_BYTES]
                ctx.set(dut.word, int.from_bytes(chunk, "little"))
                ctx.set(dut.take, 1)
                if ctx.get(dut.complete):
                    out.append(ctx.get(dut.entry))
                await ctx.tick()
            ctx.set(dut.take, 0)
            got.append(out)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for index, (entries, out) in enumerate(zip(runs, got)):
        decoded = np.array([np.frombuffer(value.to_bytes(entry_bytes, "little"), np.int8)
                            for value in out], dtype=np.int64).reshape(-1, entry_bytes)
        np.testing.assert_array_equal(decoded, entries, err_msg=f"run {index}, "
                                      f"{entry_bytes}-byte entries, seed {entry_bytes}")
