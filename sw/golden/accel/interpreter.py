"""Golden interpreter of accelerator programs: ``docs/isa.md`` in NumPy, bit-exact.

Executes instructions in program order on a model of external memory and the
scratchpads. The hardware may overlap instructions but must produce exactly
this result. Every instruction is checked against the rules of the ISA table
(fields that must not be zero, scratchpad regions within their depth) and
every external access against the image; a violation raises
:exc:`~vitforge.errors.ProgramError` naming the instruction.
"""

from dataclasses import dataclass

import numpy as np

from vitforge.errors import ProgramError
from vitforge.hw.accel.config import (DRAM_WORD_BYTES, MAX_SELECT_TOKENS,
                                      SIGMOID_ENTRIES_PER_WORD, SIGMOID_TABLE_DEPTH, SIZE_BITS,
                                      TABLE_ENTRIES_PER_WORD)
from vitforge.hw.accel.isa import (INSTRUCTION_BYTES, INSTRUCTION_WORDS, ISA, SELECT_MODES,
                                   SIDE_ROWS, LiveState, Opcode, Space, beside_refusal, decode,
                                   resolve, space_depth)
from vitforge.hw.numerics import (EXP_AT_ZERO_MIN_BITS, EXP_BITS, GELU_TABLE_DEPTH,
                                  MAX_SELECTOR_HEADS, PHI_BITS)
from vitforge.hw.gemm.descriptor import GemmDescriptor
from vitforge.sw.accel.memory import (load_words, pack_entries, sparse_tile_words,
                                     unpack_entries, unpack_sparse_tile)
from vitforge.sw.params.layernorm import LayerNormParams
from vitforge.sw.params.softmax import ExpParams

from ..gemm.engine import execute as execute_gemm
from ..nonlinear.exp import exp_q15
from ..nonlinear.layernorm import layernorm_rows
from ..nonlinear.softmax import softmax_rows
from ..selector import choose, compact, keep_scores, token_means
from .residual import residual_add

__all__ = ["Machine", "run_program"]


@dataclass
class _Images:
    """The GEMM golden model's view of the scratchpads: A and C are both ACT, B is WGT and
    the index buffer IDX."""

    config: object
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    index: np.ndarray


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
        #: IDX: the A-row number of each WGT word (sparse weights).
        self.idx = np.zeros(config.wgt_depth, np.int64)
        self.bias = np.zeros(config.prm_depth, np.int64)
        self.multiplier = np.zeros(config.prm_depth, np.int64)
        self.shift = np.zeros(config.prm_depth, np.int64)
        self.gamma = np.zeros(config.lnp_depth, np.int64)
        self.beta = np.zeros(config.lnp_depth, np.int64)
        self.table = np.zeros(GELU_TABLE_DEPTH, np.int8)
        self.sigmoid = np.zeros(SIGMOID_TABLE_DEPTH, np.int64)
        self.live = LiveState()
        #: What the last SOFTMAX with ``carry`` set left for one that resumes: a
        #: :class:`_Carried`, or ``None``.
        self.carried = None
        self.executed = 0


def _check(condition, index, instruction, message):
    if not condition:
        raise ProgramError(f"instruction {index} ({instruction.opcode.name}): {message}")


def _check_rules(machine, index, inst):
    """The ISA table's rules: no ``nonzero`` field is zero, every region lies in its scratchpad."""
    spec = ISA[inst.opcode]
    for name in spec.nonzero:
        _check(getattr(inst, name) > 0, index, inst, f"{name} must be positive, not 0")
    for region in (*spec.reads, *spec.writes):
        span = region.span(inst, machine.config.array)
        _check(span.space in Space._value2member_map_, index, inst,
               f"unknown space {span.space}")
        space = Space(span.space)
        depth = space_depth(space, machine.config)
        _check(span.end <= depth, index, inst,
               f"{space.name} words {span.first}..{span.end - 1} ({region.first}) are beyond "
               f"its depth {depth}")


def _dram_bytes(machine, index, instruction, word, words):
    start, end = word * DRAM_WORD_BYTES, (word + words) * DRAM_WORD_BYTES
    _check(end <= len(machine.dram), index, instruction,
           f"external words {word}..{word + words - 1} are beyond the image "
           f"({len(machine.dram) // DRAM_WORD_BYTES} words)")
    return slice(start, end)


def _load(machine, index, inst):
    config = machine.config
    space = Space(inst.space)
    _check(space != Space.IDX, index, inst, "a LOAD must not write IDX (LOAD_SPARSE fills it)")
    tables = {Space.TBL: (machine.table, TABLE_ENTRIES_PER_WORD),
              Space.SIG: (machine.sigmoid, SIGMOID_ENTRIES_PER_WORD)}
    if space in tables:
        table, per_word = tables[space]
        _check(inst.spad_addr % per_word == 0, index, inst,
               f"a {space.name} load must start at a multiple of {per_word} entries, "
               f"not {inst.spad_addr}")
        where = _dram_bytes(machine, index, inst, inst.dram_addr, inst.count)
        start = inst.spad_addr
        table[start:start + inst.count * per_word] = unpack_entries(
            space, machine.dram[where].tobytes(), config)
        return
    where = _dram_bytes(machine, index, inst, inst.dram_addr,
                        load_words(space, inst.count, config))
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
    where = _dram_bytes(machine, index, inst, inst.dram_addr,
                        inst.count * config.act_entry_words)
    words = machine.act[inst.spad_addr:inst.spad_addr + inst.count]
    machine.dram[where] = np.frombuffer(pack_entries(Space.ACT, words, config), np.uint8)


def _gemm(machine, index, inst):
    """GEMM and GEMM_SPARSE: ``GemmDescriptor`` semantics, A rows through IDX when sparse;
    with ``gelu`` set, every result word through the GELU table."""
    config = machine.config
    sparse = int(inst.opcode == Opcode.GEMM_SPARSE)
    descriptor = GemmDescriptor.from_fields(inst.fields, sparse=sparse)
    try:
        descriptor.check(config.gemm)
    except ValueError as error:
        raise ProgramError(f"instruction {index} ({inst.opcode.name}): {error}") from None
    if sparse:
        _check_indices(machine, index, inst, descriptor)
    b_act = inst.fields.get("b_act", 0)
    _check(not b_act or config.act_read_ports == 2, index, inst,
           f"b_act needs a second ACT read port (act_read_ports=2), not {config.act_read_ports}")
    # The result (C) must not overwrite an operand in ACT (A; B with b_act) while the GEMM
    # still reads it.
    spec = ISA[inst.opcode]
    c = spec.writes[0].span(inst, config.array)
    for name, region in zip("AB", spec.reads):
        read = region.span(inst, config.array)
        _check(read.space != Space.ACT or c.end <= read.first or read.end <= c.first, index,
               inst, f"result words {c.first}..{c.end - 1} overlap operand {name}'s words "
                     f"{read.first}..{read.end - 1}")
    # The ACT word of each result, by tile and column.
    result_words = (inst.c_addr + inst.c_stride * np.arange(inst.m_tiles))[:, None] \
        + np.arange(inst.n)[None, :]
    residual = inst.fields.get("residual", 0)
    if residual:
        _check_residual(config, index, inst, c)
        residuals = machine.act[result_words + (inst.r_addr - inst.c_addr)]
    execute_gemm(_Images(config.gemm, machine.act, machine.act if b_act else machine.wgt,
                         machine.act, machine.bias, machine.multiplier, machine.shift,
                         machine.idx), descriptor)
    if inst.gelu:
        written = np.unique(result_words)
        machine.act[written] = machine.table[machine.act[written].view(np.uint8)]
    if residual:
        machine.act[result_words] = residual_add(residuals, machine.act[result_words],
                                                 inst.r_multiplier, inst.c_multiplier,
                                                 inst.r_shift)


def _check_residual(config, index, inst, c):
    """A GEMM's residual: the second ACT read port is free for it, and its words are the
    result's own or lie apart from them."""
    _check(config.act_read_ports == 2, index, inst, "residual needs a second ACT read port "
           f"(act_read_ports=2), not {config.act_read_ports}")
    _check(not inst.gelu and not inst.b_act, index, inst,
           f"residual needs gelu=0 and b_act=0 (the write-back and the second read port are "
           f"the residual's), not gelu={inst.gelu}, b_act={inst.b_act}")
    r = ISA[inst.opcode].reads[-1].span(inst, config.array)
    _check(inst.r_addr == inst.c_addr or c.end <= r.first or r.end <= c.first, index, inst,
           f"residual words {r.first}..{r.end - 1} must be the result's own or apart from "
           f"its words {c.first}..{c.end - 1}")


def _check_indices(machine, index, inst, descriptor):
    """GEMM_SPARSE's own rules: ``depth`` at most ``k_max``, every IDX entry it reads below
    ``depth`` (inside each A tile)."""
    k_max = machine.config.k_max
    _check(inst.depth <= k_max, index, inst,
           f"depth must be at most k_max={k_max}, not {inst.depth}")
    starts = inst.b_addr + np.arange(descriptor.n_tiles(machine.config.gemm)) * inst.b_stride
    entries = (starts[:, None] + np.arange(inst.k)[None, :]).ravel()
    rows = machine.idx[entries]
    beyond = rows >= inst.depth
    first = int(np.argmax(beyond))
    _check(not beyond.any(), index, inst,
           f"IDX entry {entries[first]} holds row {rows[first]}, beyond depth={inst.depth}")


def _load_sparse(machine, index, inst):
    """LOAD_SPARSE: per column tile its index record, expanded into IDX, and its values."""
    config = machine.config
    per_tile = sparse_tile_words(inst.blocks, inst.kept_rows, config)
    where = _dram_bytes(machine, index, inst, inst.dram_addr, inst.tiles * per_tile)
    raw = machine.dram[where].reshape(inst.tiles, -1)
    length = inst.blocks * inst.kept_rows
    for tile, data in enumerate(raw):
        rows, values = unpack_sparse_tile(data.tobytes(), inst.blocks, inst.kept_rows,
                                          inst.block_shift, config)
        _check(rows.max() < 1 << SIZE_BITS, index, inst,
               f"tile {tile}: row {rows.max()} ((block << block_shift) + offset) must be below "
               f"2**{SIZE_BITS}")
        start = inst.spad_addr + tile * length
        machine.idx[start:start + length] = rows
        machine.wgt[start:start + length] = values


def _rows(machine, src, stride, tiles, length):
    """The ``tiles * array`` rows of ``length`` words at ``src`` (lane = row)."""
    addresses = src + np.arange(tiles)[:, None] * stride + np.arange(length)[None, :]
    # (tiles, length, lanes) -> (tiles, lanes, length) -> rows
    return machine.act[addresses].transpose(0, 2, 1).reshape(-1, length)


def _write_rows(machine, dst, stride, tiles, length, rows):
    lanes = machine.config.array
    addresses = dst + np.arange(tiles)[:, None] * stride + np.arange(length)[None, :]
    machine.act[addresses] = rows.reshape(tiles, lanes, length).transpose(0, 2, 1)


def _check_row_destination(machine, index, inst, length):
    """A row unit's result is written in place (``dst = src``, the same stride, tiles of
    ``length`` words that do not overlap each other) or over none of its source words: the
    hardware reads a tile's words again while it writes the tile's results, and reads the
    next tile's ahead."""
    in_place = (inst.dst, inst.dst_stride) == (inst.src, inst.src_stride) \
        and (inst.m_tiles == 1 or inst.src_stride >= length)
    _check(in_place or _disjoint(machine, inst), index, inst,
           "its result must be in place (dst = src, dst_stride = src_stride, tiles apart) "
           "or overlap none of its source words")


@dataclass(frozen=True)
class _Carried:
    """The tile whose maxima a SOFTMAX (instruction ``index``) with ``carry`` set found
    after its last: its first ACT word, its words as they were, and the exp table's
    parameters."""

    index: int
    first: int
    words: np.ndarray
    params: ExpParams


def _softmax(machine, index, inst):
    _check_row_destination(machine, index, inst, inst.length)
    rows = _rows(machine, inst.src, inst.src_stride, inst.m_tiles, inst.length)
    params = ExpParams(ratio=inst.ratio, alpha=inst.alpha, beta=inst.beta, gamma=inst.gamma)
    _check(params.ratio > 0 and params.beta >= 1 << PHI_BITS, index, inst,
           "ratio must be positive and beta at least 2**15")
    at_zero = int(exp_q15(0, params))
    _check(1 << EXP_AT_ZERO_MIN_BITS <= at_zero < 1 << EXP_BITS, index, inst,
           f"exp_q15(0) = ((alpha * beta**2) >> 31) + gamma must lie in "
           f"[2**{EXP_AT_ZERO_MIN_BITS}, 2**{EXP_BITS}), not {at_zero}")
    _check((inst.carry | inst.resume) == 0 or machine.config.act_read_ports == 2, index, inst,
           f"carry and resume need a second ACT read port (act_read_ports=2), not "
           f"{machine.config.act_read_ports}")
    if inst.resume:
        refusal = _resume_refusal(machine, inst, params)
        _check(refusal is None, index, inst,
               f"its resume field asks for the maxima and exp table of the SOFTMAX before "
               f"it, but {refusal}")
    machine.carried = None
    if inst.carry:
        first = inst.src + inst.m_tiles * inst.src_stride
        machine.carried = _Carried(index, first, machine.act[first:first + inst.length].copy(),
                                   params)
    probabilities = softmax_rows(rows, params, shift=inst.probability_shift).astype(np.int8)
    _write_rows(machine, inst.dst, inst.dst_stride, inst.m_tiles, inst.length, probabilities)


def _resume_refusal(machine, inst, params):
    """Why a SOFTMAX with ``resume`` set may not start from what the SOFTMAX before it
    carried, or ``None``: that one must have set ``carry``, found the maxima of this
    one's first tile (``src``, ``length`` words) with the same exp table, and no
    instruction since may have changed those words."""
    carried = machine.carried
    if carried is None:
        return "that one did not set carry (or there was none)"
    span = f"ACT words {carried.first}..{carried.first + len(carried.words) - 1}"
    if (carried.first, len(carried.words)) != (inst.src, inst.length):
        return f"instruction {carried.index} carried the maxima of {span}, not of src={inst.src}" \
               f" and length={inst.length}"
    if carried.params != params:
        return f"instruction {carried.index} filled the exp table for {carried.params}, " \
               f"this one asks for {params}"
    now = machine.act[carried.first:carried.first + inst.length]
    if not np.array_equal(now, carried.words):
        return f"{span} changed after instruction {carried.index} found their maxima"
    return None


def _layernorm(machine, index, inst):
    _check_row_destination(machine, index, inst, inst.channels)
    rows = _rows(machine, inst.src, inst.src_stride, inst.m_tiles, inst.channels)
    channels = slice(inst.lnp_addr, inst.lnp_addr + inst.channels)
    params = LayerNormParams(eps=inst.eps, gamma=machine.gamma[channels],
                             beta=machine.beta[channels], multiplier=inst.multiplier,
                             shift=inst.shift)
    _write_rows(machine, inst.dst, inst.dst_stride, inst.m_tiles, inst.channels,
                layernorm_rows(rows, params))


def _words(inst, *starts):
    """The ``inst.count`` words from each of ``starts``, as slices."""
    return [slice(start, start + inst.count) for start in starts]


def _gelu(machine, index, inst):
    src, dst = _words(inst, inst.src, inst.dst)
    machine.act[dst] = machine.table[machine.act[src].view(np.uint8)]


def _add(machine, index, inst):
    x, y, dst = _words(inst, inst.x, inst.y, inst.dst)
    machine.act[dst] = residual_add(machine.act[x], machine.act[y], inst.x_multiplier,
                                    inst.y_multiplier, inst.shift)


def _copy_to_wgt(machine, index, inst):
    addresses = inst.src + np.arange(inst.tiles)[:, None] * inst.src_stride \
        + np.arange(inst.words)[None, :]
    machine.wgt[inst.dst:inst.dst + inst.tiles * inst.words] = \
        machine.act[addresses.ravel()]


def _transpose_to_wgt(machine, index, inst):
    lanes = machine.config.array
    tokens = inst.token_tiles * lanes
    for channel_tile in range(inst.channel_tiles):
        # act[src + t*stride + ct*lanes + c][r] = V[t*lanes + r, ct*lanes + c]
        addresses = inst.src + np.arange(inst.token_tiles)[:, None] * inst.src_stride \
            + channel_tile * lanes + np.arange(lanes)[None, :]
        block = machine.act[addresses]                      # (token tile, channel, token)
        values = block.transpose(0, 2, 1).reshape(tokens, lanes)     # (token, channel)
        start = inst.dst + channel_tile * inst.dst_stride
        machine.wgt[start:start + tokens] = values


def _disjoint(machine, inst):
    """Whether the instruction's ACT writes overlap none of its ACT reads (as written)."""
    spec, array = ISA[inst.opcode], machine.config.array
    written = [region.span(inst, array) for region in spec.writes]
    return all(w.end <= r.first or r.end <= w.first or w.space != r.space
               for w in written for r in (region.span(inst, array) for region in spec.reads))


def _token_mean(machine, index, inst):
    _check(inst.words % inst.group == 0, index, inst,
           f"words {inst.words} must be a multiple of group {inst.group}")
    _check(inst.dst_tiles == 1 or inst.dst_stride >= inst.words // inst.group, index, inst,
           f"dst_stride {inst.dst_stride} must keep the {inst.dst_tiles} result tiles of "
           f"{inst.words // inst.group} words apart")
    in_place = (inst.dst, inst.dst_stride, inst.group) == (inst.src, inst.src_stride, 1)
    _check(in_place or _disjoint(machine, inst), index, inst,
           "the means must not overwrite the tokens they average, unless in place "
           "(dst = src, dst_stride = src_stride, group 1)")
    lanes = machine.config.array
    rows = _rows(machine, inst.src, inst.src_stride, (inst.alive + lanes) // lanes, inst.words)
    means = token_means(rows, inst.alive, inst.group)
    for tile in range(inst.dst_tiles):
        start = inst.dst + tile * inst.dst_stride
        machine.act[start:start + len(means)] = means[:, None]


def _token_select(machine, index, inst):
    lanes = machine.config.array
    tokens, alive = inst.tokens, inst.alive
    _check(alive < tokens <= MAX_SELECT_TOKENS, index, inst,
           f"tokens must exceed alive {alive} and be at most {MAX_SELECT_TOKENS}, not {tokens}")
    _check(_disjoint(machine, inst), index, inst, "dst must not overlap src, scores or weights")
    _check(inst.heads <= MAX_SELECTOR_HEADS, index, inst,
           f"heads must be at most {MAX_SELECTOR_HEADS}, not {inst.heads}")
    x = _rows(machine, inst.src, inst.src_stride, -(-tokens // lanes), inst.channels)[:tokens]
    differences = _rows(machine, inst.scores, inst.scores_stride, (alive + lanes) // lanes,
                        inst.heads)[1:1 + alive].T
    logits = machine.act[inst.weights:inst.weights + inst.heads, 0]
    scores = keep_scores(differences, logits, machine.sigmoid[:GELU_TABLE_DEPTH],
                         machine.sigmoid[GELU_TABLE_DEPTH:])
    mode = SELECT_MODES[inst.mode]
    mask = choose(scores, mode, min(inst.keep, alive) if mode == "topk" else None)
    kept = compact(x, alive, mask, scores.keep)
    tiles = -(-len(kept) // lanes)
    padded = np.zeros((tiles * lanes, inst.channels), np.int8)
    padded[:len(kept)] = kept
    _write_rows(machine, inst.dst, inst.dst_stride, tiles, inst.channels, padded)
    machine.live = LiveState.of(len(kept), int(mask.sum()), lanes)


_EXECUTE = {
    Opcode.LOAD: _load, Opcode.STORE: _store, Opcode.LOAD_SPARSE: _load_sparse,
    Opcode.GEMM: _gemm, Opcode.GEMM_SPARSE: _gemm, Opcode.GELU: _gelu,
    Opcode.SOFTMAX: _softmax, Opcode.LAYERNORM: _layernorm, Opcode.ADD: _add,
    Opcode.COPY_TO_WGT: _copy_to_wgt, Opcode.TRANSPOSE_TO_WGT: _transpose_to_wgt,
    Opcode.TOKEN_MEAN: _token_mean, Opcode.TOKEN_SELECT: _token_select,
}


def run_program(machine, program_addr, *, max_instructions=1_000_000, executed=None):
    """Execute the program at external word ``program_addr`` until DONE.

    The live token registers start at 0 (``machine.live``); a field flagged
    live takes its value from them after the ISA's rules are checked on the
    instruction as written. ``executed``, a list if given, receives each
    instruction as the units execute it (live fields resolved), DONE included.
    Instructions execute one after another, which defines the result; an
    instruction whose ``beside`` field asks to run beside the one before it
    must be allowed to (:func:`~vitforge.hw.accel.isa.beside_refusal`), since
    the hardware then runs the two at once.

    Returns the number of instructions executed (DONE included).

    Raises
    ------
    ProgramError
        On a malformed instruction, an access out of bounds, a ``beside`` the
        ordering rules refuse, running off the image, or more than
        ``max_instructions`` without DONE.
    """
    previous = None
    for index in range(max_instructions):
        start = (program_addr + index * INSTRUCTION_WORDS) * DRAM_WORD_BYTES
        end = start + INSTRUCTION_BYTES
        if end > len(machine.dram):
            raise ProgramError(f"instruction {index}: program runs past the image without DONE")
        word = int.from_bytes(machine.dram[start:end].tobytes(), "little")
        try:
            instruction = decode(word)
        except ValueError as error:
            raise ProgramError(f"instruction {index}: {error}") from None
        machine.executed += 1
        if instruction.opcode == Opcode.DONE:
            if executed is not None:
                executed.append(instruction)
            return index + 1
        _check_rules(machine, index, instruction)
        instruction, exceeding = resolve(instruction, machine.live)
        _check(not exceeding, index, instruction,
               f"live values exceed the fields {exceeding}, the most the program allows")
        spec = ISA[instruction.opcode]
        _check(not spec.empty(instruction), index, instruction,
               f"live values make a field of {list(spec.nonzero)} zero")
        if instruction.opcode in SIDE_ROWS and instruction.beside:
            refusal = beside_refusal(previous, instruction, machine.config.array,
                                     machine.config.act_bank_start)
            _check(refusal is None, index, instruction,
                   f"its beside field asks to run beside the instruction before it, but "
                   f"{refusal}")
        previous = instruction
        if executed is not None:
            executed.append(instruction)
        handler = _EXECUTE.get(instruction.opcode)
        if handler is not None:
            handler(machine, index, instruction)
    raise ProgramError(f"no DONE within {max_instructions} instructions")
