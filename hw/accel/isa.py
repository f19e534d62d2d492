"""Instruction set of the programmable accelerator (``docs/isa.md``).

Every instruction is one 256-bit word: the opcode in bits 0..7, then the
fields of that opcode at the offsets below. This table is the one definition
the compiler, the golden interpreter, the documentation test and (next) the
hardware decoder all use.
"""

from dataclasses import dataclass
import enum

__all__ = ["INSTRUCTION_BITS", "Opcode", "Space", "FIELDS", "Instruction", "encode", "decode"]

INSTRUCTION_BITS = 256
_OPCODE_BITS = 8


class Opcode(enum.IntEnum):
    NOP = 0x00
    LOAD = 0x01              # external memory -> a scratchpad
    STORE = 0x02             # activation scratchpad -> external memory
    GEMM = 0x10              # int8 GEMM, bias, per-channel requantization
    GEMM_SPARSE = 0x11       # reserved: hierarchically pruned weights
    GELU = 0x20
    SOFTMAX = 0x21           # row-parallel: one row per lane, over words
    LAYERNORM = 0x22         # row-parallel: one token per lane, over channels
    ADD = 0x23               # residual add of two rescaled operands
    COPY_TO_WGT = 0x30       # activation words -> weight words (K^T of attention)
    TRANSPOSE_TO_WGT = 0x31  # activation blocks transposed -> weight words (V of attention)
    TOKEN_SELECT = 0x40      # reserved: token selector that compacts kept tokens
    SYNC = 0x3F              # wait until every earlier instruction has finished
    DONE = 0xFF              # raise done and stop


class Space(enum.IntEnum):
    """Scratchpads a LOAD can fill."""
    ACT = 0     # activations: words of `rows` int8
    WGT = 1     # weights: words of `cols` int8
    PRM = 2     # GEMM requantization parameters (bias, multiplier, shift)
    LNP = 3     # LayerNorm per-channel gamma, beta
    TBL = 4     # the GELU table (256 int8)


def _layout(*fields):
    offset = _OPCODE_BITS
    layout = {}
    for name, width in fields:
        layout[name] = (offset, width)
        offset += width
    if offset > INSTRUCTION_BITS:
        raise AssertionError(f"fields overflow the instruction: {offset} bits")
    return layout


#: Field name -> (bit offset, width), per opcode.
FIELDS = {
    Opcode.NOP: {},
    Opcode.LOAD: _layout(("space", 4), ("dram_addr", 32), ("spad_addr", 20), ("count", 20)),
    Opcode.STORE: _layout(("spad_addr", 20), ("dram_addr", 32), ("count", 20)),
    Opcode.GEMM: _layout(("a_addr", 20), ("a_stride", 20), ("b_addr", 20), ("b_stride", 20),
                         ("c_addr", 20), ("c_stride", 20), ("p_addr", 16), ("k", 16),
                         ("m_tiles", 16), ("n", 16)),
    Opcode.GELU: _layout(("src", 20), ("dst", 20), ("count", 20)),
    Opcode.SOFTMAX: _layout(("src", 20), ("src_stride", 20), ("dst", 20), ("dst_stride", 20),
                            ("m_tiles", 16), ("length", 16), ("ratio", 24), ("alpha", 16),
                            ("beta", 16), ("gamma", 16)),
    Opcode.LAYERNORM: _layout(("src", 20), ("src_stride", 20), ("dst", 20), ("dst_stride", 20),
                              ("m_tiles", 16), ("channels", 16), ("lnp_addr", 16),
                              ("eps", 32), ("multiplier", 16), ("shift", 6)),
    Opcode.ADD: _layout(("x", 20), ("y", 20), ("dst", 20), ("count", 20), ("x_multiplier", 16),
                        ("y_multiplier", 16), ("shift", 6)),
    Opcode.COPY_TO_WGT: _layout(("src", 20), ("src_stride", 20), ("dst", 20), ("tiles", 16),
                                ("words", 16)),
    Opcode.TRANSPOSE_TO_WGT: _layout(("src", 20), ("src_stride", 20), ("dst", 20),
                                     ("dst_stride", 20), ("token_tiles", 16),
                                     ("channel_tiles", 16)),
    Opcode.GEMM_SPARSE: {},
    Opcode.TOKEN_SELECT: {},
    Opcode.SYNC: {},
    Opcode.DONE: {},
}

_RESERVED = {Opcode.GEMM_SPARSE, Opcode.TOKEN_SELECT}


@dataclass(frozen=True)
class Instruction:
    """An opcode and its field values (all unsigned integers)."""

    opcode: Opcode
    fields: dict

    def __getattr__(self, name):
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(f"{self.opcode.name} has no field {name!r}") from None

    def __repr__(self):
        args = ", ".join(f"{name}={value}" for name, value in self.fields.items())
        return f"{self.opcode.name}({args})"


def encode(opcode, **values):
    """The 256-bit word of ``opcode`` with ``values``; every field must be given and fit."""
    opcode = Opcode(opcode)
    if opcode in _RESERVED:
        raise ValueError(f"opcode {opcode.name} is reserved and has no encoding yet")
    layout = FIELDS[opcode]
    missing = sorted(set(layout) - set(values))
    unknown = sorted(set(values) - set(layout))
    if missing or unknown:
        raise ValueError(f"{opcode.name} needs fields {sorted(layout)}; missing {missing}, "
                         f"unknown {unknown}")
    word = int(opcode)
    for name, (offset, width) in layout.items():
        value = values[name]
        if not isinstance(value, int) or isinstance(value, bool):
            value = int(value)
        if not 0 <= value < 1 << width:
            raise ValueError(f"{opcode.name} field {name} must lie in [0, {(1 << width) - 1}], "
                             f"not {value}")
        word |= value << offset
    return word


def decode(word):
    """The :class:`Instruction` in a 256-bit word.

    Raises
    ------
    ValueError
        On an unknown or reserved opcode, or bits set outside the opcode's fields.
    """
    code = word & ((1 << _OPCODE_BITS) - 1)
    try:
        opcode = Opcode(code)
    except ValueError:
        raise ValueError(f"unknown opcode 0x{code:02x}") from None
    if opcode in _RESERVED:
        raise ValueError(f"opcode {opcode.name} is reserved")
    fields = {}
    used = (1 << _OPCODE_BITS) - 1
    for name, (offset, width) in FIELDS[opcode].items():
        mask = (1 << width) - 1
        fields[name] = (word >> offset) & mask
        used |= mask << offset
    if word & ~used:
        raise ValueError(f"{opcode.name} instruction has bits set outside its fields")
    return Instruction(opcode, fields)
