"""Golden interpreter of accelerator programs: ``docs/isa.md`` in NumPy, bit-exact.

Executes instructions in program order on a model of external memory and the
scratchpads. The hardware may overlap instructions but must produce exactly
this result. Every access is bounds-checked; a violation raises
:exc:`ProgramError` naming the instruction.
"""

from dataclasses import dataclass

import numpy as np

from vitforge.hw.accel.config import DRAM_WORD_BYTES
from vitforge.hw.accel.isa import INSTRUCTION_BITS, Opcode, Space, decode
from vitforge.hw.gemm.descriptor import GemmDescriptor
from vitforge.sw.accel.memory import TABLE_ENTRIES_PER_WORD, entry_words, pack_entries, \
    unpack_entries
from vitforge.sw.nonlinear.layernorm import LayerNormParams
from vitforge.sw.nonlinear.softmax import ExpParams

from ..gemm.engine import execute as execute_gemm
from ..nonlinear.layernorm import layernorm_rows
from ..nonlinear.softmax import softmax_rows
from .residual import residual_add

__all__ = ["ProgramError", "Machine", "run_program", "INSTRUCTION_WORDS"]

#: External-memory words per instruction.
INSTRUCTION_WORDS = INSTRUCTION_BITS // (8 * DRAM_WORD_BYTES)


class ProgramError(ValueError):
    """A program asked for something impossible; the message names the instruction."""


@dataclass
class _Images:
    """The GEMM golden model's view of the scratchpads: A and C are both ACT."""

    config: object
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray


class Machine:
    """External memory and scratchpads of one accelerator.

    Parameters
    ----------
    config : AcceleratorConfig
    dram : bytes-like
        Initial external memory (program, weights, inputs); its length must be
        a multiple of 16 bytes.
    """

    def __init__(self, config, dram):
        if len(dram) % DRAM_WORD_BYTES:
            raise ValueError(f"external memory must be whole {DRAM_WORD_BYTES}-byte words, "
                             f"not {len(dram)} bytes")
        self.config = config
        self.dram = np.frombuffer(bytes(dram), dtype=np.uint8).copy()
        self.act = np.zeros((config.act_depth, config.array), np.int8)
        self.wgt = np.zeros((config.wgt_depth, config.array), np.int8)
        self.bias = np.zeros(config.prm_depth, np.int64)
        self.multiplier = np.zeros(config.prm_depth, np.int64)
        self.shift = np.zeros(config.prm_depth, np.int64)
        self.gamma = np.zeros(config.lnp_depth, np.int64)
        self.beta = np.zeros(config.lnp_depth, np.int64)
        self.table = np.zeros(256, np.int8)
        self.executed = 0


def _check(condition, index, instruction, message):
    if not condition:
        raise ProgramError(f"instruction {index} ({instruction.opcode.name}): {message}")


def _span(index, instruction, name, start, count, depth):
    _check(count > 0, index, instruction, f"{name} count must be positive, not {count}")
    _check(start + count <= depth, index, instruction,
           f"{name} words {start}..{start + count - 1} are beyond its depth {depth}")


def _dram_bytes(machine, index, instruction, word, words):
    start, end = word * DRAM_WORD_BYTES, (word + words) * DRAM_WORD_BYTES
    _check(end <= len(machine.dram), index, instruction,
           f"external words {word}..{word + words - 1} are beyond the image "
           f"({len(machine.dram) // DRAM_WORD_BYTES} words)")
    return slice(start, end)


def _load(machine, index, inst):
    config = machine.config
    space = Space(inst.space) if inst.space in Space._value2member_map_ else None
    _check(space is not None, index, inst, f"unknown space {inst.space}")
    if space == Space.TBL:
        _span(index, inst, "table", inst.spad_addr, inst.count * TABLE_ENTRIES_PER_WORD, 256)
        where = _dram_bytes(machine, index, inst, inst.dram_addr, inst.count)
        start = inst.spad_addr
        machine.table[start:start + inst.count * TABLE_ENTRIES_PER_WORD] = unpack_entries(
            space, machine.dram[where].tobytes(), config)
        return
    depth = {Space.ACT: config.act_depth, Space.WGT: config.wgt_depth,
             Space.PRM: config.prm_depth, Space.LNP: config.lnp_depth}[space]
    _span(index, inst, space.name, inst.spad_addr, inst.count, depth)
    where = _dram_bytes(machine, index, inst, inst.dram_addr,
                        inst.count * entry_words(space, config))
    values = unpack_entries(space, machine.dram[where].tobytes(), config)
    region = slice(inst.spad_addr, inst.spad_addr + inst.count)
    if space == Space.ACT:
        machine.act[region] = values
    elif space == Space.WGT:
        machine.wgt[region] = values
    elif space == Space.PRM:
        machine.bias[region], machine.multiplier[region], machine.shift[region] = values
    else:
        machine.gamma[region], machine.beta[region] = values


def _store(machine, index, inst):
    config = machine.config
    _span(index, inst, "ACT", inst.spad_addr, inst.count, config.act_depth)
    where = _dram_bytes(machine, index, inst, inst.dram_addr,
                        inst.count * config.act_entry_words)
    words = machine.act[inst.spad_addr:inst.spad_addr + inst.count]
    machine.dram[where] = np.frombuffer(pack_entries(Space.ACT, words, config), np.uint8)


def _gemm(machine, index, inst):
    config = machine.config
    descriptor = GemmDescriptor(**{name: inst.fields[name] for name in (
        "a_addr", "a_stride", "b_addr", "b_stride", "c_addr", "c_stride", "p_addr", "k",
        "m_tiles", "n")}) if inst.k and inst.m_tiles and inst.n else None
    _check(descriptor is not None, index, inst, "k, m_tiles and n must be positive")
    try:
        descriptor.check(config.gemm)
    except ValueError as error:
        raise ProgramError(f"instruction {index} (GEMM): {error}") from None
    # The result must not overwrite the operand while the GEMM still reads it.
    a_end = inst.a_addr + (inst.m_tiles - 1) * inst.a_stride + inst.k
    c_end = inst.c_addr + (inst.m_tiles - 1) * inst.c_stride + inst.n
    _check(c_end <= inst.a_addr or a_end <= inst.c_addr, index, inst,
           f"result words {inst.c_addr}..{c_end - 1} overlap operand words "
           f"{inst.a_addr}..{a_end - 1}")
    execute_gemm(_Images(config.gemm, machine.act, machine.wgt, machine.act, machine.bias,
                         machine.multiplier, machine.shift), descriptor)


def _rows(machine, index, inst, src, stride, tiles, length):
    """The ``tiles * array`` rows of ``length`` words at ``src`` (lane = row)."""
    _check(tiles > 0 and length > 0, index, inst, "tile count and row length must be positive")
    _span(index, inst, "source", src, (tiles - 1) * stride + length, machine.config.act_depth)
    addresses = src + np.arange(tiles)[:, None] * stride + np.arange(length)[None, :]
    # (tiles, length, lanes) -> (tiles, lanes, length) -> rows
    return machine.act[addresses].transpose(0, 2, 1).reshape(-1, length)


def _write_rows(machine, index, inst, dst, stride, tiles, length, rows):
    _span(index, inst, "destination", dst, (tiles - 1) * stride + length,
          machine.config.act_depth)
    lanes = machine.config.array
    addresses = dst + np.arange(tiles)[:, None] * stride + np.arange(length)[None, :]
    machine.act[addresses] = rows.reshape(tiles, lanes, length).transpose(0, 2, 1)


def _softmax(machine, index, inst):
    rows = _rows(machine, index, inst, inst.src, inst.src_stride, inst.m_tiles, inst.length)
    params = ExpParams(ratio=inst.ratio, alpha=inst.alpha, beta=inst.beta, gamma=inst.gamma)
    _check(params.ratio > 0 and params.beta >= 1 << 15, index, inst,
           "ratio must be positive and beta at least 2**15")
    probabilities = softmax_rows(rows, params).astype(np.int8)
    _write_rows(machine, index, inst, inst.dst, inst.dst_stride, inst.m_tiles, inst.length,
                probabilities)


def _layernorm(machine, index, inst):
    rows = _rows(machine, index, inst, inst.src, inst.src_stride, inst.m_tiles, inst.channels)
    _span(index, inst, "LNP", inst.lnp_addr, inst.channels, machine.config.lnp_depth)
    channels = slice(inst.lnp_addr, inst.lnp_addr + inst.channels)
    params = LayerNormParams(eps=inst.eps, gamma=machine.gamma[channels],
                             beta=machine.beta[channels], multiplier=inst.multiplier,
                             shift=inst.shift)
    _write_rows(machine, index, inst, inst.dst, inst.dst_stride, inst.m_tiles, inst.channels,
                layernorm_rows(rows, params))


def _elementwise_spans(machine, index, inst, *starts):
    for start in starts:
        _span(index, inst, "ACT", start, inst.count, machine.config.act_depth)
    return [slice(start, start + inst.count) for start in starts]


def _gelu(machine, index, inst):
    src, dst = _elementwise_spans(machine, index, inst, inst.src, inst.dst)
    machine.act[dst] = machine.table[machine.act[src].view(np.uint8)]


def _add(machine, index, inst):
    x, y, dst = _elementwise_spans(machine, index, inst, inst.x, inst.y, inst.dst)
    machine.act[dst] = residual_add(machine.act[x], machine.act[y], inst.x_multiplier,
                                    inst.y_multiplier, inst.shift)


def _copy_to_wgt(machine, index, inst):
    config = machine.config
    _check(inst.tiles > 0 and inst.words > 0, index, inst, "tiles and words must be positive")
    _span(index, inst, "ACT", inst.src, (inst.tiles - 1) * inst.src_stride + inst.words,
          config.act_depth)
    _span(index, inst, "WGT", inst.dst, inst.tiles * inst.words, config.wgt_depth)
    addresses = inst.src + np.arange(inst.tiles)[:, None] * inst.src_stride \
        + np.arange(inst.words)[None, :]
    machine.wgt[inst.dst:inst.dst + inst.tiles * inst.words] = \
        machine.act[addresses.ravel()]


def _transpose_to_wgt(machine, index, inst):
    config = machine.config
    lanes = config.array
    tokens = inst.token_tiles * lanes
    _check(inst.token_tiles > 0 and inst.channel_tiles > 0, index, inst,
           "token_tiles and channel_tiles must be positive")
    _span(index, inst, "ACT", inst.src,
          (inst.token_tiles - 1) * inst.src_stride + inst.channel_tiles * lanes,
          config.act_depth)
    _span(index, inst, "WGT", inst.dst, (inst.channel_tiles - 1) * inst.dst_stride + tokens,
          config.wgt_depth)
    for channel_tile in range(inst.channel_tiles):
        # act[src + t*stride + ct*lanes + c][r] = V[t*lanes + r, ct*lanes + c]
        addresses = inst.src + np.arange(inst.token_tiles)[:, None] * inst.src_stride \
            + channel_tile * lanes + np.arange(lanes)[None, :]
        block = machine.act[addresses]                      # (token tile, channel, token)
        values = block.transpose(0, 2, 1).reshape(tokens, lanes)     # (token, channel)
        start = inst.dst + channel_tile * inst.dst_stride
        machine.wgt[start:start + tokens] = values


_EXECUTE = {
    Opcode.LOAD: _load, Opcode.STORE: _store, Opcode.GEMM: _gemm, Opcode.GELU: _gelu,
    Opcode.SOFTMAX: _softmax, Opcode.LAYERNORM: _layernorm, Opcode.ADD: _add,
    Opcode.COPY_TO_WGT: _copy_to_wgt, Opcode.TRANSPOSE_TO_WGT: _transpose_to_wgt,
}


def run_program(machine, program_addr, *, max_instructions=1_000_000):
    """Execute the program at external word ``program_addr`` until DONE.

    Returns the number of instructions executed (DONE included).

    Raises
    ------
    ProgramError
        On a malformed instruction, an access out of bounds, running off the
        image, or more than ``max_instructions`` without DONE.
    """
    for index in range(max_instructions):
        start = (program_addr + index * INSTRUCTION_WORDS) * DRAM_WORD_BYTES
        end = start + INSTRUCTION_BITS // 8
        if end > len(machine.dram):
            raise ProgramError(f"instruction {index}: program runs past the image without DONE")
        word = int.from_bytes(machine.dram[start:end].tobytes(), "little")
        try:
            instruction = decode(word)
        except ValueError as error:
            raise ProgramError(f"instruction {index}: {error}") from None
        machine.executed += 1
        if instruction.opcode == Opcode.DONE:
            return index + 1
        handler = _EXECUTE.get(instruction.opcode)
        if handler is not None:
            handler(machine, index, instruction)
    raise ProgramError(f"no DONE within {max_instructions} instructions")
