"""Verilog output of vitforge's components."""

import re

from amaranth.back import verilog

__all__ = ["to_verilog"]

# An `initial` block that sets every word of one memory to zero, one
# statement per word, as Yosys writes Amaranth's default memory contents.
_ZERO_INIT = re.compile(
    r"(?P<indent>[ \t]*)initial begin\n"
    r"(?P<body>(?:[ \t]*(?P<memory>[A-Za-z_][\w$]*)\[\d+\] = \d+'h0+;\n)+)"
    r"[ \t]*end\n")
_WORD = re.compile(r"[ \t]*([A-Za-z_][\w$]*)\[(\d+)\] = (\d+)'h0+;\n")


def _compact_zero_init(match):
    words = _WORD.findall(match["body"])
    memory = match["memory"]
    indices = [int(index) for name, index, _ in words]
    if any(name != memory for name, _, _ in words) or indices != list(range(len(indices))):
        return match[0]
    width = words[0][2]
    indent = match["indent"]
    counter = f"{memory}__init_index"
    return (f"{indent}integer {counter};\n"
            f"{indent}initial begin\n"
            f"{indent}  for ({counter} = 0; {counter} < {len(indices)}; "
            f"{counter} = {counter} + 1)\n"
            f"{indent}    {memory}[{counter}] = {width}'h0;\n"
            f"{indent}end\n")


def to_verilog(component, name):
    """Verilog text of ``component`` as module ``name`` (and its submodules).

    Identical to Amaranth's output except that a memory initialised to all
    zeros gets a loop instead of one statement per word: a 16384-word buffer
    is then four lines rather than 16384, which keeps the file small and the
    Verilator build fast. The output is deterministic: the same component
    gives the same bytes.
    """
    text = verilog.convert(component, name=name, emit_src=False)
    return _ZERO_INIT.sub(_compact_zero_init, text)
