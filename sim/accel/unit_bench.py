"""One execution unit of the accelerator in Amaranth's simulator, its memories modelled in Python.

The accelerator's units (:mod:`vitforge.hw.accel.dma`, ``eltwise``, ``moves``,
``row_softmax``, ``row_layernorm``, ``token_selector``) share one interface
(:class:`Unit`: an instruction word held while running, a ``start`` pulse,
``busy``, a ``done`` pulse) and talk to the scratchpads through ports named after them
(``act_read``, ``y_read``, ``lnp_read``: one-cycle-latency reads;
``act_write``, ``wgt_write``, ``prm_write``, ``lnp_write``, ``tbl_write``,
``sig_write``: writes), to external memory through ``mem`` (request and
response streams) and to the live token registers through ``live_update``.
:func:`run_unit` models all of these on the state of a golden
:class:`~vitforge.sw.golden.accel.interpreter.Machine`, runs instructions on the
unit alone and returns the state afterwards; :func:`golden_after` runs the
same instructions on the golden interpreter, so a test is "same initial
state, same instruction words, compare".

Scratchpad read ports behave like the accelerator's ``amaranth.lib.memory``
ports: data one cycle after ``en``, held while ``en`` is low, the old word
when the same address is written in the same cycle. External memory accepts
a request per cycle and answers reads in order one cycle later, or, with a
:class:`Backpressure`, drops ``req.ready`` at random and delays responses.
"""

from dataclasses import dataclass, field as dataclass_field

import numpy as np
from amaranth.lib import data, wiring
from amaranth.sim import Simulator

from vitforge.errors import WatchdogError
from vitforge.hw.accel.config import (DRAM_WORD_BYTES, SIGMOID_ENTRIES_PER_WORD,
                                      TABLE_ENTRIES_PER_WORD, AcceleratorConfig)
from vitforge.hw.accel.isa import INSTRUCTION_BYTES, LiveState, Opcode, encode
from vitforge.hw.accel.ports import SLAB_READS
from vitforge.hw.numerics import SIGMOID_BITS
from vitforge.sw.golden.accel.interpreter import Machine, run_program

from ..words import pack_int8, unpack_int8

__all__ = ["Backpressure", "UnitRun", "run_unit", "golden_after", "run_and_compare",
           "copy_machine", "random_machine", "assert_same_state", "small_config", "set_rows",
           "extreme_rows", "spread_rows", "run_back_to_back", "STATE"]

#: The :class:`Machine` arrays that make up the accelerator's state (besides ``live``, the
#: live token registers, compared as well).
STATE = ("dram", "act", "wgt", "bias", "multiplier", "shift", "gamma", "beta", "table",
         "sigmoid", "idx")

#: Port name prefix -> the scratchpad it reaches.
_SPACES = {"act": "act", "y": "act", "wgt": "wgt", "prm": "prm", "lnp": "lnp", "tbl": "tbl",
           "sig": "sig", "idx": "idx"}
#: Port -> the Machine table it preloads and the entries per word and their width.
_TABLES = {"tbl": ("table", TABLE_ENTRIES_PER_WORD, 8),
           "sig": ("sigmoid", SIGMOID_ENTRIES_PER_WORD, SIGMOID_BITS)}
#: Scratchpads whose entries are structs: field name -> Machine array of that name.
_STRUCT_SPACES = {"prm": ("bias", "multiplier", "shift"), "lnp": ("gamma", "beta")}
_IDLE_AFTER = 4            # cycles watched after done (done must not pulse again)


@dataclass(frozen=True)
class Backpressure:
    """Random stalls of the external memory model.

    Parameters
    ----------
    seed : int
        Seed of the stall pattern.
    ready_rate : float
        Probability that ``mem.req.ready`` is high in a cycle.
    max_delay : int
        A read response comes ``1 + d`` cycles after its request, ``d``
        uniform in ``0..max_delay`` (responses stay in order).
    """

    seed: int
    ready_rate: float = 0.5
    max_delay: int = 3


@dataclass
class UnitRun:
    """What one instruction did on the unit.

    Attributes
    ----------
    state : Machine
        Copy of every memory after the instruction (and the idle cycles after it).
    cycles : int
        Clock cycles from the one in which ``start`` is high (cycle 0) to the
        first one in which ``done`` is high.
    done_cycles : list of int
        Cycles (same count) in which ``done`` was high, watched until a few
        cycles after the first.
    busy : list of int
        ``busy`` in every watched cycle, index = cycle.
    activity : dict of str to list of int
        Port name (``"act_read"``, ``"mem.req"``, ...) -> cycles in which it
        was enabled (``mem.req``: in which a request was accepted; ``mem.resp``:
        in which a response was taken).
    live_updates : list of (int, LiveState)
        Cycles in which ``live_update.en`` was high and the values it gave
        (the last one is ``state.live``).
    """

    state: Machine
    cycles: int
    done_cycles: list
    busy: list
    activity: dict = dataclass_field(default_factory=dict)
    live_updates: list = dataclass_field(default_factory=list)

    def check_handshake(self):
        """Raise ``AssertionError`` unless the unit kept the ``Unit`` handshake.

        ``busy`` is high from the cycle after ``start`` until ``done``, ``done``
        pulses exactly once and ``busy`` is low with it and after it, no
        port is used from the ``done`` cycle on, and ``live_update`` pulses at
        most once, no later than ``done``.
        """
        problems = []
        if self.done_cycles != [self.cycles]:
            problems.append(f"done was high in cycles {self.done_cycles}, expected only in "
                            f"{self.cycles}")
        not_busy = [cycle for cycle in range(1, self.cycles) if not self.busy[cycle]]
        if not_busy:
            problems.append(f"busy low while running in cycles {not_busy[:8]}")
        busy_after = [cycle for cycle in range(self.cycles, len(self.busy)) if self.busy[cycle]]
        if busy_after:
            problems.append(f"busy high at or after done in cycles {busy_after}")
        late = {port: [c for c in cycles if c >= self.cycles]
                for port, cycles in self.activity.items()}
        late = {port: cycles for port, cycles in late.items() if cycles}
        if late:
            problems.append(f"ports used at or after done: {late}")
        updates = [cycle for cycle, _ in self.live_updates]
        if len(updates) > 1 or any(cycle > self.cycles for cycle in updates):
            problems.append(f"live_update pulsed in cycles {updates}, expected at most once "
                            f"by {self.cycles}")
        if problems:
            raise AssertionError("; ".join(problems))


def small_config(**overrides):
    """A tiny :class:`AcceleratorConfig` (4x4 array, depths of 64-256) for fast unit tests."""
    sizes = dict(array=4, act_depth=256, wgt_depth=256, prm_depth=64, lnp_depth=64, k_max=64)
    return AcceleratorConfig(**{**sizes, **overrides})


def copy_machine(machine):
    """An independent copy of ``machine``'s memories (same config)."""
    clone = Machine(machine.config, b"")
    for name in STATE:
        setattr(clone, name, getattr(machine, name).copy())
    clone.live = machine.live
    clone.executed = machine.executed
    return clone


def random_machine(config, rng, dram_words=0):
    """A machine with every memory filled with random in-range values.

    Random (rather than zero) initial contents make a write to a wrong
    address or a missing write visible.

    Parameters
    ----------
    config : AcceleratorConfig
    rng : numpy.random.Generator
    dram_words : int
        External memory size in 16-byte words (random bytes).
    """
    machine = Machine(config, rng.integers(0, 256, dram_words * DRAM_WORD_BYTES,
                                           dtype=np.uint8).tobytes())
    machine.act[:] = rng.integers(-128, 128, machine.act.shape)
    machine.wgt[:] = rng.integers(-128, 128, machine.wgt.shape)
    machine.bias[:] = rng.integers(-(1 << 31), 1 << 31, machine.bias.shape)
    machine.multiplier[:] = rng.integers(0, 1 << 16, machine.multiplier.shape)
    machine.shift[:] = rng.integers(0, 64, machine.shift.shape)
    machine.gamma[:] = rng.integers(-(1 << 15), 1 << 15, machine.gamma.shape)
    machine.beta[:] = rng.integers(-(1 << 31), 1 << 31, machine.beta.shape)
    machine.table[:] = rng.integers(-128, 128, machine.table.shape)
    machine.idx[:] = rng.integers(0, 1 << config.gemm.index_bits, machine.idx.shape)
    return machine


def extreme_rows(length):
    """Rows of ``length`` int8 at the edges of the range, one per row of a tile.

    All equal (0), all -128, all 127, one 127 among -128, alternating -128/127.
    """
    single = np.full(length, -128, np.int8)
    single[length // 2] = 127
    return np.stack([np.zeros(length, np.int8), np.full(length, -128, np.int8),
                     np.full(length, 127, np.int8), single,
                     np.where(np.arange(length) % 2, 127, -128).astype(np.int8)])


def spread_rows(rng, count, length):
    """``count`` random rows of ``length`` int8, each around its own centre with its own
    spread (1 to 128), so that lanes have different statistics."""
    centres = rng.integers(-128, 128, (count, 1))
    spreads = rng.integers(1, 129, (count, 1))
    offsets = rng.integers(-(1 << 16), 1 << 16, (count, length)) % (2 * spreads) - spreads
    return np.clip(centres + offsets, -128, 127).astype(np.int8)


def run_back_to_back(dut, batches, apply, read):
    """Run the component ``dut`` (``start`` in, ``busy`` out) on ``batches`` back to back.

    For each batch ``apply(ctx, batch)`` sets the inputs and ``start`` pulses for one cycle;
    when ``busy`` falls, the coroutine ``read(ctx, batch)`` takes the results (it may let
    cycles pass) and the next batch starts in the cycle it returns.

    Returns
    -------
    list of (object, int)
        Per batch, what ``read`` returned and the cycles from ``start`` to ``busy`` falling.
    """
    results = []

    async def testbench(ctx):
        for batch in batches:
            apply(ctx, batch)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 1
            while ctx.get(dut.busy):
                await ctx.tick()
                cycles += 1
            results.append((await read(ctx, batch), cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return results


def set_rows(machine, address, stride, rows):
    """Write ``rows`` in the row layout of SOFTMAX/LAYERNORM (``docs/isa.md``).

    Row ``r`` is lane ``r % array`` of the words
    ``address + (r // array) * stride ..``, one element per word.
    """
    lanes = machine.config.array
    for index, row in enumerate(rows):
        tile, lane = divmod(index, lanes)
        start = address + tile * stride
        machine.act[start:start + len(row), lane] = row


def golden_after(machine, words):
    """The golden interpreter's state after each instruction of ``words``.

    Each word runs as a program of itself and ``DONE`` (placed after the
    external memory image, which is cut back afterwards) on the state the
    previous one left.

    Returns
    -------
    list of Machine
        One independent state per instruction; ``machine`` is not changed.
    """
    states = []
    current = copy_machine(machine)
    size = len(current.dram)
    for word in words:
        program = b"".join(w.to_bytes(INSTRUCTION_BYTES, "little")
                           for w in (word, encode(Opcode.DONE)))
        current.dram = np.concatenate([current.dram, np.frombuffer(program, np.uint8)])
        run_program(current, size // DRAM_WORD_BYTES, max_instructions=2)
        current.dram = current.dram[:size].copy()
        states.append(copy_machine(current))
    return states


def assert_same_state(actual, expected, err_msg=""):
    """``np.testing.assert_array_equal`` on every memory of two machines, named in the message.

    The live token registers (``live``) must be equal too.
    """
    for name in STATE:
        np.testing.assert_array_equal(getattr(actual, name), getattr(expected, name),
                                      err_msg=f"{err_msg}: {name}, unit vs golden")
    if tuple(actual.live) != tuple(expected.live):
        raise AssertionError(f"{err_msg}: live, unit vs golden: {actual.live} != "
                             f"{expected.live}")


class _Memories:
    """Scratchpad entries and external words of a Machine as port bit patterns."""

    def __init__(self, machine):
        self.machine = machine
        self.lanes = machine.config.array

    def _struct(self, space, layout, address, bits=None):
        names = _STRUCT_SPACES[space]
        if bits is None:
            value = 0
            for name in names:
                field = layout[name]
                value |= (int(getattr(self.machine, name)[address])
                          & ((1 << field.width) - 1)) << field.offset
            return value
        for name in names:
            field = layout[name]
            raw = (bits >> field.offset) & ((1 << field.width) - 1)
            if field.shape.signed and raw >> (field.width - 1):
                raw -= 1 << field.width
            getattr(self.machine, name)[address] = raw
        return None

    def read(self, space, layout, address):
        if space in ("act", "wgt"):
            return pack_int8(getattr(self.machine, space)[address])
        if space in ("act_slab", "wgt_slab"):
            # The aligned group of words holding address (a GEMM read, k_per_cycle > 1).
            scratchpad = getattr(self.machine, space.split("_")[0])
            count = layout.length
            first = address - address % count
            return sum(pack_int8(scratchpad[first + index]) << (8 * self.lanes * index)
                       for index in range(count))
        if space == "idx":
            return int(self.machine.idx[address])
        if space in _TABLES:
            name, per_word, bits = _TABLES[space]
            entries = getattr(self.machine, name)[address * per_word:(address + 1) * per_word]
            return sum((int(entry) & ((1 << bits) - 1)) << (bits * index)
                       for index, entry in enumerate(entries))
        return self._struct(space, layout, address)

    def write(self, space, layout, address, bits):
        if space in ("act", "wgt"):
            getattr(self.machine, space)[address] = unpack_int8(bits, self.lanes)
        elif space == "idx":
            self.machine.idx[address] = bits
        elif space in _TABLES:
            name, per_word, width = _TABLES[space]
            table = getattr(self.machine, name)
            for index in range(per_word):
                entry = (bits >> (width * index)) & ((1 << width) - 1)
                if table.dtype == np.int8 and entry >> (width - 1):
                    entry -= 1 << width
                table[address * per_word + index] = entry
        else:
            self._struct(space, layout, address, bits)

    def depth(self, space):
        if space in _TABLES:
            name, per_word, _ = _TABLES[space]
            return len(getattr(self.machine, name)) // per_word
        array = {"act": "act", "wgt": "wgt", "prm": "bias", "lnp": "gamma", "idx": "idx"}[space]
        return len(getattr(self.machine, array))

    def dram_word(self, address):
        start = address * DRAM_WORD_BYTES
        if start + DRAM_WORD_BYTES > len(self.machine.dram):
            raise AssertionError(f"external read of word {address}, beyond the "
                                 f"{len(self.machine.dram) // DRAM_WORD_BYTES}-word image")
        return int.from_bytes(self.machine.dram[start:start + DRAM_WORD_BYTES].tobytes(),
                              "little")

    def write_dram_word(self, address, bits):
        start = address * DRAM_WORD_BYTES
        if start + DRAM_WORD_BYTES > len(self.machine.dram):
            raise AssertionError(f"external write of word {address}, beyond the "
                                 f"{len(self.machine.dram) // DRAM_WORD_BYTES}-word image")
        self.machine.dram[start:start + DRAM_WORD_BYTES] = np.frombuffer(
            bits.to_bytes(DRAM_WORD_BYTES, "little"), np.uint8)


def _raw(value):
    return value.as_value() if hasattr(value, "as_value") else value


def _ports(unit):
    """The unit's memory ports by kind: read, write (unit -> memory), preload (memory inside)."""
    members = dict(unit.signature.members)
    flows = {path: member.flow for path, member, _ in unit.signature.flatten(unit)}
    reads, writes, preloads = {}, {}, {}
    for name in members:
        if name in ("start", "instruction", "busy", "done", "mem", "live_update",
                    "residual_stream"):
            # (residual_stream joins the GEMM unit to the element-wise unit: alone, a unit
            # leaves it idle.)
            continue
        space = _SPACES.get(name.split("_")[0])
        if name in SLAB_READS:
            space = f"{space}_slab"
        port = getattr(unit, name)
        if space is None or not all(hasattr(port, leaf) for leaf in ("addr", "data", "en")):
            raise ValueError(f"the unit bench does not model port {name!r} of "
                             f"{type(unit).__name__}")
        try:
            layout = data.Layout.cast(port.data.shape())
        except TypeError:
            layout = None                     # plain bits (the table's words)
        entry = (space, layout, port)
        if flows[(name, "addr")] == wiring.In:
            preloads[name] = entry            # the unit owns this memory (a table)
        elif flows[(name, "data")] == wiring.In:
            reads[name] = entry
        else:
            writes[name] = entry
    return reads, writes, preloads


def run_unit(unit, machine, words, *, backpressure=None, max_cycles=5_000, label=""):
    """Run instruction ``words`` one after another on ``unit`` alone.

    Parameters
    ----------
    unit : Unit
        A fresh unit (``Dma``, ``Eltwise``, ``Moves``, ``RowSoftmax``, ``RowLayerNorm``,
        ``TokenSelector``).
    machine : Machine
        Initial memories (not changed). A memory the unit owns (Eltwise's GELU
        table, the selector's sigmoid tables) is written through its port from
        ``machine`` before the first instruction. A ``live_update`` pulse sets
        the returned state's ``live``.
    words : list of int
        Encoded instructions (:func:`vitforge.hw.accel.isa.encode`).
    backpressure : Backpressure or None
        Random stalls of the external memory; ``None``: always ready, read
        data the next cycle.
    max_cycles : int
        Watchdog per instruction.
    label : str
        Prefix of the watchdog's message (say the test and seed).

    Returns
    -------
    list of UnitRun
        One per instruction; each ``state`` is a snapshot after it.

    Raises
    ------
    WatchdogError
        If ``done`` does not pulse within ``max_cycles`` cycles of ``start``.
    """
    memories = _Memories(copy_machine(machine))
    reads, writes, preloads = _ports(unit)
    has_mem = "mem" in unit.signature.members
    has_live = "live_update" in unit.signature.members
    rng = np.random.default_rng(backpressure.seed) if backpressure else None
    runs = []

    async def testbench(ctx):
        for name, (space, layout, port) in preloads.items():
            for address in range(memories.depth(space)):
                ctx.set(port.addr, address)
                ctx.set(_raw(port.data), memories.read(space, layout, address))
                ctx.set(port.en, 1)
                await ctx.tick()
            ctx.set(port.en, 0)
        for word in words:
            runs.append(await _run_one(ctx, word))

    async def _run_one(ctx, word):
        ctx.set(unit.instruction, word)
        activity = {name: [] for name in (*reads, *writes)}
        if has_mem:
            activity.update({"mem.req": [], "mem.resp": []})
        responses = []                    # (cycle it may be presented, data), in order
        busy, done_cycles, live_updates = [], [], []
        first_done = None
        cycle = 0
        while first_done is None or cycle <= first_done + _IDLE_AFTER:
            if first_done is None and cycle > max_cycles:
                name = Opcode(word & 0xFF).name
                raise WatchdogError(f"{label}{': ' if label else ''}{name}: done did not pulse "
                                    f"within {max_cycles} cycles of start")
            # Inputs of this cycle.
            ctx.set(unit.start, cycle == 0)
            if has_mem:
                ready = 1 if rng is None else int(rng.random() < backpressure.ready_rate)
                ctx.set(unit.mem.req.ready, ready)
                presented = bool(responses) and responses[0][0] <= cycle
                ctx.set(unit.mem.resp.valid, presented)
                ctx.set(unit.mem.resp.payload, responses[0][1] if presented else 0)
            # Outputs of this cycle (settled with the inputs above).
            busy.append(ctx.get(unit.busy))
            if has_live and ctx.get(unit.live_update.en):
                update = unit.live_update
                live = LiveState(*(ctx.get(getattr(update, name))
                                   for name in ("tokens", "alive", "tiles")))
                live_updates.append((cycle, live))
                memories.machine.live = live
            if ctx.get(unit.done):
                done_cycles.append(cycle)
                if first_done is None:
                    first_done = cycle
            captured = []
            for name, (space, layout, port) in reads.items():
                if ctx.get(port.en):
                    activity[name].append(cycle)
                    address = ctx.get(port.addr)
                    captured.append((port, memories.read(space, layout, address)))
            committed = []
            for name, (space, layout, port) in writes.items():
                if ctx.get(port.en):
                    activity[name].append(cycle)
                    committed.append((space, layout, ctx.get(port.addr),
                                      ctx.get(_raw(port.data))))
            if has_mem:
                request = unit.mem.req
                if ctx.get(request.valid) and ready:
                    activity["mem.req"].append(cycle)
                    address = ctx.get(request.payload.addr)
                    if ctx.get(request.payload.write):
                        memories.write_dram_word(address, ctx.get(request.payload.wdata))
                    else:
                        delay = 0 if rng is None else int(rng.integers(0, backpressure.max_delay
                                                                       + 1))
                        due = max(cycle + 1 + delay, responses[-1][0] if responses else 0)
                        responses.append((due, memories.dram_word(address)))
                if presented and ctx.get(unit.mem.resp.ready):
                    activity["mem.resp"].append(cycle)
                    responses.pop(0)
            await ctx.tick()
            # The edge: writes land after the reads took the old words.
            for space, layout, address, bits in committed:
                memories.write(space, layout, address, bits)
            for port, bits in captured:
                ctx.set(_raw(port.data), bits)
            cycle += 1
        if responses:
            raise AssertionError(f"{label}: {len(responses)} external read responses were "
                                 f"never taken")
        return UnitRun(state=copy_machine(memories.machine), cycles=first_done,
                       done_cycles=done_cycles, busy=busy, activity=activity,
                       live_updates=live_updates)

    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    simulator.add_testbench(testbench)
    simulator.run()
    return runs


def run_and_compare(unit, machine, words, *, err_msg, backpressure=None, max_cycles=5_000):
    """Run ``words`` on ``unit`` and on the golden interpreter; compare after each instruction.

    Every memory must equal the interpreter's after every instruction, and
    the unit must keep the handshake (:meth:`UnitRun.check_handshake`).

    Parameters
    ----------
    err_msg : str
        Names the test case and its seed in every failure message.

    Returns
    -------
    list of UnitRun
    """
    runs = run_unit(unit, machine, words, backpressure=backpressure, max_cycles=max_cycles,
                    label=err_msg)
    for index, (run, expected) in enumerate(zip(runs, golden_after(machine, words))):
        what = f"{err_msg}, instruction {index} ({Opcode(words[index] & 0xFF).name})"
        assert_same_state(run.state, expected, what)
        try:
            run.check_handshake()
        except AssertionError as error:
            raise AssertionError(f"{what}: {error}") from None
    return runs
