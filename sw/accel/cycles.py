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
cycles of its own unless it outlasts the host (``stall``). Those hidden cycles
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

from vitforge.hw.accel.decoder import SIDE_CHECK_LATENCY
from vitforge.hw.accel.dma import dma_cycles
from vitforge.hw.accel.eltwise import eltwise_cycles
from vitforge.hw.accel.gemm_unit import RESIDUAL_CYCLES
from vitforge.hw.accel.isa import (COUNTER_CLASSES, INSTRUCTION_WORDS, ISA, LOAD_HOSTS,
                                   ROW_HOSTS, SIDE_CLASSES, SIDE_HOSTS, SIDE_LOADS, SIDE_ROWS,
                                   Instruction, Opcode, load_may_run_beside, row_starts_beside)
from vitforge.hw.accel.moves import move_cycles
from vitforge.hw.accel.row_layernorm import layernorm_cycles
from vitforge.hw.accel.row_softmax import softmax_cycles
from vitforge.hw.accel.token_selector import mean_cycles, select_cycles
from vitforge.hw.gemm.descriptor import GemmDescriptor
from vitforge.sw.gemm.plan import command_cycles

__all__ = ["ProgramCycles", "unit_cycles", "program_cycles", "predict", "FETCH_CYCLES",
           "ISSUE_CYCLES", "SIDE_START_DELAY"]

#: FETCH: the instruction's external words requested one per cycle, the last one
#: arriving a cycle after its request.
FETCH_CYCLES = INSTRUCTION_WORDS + 1
#: RESOLVE, ISSUE, DECODE and DISPATCH.
ISSUE_CYCLES = 4
#: From a host's start to the start of the instruction beside it: a cycle in EXECUTE,
#: LOOK_AHEAD's fetch, SIDE_CHECK and SIDE_START.
SIDE_START_DELAY = 1 + FETCH_CYCLES + SIDE_CHECK_LATENCY + 1
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
        fetched_ahead = False
        if inst.opcode == Opcode.DONE:
            break
        spec = ISA[inst.opcode]
        busy = unit_cycles(config, inst)
        following = program[index + 1] if index + 1 < len(program) else None
        # A host looks the next instruction up before it retires, SIDE_START_DELAY cycles
        # that count to its class even when it is done sooner (a short move); then it
        # retires in the cycle after, or when the instruction beside it is done.
        looks_ahead = inst.opcode in SIDE_HOSTS and following is not None
        beside = looks_ahead and _may_run_beside(config, inst, following)
        own = max(busy, SIDE_START_DELAY) if looks_ahead else busy
        total = max(busy, SIDE_START_DELAY + 1) if looks_ahead else busy
        if beside:
            side_busy = unit_cycles(config, following)
            total = max(busy, SIDE_START_DELAY + side_busy)
            side_cycles[ISA[following.opcode].counter] += max(
                0, min(side_busy, busy - SIDE_START_DELAY))
        classes["stall"] += total - own
        if spec.counter is not None:
            classes[spec.counter] += own
        now += total
        retired_at[index] = now
        if beside:
            index += 2
        else:
            fetched_ahead = inst.opcode in SIDE_HOSTS and following is not None
            index += 1
    return ProgramCycles(cycles=now + 1, class_cycles=classes, retired_at=retired_at,
                         side_cycles=side_cycles)


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
