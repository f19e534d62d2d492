"""Verilog output of vitforge's components."""

from contextlib import contextmanager
import re

from amaranth.back import rtlil, verilog

from .dsp48e2 import SynthesisTarget

__all__ = ["to_verilog"]

# A memory declaration, and whether an `initial` block follows it.
_MEMORY = re.compile(r"^(?P<indent>[ \t]*)reg \[(?P<msb>\d+):0\] (?P<name>\\\S+ |[A-Za-z_][\w$]*)"
                     r" \[(?P<last>\d+):0\];\n(?P<initial>[ \t]*initial begin\n)?", re.M)


@contextmanager
def _zero_memories_without_init():
    """Have Amaranth emit no init cell for memories whose contents are all zero.

    Amaranth 0.5 spells out a memory's initial contents one bit at a time in
    Python objects, and Yosys then writes one statement per word: 70 s of the
    80 s it took to convert the 16x16 accelerator, for 1.6 MB of zeros.
    """
    emit_memory = rtlil.ModuleEmitter.emit_memory

    def emit_nonzero_memory(emitter, cell_index, cell):
        if any(cell.init):
            emit_memory(emitter, cell_index, cell)

    rtlil.ModuleEmitter.emit_memory = emit_nonzero_memory
    try:
        yield
    finally:
        rtlil.ModuleEmitter.emit_memory = emit_memory


def _zero_init_loop(match):
    """A loop setting a memory without an ``initial`` block to zero."""
    if match["initial"]:
        return match[0]
    indent, name = match["indent"], match["name"]
    counter = re.sub(r"\W", "_", name.strip().lstrip("\\")) + "__init_index"
    words = int(match["last"]) + 1
    return (f"{match[0]}"
            f"{indent}integer {counter};\n"
            f"{indent}initial begin\n"
            f"{indent}  for ({counter} = 0; {counter} < {words}; {counter} = {counter} + 1)\n"
            f"{indent}    {name}[{counter}] = {int(match['msb']) + 1}'h0;\n"
            f"{indent}end\n")


def to_verilog(component, name, *, synthesis=False):
    """Verilog text of ``component`` as module ``name`` (and its submodules).

    Equivalent to Amaranth's output, but a memory initialised to all zeros is
    set by a loop instead of one statement per word (a 65536-word scratchpad
    is then four lines, which keeps generation and the Verilator build fast).

    With ``synthesis=True`` it is the form for synthesis: such a memory has no
    ``initial`` block at all (block and distributed RAM power up as zeros
    anyway, Vivado stops unrolling loops after a few thousand iterations, and
    Yosys would spend minutes unrolling them), and the design elaborates for a
    :class:`~vitforge.hw.dsp48e2.SynthesisTarget`, which makes DSP48E2
    cascades primitive instances. The output is deterministic: the same
    component gives the same bytes.
    """
    with _zero_memories_without_init():
        text = verilog.convert(component, name=name, emit_src=False,
                               platform=SynthesisTarget() if synthesis else None)
    return text if synthesis else _MEMORY.sub(_zero_init_loop, text)
