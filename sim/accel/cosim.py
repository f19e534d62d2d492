"""Co-verification: a compiled program on the RTL (Verilator) and on the golden interpreter."""

from dataclasses import dataclass
import json

import numpy as np

from vitforge.hw.accel.config import DRAM_WORD_BYTES
from vitforge.hw.accel.profile import PROFILE_DEPTH
from vitforge.sw.accel.cycles import program_cycles
from vitforge.sw.golden.accel.interpreter import Machine, run_program

from ..verilog_cache import cached_verilog

__all__ = ["CoverificationReport", "coverify", "run_rtl", "describe_mismatch", "memory_words_for",
           "system_verilog"]

TOPLEVEL = "accelerator_system"
#: Smallest external memory of a simulated system, in words.
_MIN_MEMORY_WORDS = 1 << 12


def memory_words_for(image):
    """External memory for an image: the next power of two (so similar programs share a build)."""
    words = max(-(-len(image) // DRAM_WORD_BYTES), _MIN_MEMORY_WORDS)
    return 1 << (words - 1).bit_length()


@dataclass
class CoverificationReport:
    match: bool                   # the whole external memory equals the interpreter's
    done: bool
    error: int
    error_pc: int
    cycles: int
    class_cycles: dict
    side_cycles: dict             # per SIDE_CLASSES class: cycles it ran beside a GEMM
    rtl_output: np.ndarray
    golden_output: np.ndarray
    section_cycles: dict          # cycles per compiler section (layer), from the profile
    mismatch: str                 # where the images first differ ("" when they match)
    sim_seconds: float
    build_seconds: float
    verilog_seconds: float
    build_directory: str          # the Verilator build used; its name ends in the cache key
    build_cached: bool            # the build came from the cache (not built by this call)
    predicted: object             # the cycle model's ProgramCycles (sw/accel/cycles.py)
    predicted_sections: dict      # ... and its cycles per section

    def prediction_mismatch(self):
        """What the cycle model got wrong about this run's counters ("" when it predicted
        the total, every class, the cycles beside a GEMM and every section exactly; sections
        only where the hardware profiled every instruction,
        :data:`~vitforge.hw.accel.profile.PROFILE_DEPTH`)."""
        compared = [("cycles", self.predicted.cycles, self.cycles),
                    ("per class", self.predicted.class_cycles, self.class_cycles),
                    ("beside a GEMM", self.predicted.side_cycles, self.side_cycles)]
        if len(self.predicted.retired_at) <= PROFILE_DEPTH:
            compared.append(("per section", self.predicted_sections, self.section_cycles))
        return "; ".join(f"{what}: predicted {predicted}, simulated {simulated}"
                         for what, predicted, simulated in compared if predicted != simulated)


def describe_mismatch(program, rtl, golden):
    """Where two external-memory images first differ, in terms of the program.

    In trace mode (``compile_blocks(..., trace=True)``) that is the first
    instruction whose result differs, with the tile, word and lane of its result
    (and so the row of its result: a token, counted from the instruction's first
    tile, which for a piece of a softmax or a split GEMM is not the stage's
    first) and both values; otherwise the output token and channel, or the byte.
    """
    rtl = np.frombuffer(bytes(rtl), np.uint8)
    golden = np.frombuffer(bytes(golden), np.uint8)
    differ = np.nonzero(rtl != golden)[0]
    if not differ.size:
        return ""
    entry_bytes = program.config.act_entry_words * DRAM_WORD_BYTES
    lanes = program.config.array
    regions = [(t.dram_addr, t.words, f"instruction {t.index} ({t.opcode.name})", t.act_addr,
                t.stride) for t in program.trace]
    output = program.output
    regions.append((output.dram_addr, output.words(lanes), "the output (final STORE)", None,
                    output.cols))
    for offset in differ:
        offset = int(offset)
        for dram_addr, words, what, act_addr, stride in regions:
            start = dram_addr * DRAM_WORD_BYTES
            if start <= offset < start + words * entry_bytes:
                word, lane = divmod(offset - start, entry_bytes)
                if lane >= lanes:
                    continue
                values = (f"RTL {rtl[offset:offset + 1].view(np.int8)[0]}, golden "
                          f"{golden[offset:offset + 1].view(np.int8)[0]}")
                if not stride:
                    where = f"activation word {act_addr + word}, lane {lane}"
                else:
                    tile, column = divmod(word, stride)
                    where = (f"tile {tile}, column {column}, lane {lane} (row "
                             f"{tile * lanes + lane} of its result)")
                return f"{what}: {where}: {values}; {differ.size} bytes differ in all"
    offset = int(differ[0])
    return (f"external byte {offset}: RTL {rtl[offset]}, golden {golden[offset]}; "
            f"{differ.size} bytes differ in all")


def coverify(program, *, max_cycles=None, waves_to=None, log=None):
    """Run ``program`` (a :class:`CompiledProgram`) on both executors and compare.

    Raises
    ------
    vitforge.errors.SimulationError
        If the RTL hangs past ``max_cycles`` (default: 20x the program's MACs
        over the array, plus 100,000) or the testbench fails.
    """
    config = program.config
    if max_cycles is None:
        max_cycles = 20 * program.macs // (config.array ** 2) + 100_000
    machine, executed = Machine(config, program.image), []
    run_program(machine, program.program_addr, executed=executed)
    result, seconds, built, verilog = run_rtl(config, program.image, program.program_addr,
                                              max_cycles=max_cycles,
                                              instructions=len(program.instructions),
                                              waves_to=waves_to, log=log)
    rtl_image = result["dram"]
    predicted = program_cycles(config, executed)
    return CoverificationReport(
        match=bytes(rtl_image) == bytes(machine.dram), done=result["done"],
        error=result["error"], error_pc=result["error_pc"], cycles=result["cycles"],
        class_cycles=result["class_cycles"], side_cycles=result["side_cycles"],
        rtl_output=program.result(rtl_image),
        golden_output=program.result(machine.dram),
        section_cycles=program.section_cycles(result["retired_at"], result["cycles"]),
        mismatch=describe_mismatch(program, rtl_image, machine.dram),
        sim_seconds=seconds,
        build_seconds=built.seconds, verilog_seconds=verilog.seconds,
        build_directory=str(built.directory), build_cached=built.cached,
        predicted=predicted,
        predicted_sections=program.section_cycles(predicted.retired_at, predicted.cycles))


def system_verilog(config, memory_words, log=None):
    """The :class:`GeneratedVerilog` of the simulated system (the accelerator of ``config``
    and a Verilog memory of ``memory_words`` external words), cached."""
    from dataclasses import replace

    from .system import VERILOG_MEMORY_MODULE, SimulatedSystem

    verilog = cached_verilog(TOPLEVEL, json.dumps({**config.to_dict(),
                                                   "memory_words": memory_words},
                                                  sort_keys=True),
                             lambda: SimulatedSystem(config, memory_words, verilog_memory=True),
                             log=log,
                             what=f"the accelerator ({config.array}x{config.array} array)")
    return replace(verilog, text=verilog.text + VERILOG_MEMORY_MODULE)


def run_rtl(config, image, program_addr, *, max_cycles, instructions=0, waves_to=None,
            log=None):
    """Run the program at ``program_addr`` of ``image`` on the RTL in Verilator.

    Returns ``(result, sim_seconds, build, verilog)`` where ``result`` has the
    keys ``dram`` (the whole memory image afterwards), ``done``, ``error``,
    ``error_pc``, ``cycles``, ``class_cycles`` and ``retired_at``.

    Raises
    ------
    vitforge.errors.SimulationError
        If the program does not finish within ``max_cycles`` (the log is kept).
    """
    from .batch import run_programs

    results, seconds, built, verilog = run_programs(
        config, [image], program_addr=program_addr, max_cycles=max_cycles,
        instructions=instructions, waves_to=waves_to, reset_after_hang=False, log=log)
    return results[0], seconds, built, verilog
