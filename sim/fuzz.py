"""Differential fuzzing: random legal programs for the golden interpreter and the RTL.

:func:`programs` is a Hypothesis strategy of :class:`FuzzProgram`: a memory
image holding a prologue that loads every scratchpad whole (so nothing a
program reads depends on what ran before it), then random instructions of
every opcode over random regions and shapes, edge sizes included, then DONE.
Fields are drawn inside the ISA's rules; what the interpreter still refuses
(a result overlapping its operand, a live value that makes a field zero, a
TOKEN_SELECT writing over its scores, ...) is dropped one instruction at a time
until the interpreter runs the rest (:func:`legalize`), so every program is
one the golden model defines. A failing program is saved as a replay file
(:func:`vitforge.sim.replay.save_replay`) that ``vitforge replay FILE`` runs again.

A row unit's (SOFTMAX, LAYERNORM) destination is its source (in place) or
apart from it, as the compiler emits them; an element-wise destination (GELU,
ADD) is its source or anywhere, partial overlaps included. A quarter of the
draws are pairs that overlap on the hardware: a GEMM, GEMM_SPARSE or move and a
SOFTMAX, LAYERNORM, GELU or ADD that asks to run beside it, their ACT regions
in the banks that let it (``docs/isa.md``, Ordering), or two pieces of one SOFTMAX,
the second resuming from the first; half of the pairs are followed by a LOAD, which runs
beside a GEMM and the row instruction beside it as well (the far slot) when the
hardware's rule allows (it fills WGT, IDX or PRM, no words the GEMM reads). A LOAD or LOAD_SPARSE right after a GEMM or a row instruction runs
beside it when the hardware's rule allows.
"""

from dataclasses import dataclass, replace

from hypothesis import HealthCheck, Phase, given, settings, strategies as st
import numpy as np

from vitforge.errors import ProgramError
from vitforge.hw.accel.config import (DRAM_WORD_BYTES, SIGMOID_ENTRIES_PER_WORD,
                                      TABLE_ENTRIES_PER_WORD, AcceleratorConfig)
from vitforge.hw.accel.isa import (FAR_HOSTS, FAR_ROWS, INSTRUCTION_WORDS, ISA, ROW_HOSTS,
                                   SIDE_LOADS, SIDE_ROWS, Instruction, Opcode, Space,
                                   beside_refusal, encode, space_depth)
from vitforge.hw.numerics import (EXP_AT_ZERO_MIN_BITS, EXP_BITS, EXP_POLYNOMIAL_SHIFT,
                                  MAX_SELECTOR_HEADS, PHI_BITS)
from vitforge.sw.accel.memory import load_words, sparse_tile_words
from vitforge.sw.golden.accel.interpreter import Machine

from .replay import difference, run_golden, save_replay

__all__ = ["FUZZ_CONFIG", "FuzzProgram", "programs", "legalize", "fuzz_golden", "fuzz_rtl",
           "PROLOGUE"]

#: The configuration fuzzed on the RTL in CI: a 4x4 array with both ACT read ports, whose
#: build (with 4,096 words of external memory) ``tests/sim/test_icarus.py`` makes too.
FUZZ_CONFIG = AcceleratorConfig(array=4, act_depth=512, wgt_depth=512, prm_depth=256,
                                lnp_depth=32, k_max=32, act_read_ports=2)
#: Half of the instructions draw their regions from these first words of each scratchpad,
#: so that instructions often touch each other's data; the others from the whole depth.
WINDOW = {"act_depth": 96, "wgt_depth": 64, "prm_depth": 24, "lnp_depth": 16}

#: External memory: the program, random data (loads and stores), sparse records; enough
#: for the prologue of scratchpads of 512 words of up to two external words each.
PROGRAM_WORDS = 96
DATA_WORDS = 1088
SPARSE_WORDS = 1088
#: LOAD_SPARSE records hold bytes below this and shift blocks by at most 2, so every
#: A-row number is below 16 and a GEMM_SPARSE of depth >= 16 may use them.
_SPARSE_BYTE_LIMIT = 4
_MAX_SPARSE_SHIFT = 2
_MAX_ROW = (_SPARSE_BYTE_LIMIT - 1 << _MAX_SPARSE_SHIFT) + _SPARSE_BYTE_LIMIT - 1
#: Entries per external word of the tables, whose LOADs count words.
_TABLE_ENTRIES_PER_WORD = {Space.TBL: TABLE_ENTRIES_PER_WORD, Space.SIG: SIGMOID_ENTRIES_PER_WORD}
#: Random instructions after the prologue (before dropping).
MAX_BODY = 14
#: Instructions of the prologue: five LOADs and a LOAD_SPARSE.
PROLOGUE = 6
#: Cycle budget of one program on the RTL (the longest take a few thousand).
MAX_CYCLES = 200_000
#: Hypothesis settings of both passes: the same examples in the same order every run.
_SETTINGS = dict(deadline=None, database=None, derandomize=True,
                 suppress_health_check=list(HealthCheck),
                 # No explain phase: its variations of the shrunk program would each be
                 # another simulation, for a report the replay file replaces.
                 phases=[phase for phase in Phase if phase != Phase.explain])


@dataclass(frozen=True, repr=False)
class FuzzProgram:
    """A legal random program, and what the golden model says of it."""

    config: AcceleratorConfig
    instructions: tuple      # (Opcode, fields) of the program as run, DONE excluded
    image: bytes             # the whole external memory, the program at word 0
    golden: bytes            # the memory after the golden interpreter ran it
    predicted: object        # the cycle model's ProgramCycles (sw/accel/cycles.py)

    def __repr__(self):
        body = ", ".join(opcode.name for opcode, _ in self.instructions[PROLOGUE:])
        return f"FuzzProgram(prologue, {body or 'nothing'}, DONE)"

    def _repr_pretty_(self, printer, cycle):
        """Hypothesis' printer of failing examples: the short form, not every byte."""
        printer.text(repr(self))


def _span(draw, depth, length, tiles=1, min_stride=None):
    """``(addr, stride)`` of ``tiles`` tiles of ``length`` words inside ``depth`` words, the
    tiles ``min_stride`` or more apart (default: any stride, overlapping reads allowed);
    ``None`` if they do not fit."""
    if length > depth:
        return None
    if tiles == 1:
        return draw(st.integers(0, depth - length)), 0
    low = 0 if min_stride is None else min_stride
    high = (depth - length) // (tiles - 1)
    if low > high:
        return None
    stride = draw(st.integers(low, min(high, low + length + 3)))
    return draw(st.integers(0, depth - length - (tiles - 1) * stride)), stride


def _span_apart(draw, depth, length, tiles, avoid):
    """:func:`_span` of tiles ``length`` or more apart, outside the words ``avoid``
    (``(first, end)``): a result that must not overwrite its operand."""
    stride = 0 if tiles == 1 else draw(st.integers(length, length + 3))
    first = _place_apart(draw, depth, (tiles - 1) * stride + length, avoid)
    return None if first is None else (first, stride)


def _place_apart(draw, depth, size, avoid):
    """The first of ``size`` words inside ``depth`` and outside ``avoid`` (``(first, end)``),
    or ``None`` if there is no room."""
    places = [(0, avoid[0] - size), (avoid[1], depth - size)]
    places = [(low, high) for low, high in places if low <= high]
    if not places:
        return None
    low, high = draw(st.sampled_from(places))
    return draw(st.integers(low, high))


def _count(draw, limit, high=8):
    return draw(st.integers(1, max(1, min(limit, high))))


def _dram(draw, first, words, needed):
    if needed > words:
        return None
    return first + draw(st.integers(0, words - needed))


def _load(draw, config):
    space = draw(st.sampled_from([Space.ACT, Space.WGT, Space.PRM, Space.LNP, Space.TBL,
                                  Space.SIG]))
    depth = space_depth(space, config)
    if space in _TABLE_ENTRIES_PER_WORD:
        per_word = _TABLE_ENTRIES_PER_WORD[space]
        count = _count(draw, depth // per_word, 16)
        spad = per_word * draw(st.integers(0, depth // per_word - count))
        needed = count
    else:
        count = _count(draw, depth, 12)
        spad = draw(st.integers(0, depth - count))
        needed = load_words(space, count, config)
    dram = _dram(draw, PROGRAM_WORDS, DATA_WORDS, needed)
    return dict(space=space, dram_addr=dram, spad_addr=spad, count=count)


def _store(draw, config):
    count = _count(draw, config.act_depth, 12)
    return dict(spad_addr=draw(st.integers(0, config.act_depth - count)), count=count,
                dram_addr=_dram(draw, PROGRAM_WORDS, DATA_WORDS,
                                count * config.act_entry_words))


def _load_sparse(draw, config):
    tiles, blocks = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kept_rows = draw(st.integers(1, 4))
    length = tiles * blocks * kept_rows
    if length > config.wgt_depth:
        return None
    return dict(dram_addr=_dram(draw, PROGRAM_WORDS + DATA_WORDS, SPARSE_WORDS,
                                tiles * sparse_tile_words(blocks, kept_rows, config)),
                spad_addr=draw(st.integers(0, config.wgt_depth - length)), tiles=tiles,
                blocks=blocks, kept_rows=kept_rows,
                block_shift=draw(st.integers(1, _MAX_SPARSE_SHIFT)))


def _gemm(draw, config, sparse=False):
    array = config.array
    gelu = int(draw(st.booleans()))
    k = draw(st.sampled_from([1, 2, 3, array, 2 * array + 1, config.k_max]))
    m_tiles, n = draw(st.integers(1, 3)), draw(st.sampled_from([1, array - 1, array,
                                                                 array + 1, 2 * array]))
    depth = draw(st.integers(_MAX_ROW + 1, config.k_max)) if sparse else k
    n_tiles = -(-n // array)
    # B in ACT (through its second read port) or WGT.
    b_act = int(not sparse and config.act_read_ports == 2 and draw(st.booleans()))
    a = _span(draw, config.act_depth, depth, m_tiles)
    b = _span(draw, config.act_depth if b_act else config.wgt_depth, k, n_tiles)
    if None in (a, b) or n > config.prm_depth:
        return None
    # The result lies apart from the operands in ACT (their hull).
    operands = [(a[0], a[0] + (m_tiles - 1) * a[1] + depth)]
    if b_act:
        operands.append((b[0], b[0] + (n_tiles - 1) * b[1] + k))
    c = _span_apart(draw, config.act_depth, n, m_tiles,
                    (min(first for first, _ in operands), max(end for _, end in operands)))
    if c is None:
        return None
    fields = dict(a_addr=a[0], a_stride=a[1], b_addr=b[0], b_stride=b[1], c_addr=c[0],
                  c_stride=c[1], p_addr=draw(st.integers(0, config.prm_depth - n)), k=k,
                  m_tiles=m_tiles, n=n, gelu=gelu)
    if sparse:
        fields["depth"] = depth
    else:
        fields["b_act"] = b_act
    # A residual (the second read port, with neither b_act nor GELU): the result's own
    # words, or words apart from them.
    if not sparse and config.act_read_ports == 2 and not b_act and draw(st.booleans()):
        size = (m_tiles - 1) * c[1] + n
        r_addr = c[0] if draw(st.booleans()) else _place_apart(draw, config.act_depth, size,
                                                                (c[0], c[0] + size))
        if r_addr is not None:
            fields.update(gelu=0, residual=1, r_addr=r_addr,
                          r_multiplier=draw(st.integers(0, 0xFFFF)),
                          c_multiplier=draw(st.integers(0, 0xFFFF)),
                          r_shift=draw(st.integers(0, 63)))
    return fields


def _in_place_or_apart(draw, config, count, src):
    """A destination of ``count`` words: ``src`` itself, or anywhere."""
    if draw(st.booleans()):
        return src
    return draw(st.integers(0, config.act_depth - count))


def _gelu(draw, config):
    count = _count(draw, config.act_depth, 16)
    src = draw(st.integers(0, config.act_depth - count))
    return dict(src=src, dst=_in_place_or_apart(draw, config, count, src), count=count)


def _add(draw, config):
    count = _count(draw, config.act_depth, 16)
    x, y = (draw(st.integers(0, config.act_depth - count)) for _ in range(2))
    dst = draw(st.sampled_from([x, y, draw(st.integers(0, config.act_depth - count))]))
    return dict(x=x, y=y, dst=dst, count=count, x_multiplier=draw(st.integers(0, 0xFFFF)),
                y_multiplier=draw(st.integers(0, 0xFFFF)), shift=draw(st.integers(0, 63)))


def _rows(draw, config, length, tiles):
    """Source and destination of a row unit: tiles of ``length`` words, in place or apart."""
    src = _span(draw, config.act_depth, length, tiles)
    if src is None:
        return None
    if draw(st.booleans()) and (tiles == 1 or src[1] >= length):
        return dict(src=src[0], src_stride=src[1], dst=src[0], dst_stride=src[1])
    dst = _span(draw, config.act_depth, length, tiles, min_stride=length)
    if dst is None:
        return None
    return dict(src=src[0], src_stride=src[1], dst=dst[0], dst_stride=dst[1])


def _softmax(draw, config):
    m_tiles, length = draw(st.integers(1, 3)), draw(st.integers(1, 12))
    rows = _rows(draw, config, length, m_tiles)
    if rows is None:
        return None
    # Any ratio; alpha, beta and gamma such that exp_q15(0) lies in [2**14, 2**16).
    beta = draw(st.integers(1 << PHI_BITS, 0xFFFF))
    alpha = draw(st.integers(0, min(0xFFFF, ((1 << EXP_BITS) - 1 << EXP_POLYNOMIAL_SHIFT)
                                    // beta ** 2)))
    polynomial = alpha * beta ** 2 >> EXP_POLYNOMIAL_SHIFT
    gamma = draw(st.integers(max(0, (1 << EXP_AT_ZERO_MIN_BITS) - polynomial),
                             min(0xFFFF, (1 << EXP_BITS) - 1 - polynomial)))
    return dict(rows, m_tiles=m_tiles, length=length, ratio=draw(st.integers(1, (1 << 24) - 1)),
                alpha=alpha, beta=beta, gamma=gamma, probability_shift=draw(st.integers(0, 3)))


def _softmax_pieces(draw, config):
    """Two pieces of one softmax: the first carries the maxima of the tile after its last,
    the second resumes there with the same table (``docs/isa.md``); ``None`` if they do not
    fit in ACT."""
    first = _softmax(draw, config)
    if first is None:
        return None
    second = dict(first, m_tiles=draw(st.integers(1, 3)), resume=1,
                  carry=int(draw(st.booleans())),
                  **{name: first[name] + first["m_tiles"] * first[f"{name}_stride"]
                     for name in ("src", "dst")})
    spec = ISA[Opcode.SOFTMAX]
    if max(region.span(Instruction(Opcode.SOFTMAX, second), config.array).end
           for region in (*spec.reads, *spec.writes)) > config.act_depth:
        return None
    return [(Opcode.SOFTMAX, dict(first, carry=1)), (Opcode.SOFTMAX, second)]


def _layernorm(draw, config):
    m_tiles = draw(st.integers(1, 3))
    channels = draw(st.integers(1, config.lnp_depth))
    rows = _rows(draw, config, channels, m_tiles)
    if rows is None:
        return None
    return dict(rows, m_tiles=m_tiles, channels=channels,
                lnp_addr=draw(st.integers(0, config.lnp_depth - channels)),
                eps=draw(st.integers(0, (1 << 32) - 1)), multiplier=draw(st.integers(0, 0xFFFF)),
                shift=draw(st.integers(0, 63)))


def _copy_to_wgt(draw, config):
    tiles, words = draw(st.integers(1, 3)), draw(st.integers(1, 8))
    src = _span(draw, config.act_depth, words, tiles)
    if src is None or tiles * words > config.wgt_depth:
        return None
    return dict(src=src[0], src_stride=src[1], tiles=tiles, words=words,
                dst=draw(st.integers(0, config.wgt_depth - tiles * words)))


def _transpose_to_wgt(draw, config):
    array = config.array
    token_tiles, channel_tiles = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    src = _span(draw, config.act_depth, array * channel_tiles, token_tiles)
    dst = _span(draw, config.wgt_depth, array * token_tiles, channel_tiles,
                min_stride=array * token_tiles)
    if None in (src, dst):
        return None
    return dict(src=src[0], src_stride=src[1], dst=dst[0], dst_stride=dst[1],
                token_tiles=token_tiles, channel_tiles=channel_tiles)


def _token_select(draw, config):
    array = config.array
    tokens = draw(st.integers(2, 3 * array))
    alive = draw(st.integers(1, tokens - 1))
    channels, heads = draw(st.integers(1, 6)), draw(st.integers(1, min(4, MAX_SELECTOR_HEADS)))
    token_tiles = -(-tokens // array)
    src = _span(draw, config.act_depth, channels, token_tiles)
    dst = _span(draw, config.act_depth, channels, token_tiles, min_stride=channels)
    scores = _span(draw, config.act_depth, heads, (alive + array) // array)
    if None in (src, dst, scores):
        return None
    return dict(src=src[0], src_stride=src[1], dst=dst[0], dst_stride=dst[1],
                channels=channels, scores=scores[0], scores_stride=scores[1],
                weights=draw(st.integers(0, config.act_depth - heads)), heads=heads,
                tokens=tokens, alive=alive, keep=draw(st.integers(0, alive)),
                mode=draw(st.integers(0, 1)))


def _token_mean(draw, config):
    array = config.array
    group, alive = draw(st.integers(1, 3)), draw(st.integers(0, 2 * array))
    words = group * draw(st.integers(1, 3))
    dst_tiles = draw(st.integers(1, 3))
    src = _span(draw, config.act_depth, words, (alive + array) // array)
    if src is None:
        return None
    if draw(st.booleans()) and group == 1 and dst_tiles == (alive + array) // array:
        dst = src
    else:
        dst = _span(draw, config.act_depth, words // group, dst_tiles,
                    min_stride=words // group)
    if dst is None:
        return None
    return dict(src=src[0], src_stride=src[1], words=words, group=group, alive=alive,
                dst=dst[0], dst_stride=dst[1], dst_tiles=dst_tiles)


_DRAWERS = {
    Opcode.GEMM: _gemm, Opcode.LOAD: _load, Opcode.STORE: _store,
    Opcode.LOAD_SPARSE: _load_sparse,
    Opcode.GEMM_SPARSE: lambda draw, config: _gemm(draw, config, True),
    Opcode.GELU: _gelu, Opcode.ADD: _add, Opcode.SOFTMAX: _softmax,
    Opcode.LAYERNORM: _layernorm, Opcode.COPY_TO_WGT: _copy_to_wgt,
    Opcode.TRANSPOSE_TO_WGT: _transpose_to_wgt, Opcode.TOKEN_SELECT: _token_select,
    Opcode.TOKEN_MEAN: _token_mean, Opcode.NOP: lambda draw, config: {},
    Opcode.SYNC: lambda draw, config: {},
}
#: In the order Hypothesis shrinks towards: GEMM first, NOP and SYNC last.
_OPCODES = tuple(_DRAWERS)

def _in_banks(fields, opcode, banks, bank_start, array):
    """``fields`` with the ACT regions moved into ``banks`` (read bank, written bank): the
    fields that start the opcode's ACT regions in the ISA table (a GEMM's B with
    ``b_act``)."""
    moved = dict(fields)
    spec = ISA[opcode]
    for regions, bank in zip((spec.reads, spec.writes), banks):
        for region in regions:
            span = region.span(Instruction(opcode, fields), array)
            if span.space == Space.ACT and span.end > span.first:
                moved[region.first] += bank * bank_start
    return moved


def _beside_pair(draw, config):
    """A host of ROW_HOSTS and a SIDE_ROWS instruction that asks to run beside it, each
    region drawn inside one bank, the side's in the banks the host does not use; ``None``
    if they do not fit or still touch the same words."""
    bank_start = config.act_bank_start
    if bank_start is None:
        return None
    bank = replace(config, act_depth=min(bank_start, config.act_depth - bank_start))
    host, side = draw(st.sampled_from(ROW_HOSTS)), draw(st.sampled_from(SIDE_ROWS))
    host_fields, side_fields = _DRAWERS[host](draw, bank), _DRAWERS[side](draw, bank)
    if host_fields is None or side_fields is None or None in side_fields.values():
        return None
    read, written = draw(st.integers(0, 1)), draw(st.integers(0, 1))
    pair = [(host, _in_banks(host_fields, host, (read, written), bank_start, config.array)),
            (side, dict(_in_banks(side_fields, side, (1 - read, 1 - written), bank_start,
                                  config.array), beside=1))]
    if beside_refusal(*(Instruction(*item) for item in pair), config.array, bank_start):
        return None
    return pair


def _with_live(draw, opcode, fields):
    """Flag some of the opcode's live fields (their values become the most allowed);
    a ``tile_words`` for a count that takes ``ceil(T / array) x tile_words``. Only after a
    TOKEN_SELECT (before it, every live value is 0)."""
    live = ISA[opcode].live
    if not live or draw(st.integers(0, 2)) != 0:
        return fields
    flags = draw(st.integers(1, (1 << len(live)) - 1))
    fields = dict(fields, live=flags)
    if "tile_words" in ISA[opcode].fields:
        fields["tile_words"] = draw(st.integers(1, 4))
    return fields


def _prologue(draw, config):
    """Load every scratchpad whole, IDX (and WGT) through LOAD_SPARSE."""
    instructions = []
    loads = [(Space.ACT, config.act_depth, config.act_depth * config.act_entry_words),
             (Space.PRM, config.prm_depth, config.prm_depth),
             (Space.LNP, config.lnp_depth, config.lnp_depth)]
    for space, per_word in _TABLE_ENTRIES_PER_WORD.items():
        words = space_depth(space, config) // per_word          # a table LOAD counts words
        loads.append((space, words, words))
    for space, count, needed in loads:
        instructions.append((Opcode.LOAD, dict(
            space=space, spad_addr=0, count=count,
            dram_addr=_dram(draw, PROGRAM_WORDS, DATA_WORDS, needed))))
    blocks, kept_rows = 2, 4
    tiles = config.wgt_depth // (blocks * kept_rows)
    instructions.append((Opcode.LOAD_SPARSE, dict(
        dram_addr=_dram(draw, PROGRAM_WORDS + DATA_WORDS, SPARSE_WORDS,
                        tiles * sparse_tile_words(blocks, kept_rows, config)),
        spad_addr=0, tiles=tiles, blocks=blocks, kept_rows=kept_rows,
        block_shift=draw(st.integers(1, _MAX_SPARSE_SHIFT)))))
    return instructions


def _assemble(instructions, data):
    words = b"".join(encode(opcode, **fields).to_bytes(INSTRUCTION_WORDS * DRAM_WORD_BYTES,
                                                       "little")
                     for opcode, fields in [*instructions, (Opcode.DONE, {})])
    if len(words) > PROGRAM_WORDS * DRAM_WORD_BYTES:
        raise ValueError(f"{len(instructions)} instructions exceed {PROGRAM_WORDS} words")
    return words.ljust(PROGRAM_WORDS * DRAM_WORD_BYTES, b"\0") + data


def legalize(config, instructions, data):
    """Drop, one at a time, the instructions the golden interpreter refuses.

    Returns the :class:`FuzzProgram` of what is left (the prologue is never dropped).
    """
    instructions = list(instructions)
    while True:
        image = _assemble(instructions, data)
        machine = Machine(config, image)
        try:
            predicted = run_golden(machine)
        except ProgramError:
            del instructions[machine.executed - 1]
            continue
        return FuzzProgram(config, tuple(instructions), image, bytes(machine.dram),
                           predicted)


@st.composite
def programs(draw, config=FUZZ_CONFIG):
    """A :class:`FuzzProgram` for ``config``: a prologue, random instructions, DONE."""
    seed = draw(st.integers(0, 2**32 - 1))
    generator = np.random.default_rng(seed)
    data = generator.integers(0, 256, DATA_WORDS * DRAM_WORD_BYTES, np.uint8).tobytes()
    sparse = generator.integers(0, _SPARSE_BYTE_LIMIT, SPARSE_WORDS * DRAM_WORD_BYTES,
                                np.uint8).tobytes()
    instructions = _prologue(draw, config)
    window = replace(config, **{name: min(depth, getattr(config, name))
                                for name, depth in WINDOW.items()})
    selected = False
    for _ in range(draw(st.integers(0, MAX_BODY))):
        if draw(st.integers(0, 3)) == 3:          # shrinks towards single instructions
            pair = _softmax_pieces if draw(st.integers(0, 3)) == 3 else _beside_pair
            drawn = pair(draw, config) or []
            if pair is _beside_pair and drawn and draw(st.booleans()):
                drawn.append((Opcode.LOAD, _load(draw, config)))
        else:
            opcode = draw(st.sampled_from(_OPCODES))
            fields = _DRAWERS[opcode](draw, window if draw(st.booleans()) else config)
            drawn = [] if fields is None or None in fields.values() else [(opcode, fields)]
        for index, (opcode, fields) in enumerate(drawn):
            if selected and index == 0:
                fields = _with_live(draw, opcode, fields)
            instructions.append((opcode, fields))
            selected |= opcode == Opcode.TOKEN_SELECT
    return legalize(config, instructions, data + sparse)


class _Failure(AssertionError):
    """What ``check`` found wrong with ``program``."""

    def __init__(self, problem, program):
        super().__init__(problem)
        self.program = program


def _search(count, config, check, replay_folder=None):
    """Run ``check(program)`` on ``count`` programs; it returns what is wrong ("" if
    nothing). Hypothesis shrinks a failing program; the smallest, whose failure Hypothesis
    raises in the end, is saved as a replay file in ``replay_folder``, whose command the
    AssertionError gives."""

    @settings(max_examples=count, **_SETTINGS)
    @given(programs(config))
    def search(program):
        problem = check(program)
        if problem:
            raise _Failure(problem, program)

    try:
        search()
    except _Failure as failure:
        path = save_replay(replay_folder, config, failure.program.image)
        raise AssertionError(f"{failure}; reproduce with: vitforge replay {path}") from None


def fuzz_golden(count, *, replay_folder, config=FUZZ_CONFIG):
    """``count`` programs on the golden interpreter: each must touch external memory only
    through its STOREs and get a cycle prediction.

    Returns
    -------
    collections.Counter
        How often each opcode ran (after the prologue), ``"live"``: instructions with
        a live field, ``"beside"``: instructions that ran beside a GEMM,
        ``"resume"``: SOFTMAX pieces that resumed from the one before, ``"b_act"``:
        GEMMs that read B in ACT, and ``"residual"``: GEMMs that add a residual.

    Raises
    ------
    AssertionError
        For the smallest failing program, with the ``vitforge replay`` command.
    """
    from collections import Counter

    seen = Counter()

    def check(program):
        allowed = np.zeros(len(program.image), bool)
        body = program.instructions[PROLOGUE:]
        for index, (opcode, fields) in enumerate(body):
            host, side = body[index - 2:index] if index >= 2 else ((None, {}),) * 2
            seen["far"] += (opcode in SIDE_LOADS and host[0] in FAR_HOSTS
                            and side[0] in FAR_ROWS and bool(side[1].get("beside")))
            if opcode == Opcode.STORE:
                first = fields["dram_addr"] * DRAM_WORD_BYTES
                allowed[first:first + fields["count"] * config.act_entry_words
                        * DRAM_WORD_BYTES] = True
            seen[opcode.name] += 1
            seen["live"] += bool(fields.get("live"))
            seen["beside"] += bool(fields.get("beside"))
            seen["resume"] += bool(fields.get("resume"))
            seen["b_act"] += bool(fields.get("b_act"))
            seen["residual"] += bool(fields.get("residual"))
        changed = np.frombuffer(program.golden, np.uint8) != np.frombuffer(program.image,
                                                                            np.uint8)
        if (changed & ~allowed).any():
            outside = int(np.argmax(changed & ~allowed))
            return f"external byte {outside} changed outside every STORE"
        if program.predicted.cycles < len(program.instructions):
            return f"the cycle model predicts {program.predicted.cycles} cycles"
        return ""

    _search(count, config, check, replay_folder)
    return seen


def fuzz_rtl(count, *, replay_folder, config=FUZZ_CONFIG, run=None, log=None):
    """``count`` programs on the RTL of ``config`` against the golden interpreter: the whole
    external memory bit for bit, and the cycles against the cycle model.

    All programs run in one simulation (:func:`~vitforge.sim.accel.batch.run_batch`); a
    failing one is then shrunk by Hypothesis, one simulation per candidate. ``run``
    replaces ``run_batch`` (``run(images)`` -> results), for testing the harness.

    Returns the number of programs run.

    Raises
    ------
    AssertionError
        For the smallest failing program, with the ``vitforge replay`` command.
    """
    from .accel.batch import run_batch

    if run is None:
        def run(images):
            return run_batch(config, images, max_cycles=MAX_CYCLES, log=log)
    drawn = []
    _search(count, config, lambda program: drawn.append(program) or "")
    results = dict(zip((program.image for program in drawn),
                       run([program.image for program in drawn])))

    def check(program):
        rtl = results.get(program.image) or run([program.image])[0]
        return difference(program.golden, program.predicted, rtl)

    _search(count, config, check, replay_folder)
    return len(drawn)
