"""Cycles of a program on the accelerator, exactly, without simulating it.

Each execution unit documents its cycles from ``start`` to ``done`` as a
function of the instruction's fields (:func:`unit_cycles` collects them), and
the :class:`~vitforge.hw.accel.controller.Controller` adds its own per
instruction: :data:`FETCH_CYCLES` to read it, :data:`ISSUE_CYCLES` to resolve,
issue, decode and dispatch it. A host (:data:`~vitforge.hw.accel.isa.SIDE_HOSTS`: a GEMM,
a move into WGT or a row instruction) fetches the next instruction while it runs; that
instruction then skips FETCH, and if it may run beside the host (a load the hardware
allows beside a GEMM or a row instruction, or a row instruction whose ``beside`` field
asks) it starts :data:`SIDE_START_DELAY` cycles after the host and costs no
cycles of its own unless it outlasts the host (``stall``). A GEMM with a row
instruction of :data:`~vitforge.hw.accel.isa.FAR_ROWS` beside it fetches the
instruction after that one too, and runs it beside as well if it is a load allowed
there (:data:`FAR_START_DELAY` cycles after the GEMM's start). Those hidden cycles
are :attr:`ProgramCycles.side_cycles`, by the side instruction's class.

:func:`program_cycles` walks a program this way and gives the total, the
split by :data:`~vitforge.hw.accel.isa.COUNTER_CLASSES` and the cycle each
instruction retires, which is what the hardware's counters and retirement
profile report, for external memory that answers every read in the next
cycle (the co-verification testbench's). Slower memory (the AXI shell on a
board) adds its latency to every fetch and load that does not run beside a
GEMM. Programs whose fields are live (token pruning) are resolved by the
golden interpreter first (:func:`predict`), which is fast next to RTL
simulation.
"""

from dataclasses import dataclass
from typing import NamedTuple

from vitforge.hw.accel.decoder import SIDE_CHECK_LATENCY
from vitforge.hw.accel.dma import dma_cycles
from vitforge.hw.accel.eltwise import eltwise_cycles
from vitforge.hw.accel.gemm_unit import RESIDUAL_CYCLES
from vitforge.hw.accel.isa import (COUNTER_CLASSES, FAR_HOSTS, FAR_ROWS, INSTRUCTION_WORDS, ISA,
                                   LOAD_HOSTS, ROW_HOSTS, SIDE_CLASSES, SIDE_HOSTS, SIDE_LOADS,
                                   SIDE_ROWS, Instruction, Opcode, far_load_fills,
                                   load_may_run_beside, row_starts_beside)
from vitforge.hw.accel.moves import move_cycles
from vitforge.hw.accel.row_layernorm import layernorm_cycles
from vitforge.hw.accel.row_softmax import softmax_cycles
from vitforge.hw.accel.token_selector import mean_cycles, select_cycles
from vitforge.hw.gemm.descriptor import GemmDescriptor
from vitforge.sw.gemm.plan import command_cycles

__all__ = ["ProgramCycles", "unit_cycles", "program_cycles", "predict", "FETCH_CYCLES",
           "ISSUE_CYCLES", "SIDE_START_DELAY", "FAR_START_DELAY"]

#: FETCH: the instruction's external words requested one per cycle, the last one
#: arriving a cycle after its request.
FETCH_CYCLES = INSTRUCTION_WORDS + 1
#: RESOLVE, ISSUE, DECODE and DISPATCH.
ISSUE_CYCLES = 4
#: From a host's start to the start of the instruction beside it: a cycle in EXECUTE,
#: LOOK_AHEAD's fetch, SIDE_CHECK and SIDE_START.
SIDE_START_DELAY = 1 + FETCH_CYCLES + SIDE_CHECK_LATENCY + 1
#: From a GEMM's start to the start of the load beside it and the row instruction beside
#: it: the same states once more, after the row instruction's start.
FAR_START_DELAY = 2 * SIDE_START_DELAY
#: The GEMM unit's ``done`` follows the cycles the engine is busy (``command_cycles``) and
#: the C words' register stage (its GELU lookup).
_GEMM_DONE = 2


def _gemm(config, inst):
    descriptor = GemmDescriptor.from_fields(inst.fields, sparse=int(inst.opcode != Opcode.GEMM))
    residual = RESIDUAL_CYCLES if inst.fields.get("residual") else 0
    return command_cycles(config.gemm, descriptor) + _GEMM_DONE + residual


_UNITS = {
    Opcode.LOAD: dma_cycles, Opcode.STORE: dma_cycles, Opcode.LOAD_SPARSE: dma_cycles,
    Opcode.GEMM: _gemm, Opcode.GEMM_SPARSE: _gemm,
    Opcode.GELU: lambda config, inst: eltwise_cycles(config, inst.opcode, inst.count),
    Opcode.ADD: lambda config, inst: eltwise_cycles(config, inst.opcode, inst.count),
    Opcode.SOFTMAX: lambda config, inst: softmax_cycles(
        config.array, inst.m_tiles, inst.length, lookahead=config.act_read_ports == 2,
        resume=inst.fields.get("resume", 0)),
    Opcode.LAYERNORM: lambda config, inst: layernorm_cycles(
        config.array, inst.m_tiles, inst.channels, lookahead=config.act_read_ports == 2),
    Opcode.COPY_TO_WGT: move_cycles, Opcode.TRANSPOSE_TO_WGT: move_cycles,
    Opcode.TOKEN_SELECT: lambda config, inst: select_cycles(
        config.array, inst.tokens, inst.alive, inst.heads, inst.channels, inst.mode),
    Opcode.TOKEN_MEAN: lambda config, inst: mean_cycles(
        config.array, inst.words, inst.group, inst.alive, inst.dst_tiles),
}


def unit_cycles(config, instruction):
    """Cycles from the unit's ``start`` to its ``done`` for ``instruction`` (an
    :class:`~vitforge.hw.accel.isa.Instruction` with its live fields resolved) on an
    accelerator of ``config``; 0 for NOP, SYNC and DONE, which retire at decode."""
    cycles = _UNITS.get(instruction.opcode)
    return 0 if cycles is None else cycles(config, instruction)


@dataclass(frozen=True)
class ProgramCycles:
    """What :func:`program_cycles` predicts, in the hardware counters' terms.

    Attributes
    ----------
    cycles : int
        From ``start`` to ``done``.
    class_cycles : dict
        ``cycles`` split by :data:`~vitforge.hw.accel.isa.COUNTER_CLASSES`.
    retired_at : list of int
        Per instruction the value of the cycle counter when it retired, 0 for an
        instruction that retired with the host beside it (the retirement profile's).
    side_cycles : dict
        Per class of :data:`~vitforge.hw.accel.isa.SIDE_CLASSES`, the cycles its
        instructions ran beside a host while the host's counted: work that
        ``class_cycles`` does not show because the host hid it (the cycles it
        outlasted the host count to ``stall``).
    """

    cycles: int
    class_cycles: dict
    retired_at: list
    side_cycles: dict

    def section_cycles(self, program):
        """Cycles per compiler section (layer) of ``program``, as co-verification reports."""
        return program.section_cycles(self.retired_at, self.cycles)


def _as_instruction(item):
    if isinstance(item, Instruction):
        return item
    opcode, fields = item
    return Instruction(Opcode(opcode), dict(fields))


def program_cycles(config, instructions):
    """Predict the cycles of ``instructions`` (as executed: live fields resolved, up to and
    including DONE) on an accelerator of ``config`` with one-cycle external memory.

    ``instructions`` are :class:`~vitforge.hw.accel.isa.Instruction` objects or
    ``(opcode, fields)`` pairs (a :class:`~.program.CompiledProgram`'s).

    Returns
    -------
    ProgramCycles
    """
    program = [_as_instruction(item) for item in instructions]
    classes = dict.fromkeys(COUNTER_CLASSES, 0)
    side_cycles = dict.fromkeys(SIDE_CLASSES, 0)
    retired_at = [0] * len(program)
    now = -1                # the counter starts in FETCH's second cycle
    fetched_ahead = False
    index = 0
    while index < len(program):
        inst = program[index]
        issue = ISSUE_CYCLES + (0 if fetched_ahead else FETCH_CYCLES)
        classes["fetch"] += issue
        now += issue
        if inst.opcode == Opcode.DONE:
            break
        spec = ISA[inst.opcode]
        step = _host_step(config, inst, program[index + 1:index + 3])
        classes["stall"] += step.total - step.own
        if spec.counter is not None:
            classes[spec.counter] += step.own
        for side, hidden in step.hidden:
            side_cycles[ISA[side.opcode].counter] += hidden
        now += step.total
        retired_at[index] = now
        index += 1 + len(step.hidden)
        fetched_ahead = step.fetched_ahead
    return ProgramCycles(cycles=now + 1, class_cycles=classes, retired_at=retired_at,
                         side_cycles=side_cycles)


class _Step(NamedTuple):
    """One instruction's run: its ``total`` cycles to retirement, the ``own`` ones that
    count to its class (the rest to ``stall``), the ``(instruction, cycles hidden)`` of
    each that ran beside it, and whether the instruction after them was fetched ahead."""

    total: int
    own: int
    hidden: tuple
    fetched_ahead: bool


def _within(start, length, *spans):
    """Cycles of ``start``, ``start + 1``, .. (``length`` of them) inside any of ``spans``
    (``(first, end)`` pairs, disjoint)."""
    return sum(max(0, min(start + length, end) - max(start, first)) for first, end in spans)


def _host_step(config, inst, following):
    """The :class:`_Step` of ``inst``, ``following`` the (up to two) instructions after it.

    A host looks the next instruction up before it retires, :data:`SIDE_START_DELAY` cycles
    that count to its class even when it is done sooner (a short move); then it retires in
    the cycle after, or when the instruction beside it is done. A GEMM with a row
    instruction of :data:`FAR_ROWS` beside it looks the one after that up as well, another
    :data:`SIDE_START_DELAY` cycles after an EXECUTE cycle (counted to its class while its
    unit is busy, to ``stall`` after), and runs it beside too if it is a load allowed there
    (:data:`FAR_START_DELAY` cycles after its start) filling only :data:`FAR_LOADED`."""
    busy = unit_cycles(config, inst)
    if inst.opcode not in SIDE_HOSTS or not following:
        return _Step(busy, busy, (), False)
    side = following[0]
    if not _may_run_beside(config, inst, side):
        return _Step(max(busy, SIDE_START_DELAY + 1), max(busy, SIDE_START_DELAY), (), True)
    side_busy = unit_cycles(config, side)
    if not (inst.opcode in FAR_HOSTS and side.opcode in FAR_ROWS):
        return _Step(max(busy, SIDE_START_DELAY + side_busy), max(busy, SIDE_START_DELAY),
                     ((side, _within(SIDE_START_DELAY, side_busy, (0, busy))),), False)
    far = following[1] if len(following) > 1 else None
    far_beside = far is not None and far.opcode in SIDE_LOADS and _may_run_beside(
        config, inst, far) and bool(far_load_fills(far.opcode, far, config.array))
    far_busy = unit_cycles(config, far) if far_beside else 1
    own = FAR_START_DELAY - 1 + (busy > SIDE_START_DELAY) + max(0, busy - FAR_START_DELAY)
    total = max(busy, SIDE_START_DELAY + side_busy, FAR_START_DELAY + far_busy)
    # The look-up states count to the host's class, the EXECUTE cycle before them only
    # while its unit is busy.
    counted = ((0, max(busy, FAR_START_DELAY)),) if busy > SIDE_START_DELAY else \
        ((0, busy), (SIDE_START_DELAY + 1, FAR_START_DELAY))
    hidden = ((side, _within(SIDE_START_DELAY, side_busy, *counted)),)
    if far_beside:
        hidden += ((far, _within(FAR_START_DELAY, far_busy, (0, busy))),)
    return _Step(total, own, hidden, not far_beside)


def _may_run_beside(config, host, side):
    """Whether the hardware starts ``side`` beside ``host`` (of :data:`SIDE_HOSTS`): the
    decoder's rule."""
    if side.opcode in SIDE_LOADS:
        return host.opcode in LOAD_HOSTS and bool(load_may_run_beside(
            host.opcode, host, side.opcode, side, config.array))
    return (host.opcode in ROW_HOSTS and side.opcode in SIDE_ROWS
            and bool(row_starts_beside(side.opcode, side, config.act_banks)))


def predict(program):
    """:func:`program_cycles` of a :class:`~.program.CompiledProgram` on its own image.

    A program without live fields is predicted from its instructions as
    compiled; one with live fields (token pruning, whose token counts depend on
    the image) runs on the golden interpreter first, which resolves each
    instruction as the hardware would.
    """
    if not any(fields.get("live") for _, fields in program.instructions):
        return program_cycles(program.config, program.instructions)
    from vitforge.sw.golden.accel.interpreter import Machine, run_program

    executed = []
    run_program(Machine(program.config, program.image), program.program_addr,
                executed=executed)
    return program_cycles(program.config, executed)
