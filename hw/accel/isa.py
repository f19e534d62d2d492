"""Instruction set of the programmable accelerator (``docs/isa.md``): one table, :data:`ISA`.

Every instruction is one 256-bit word: the opcode in bits 0..7, then the
fields of that opcode. :data:`ISA` holds, per opcode, the field layout (an
``amaranth.lib.data.StructLayout``) and the opcode's rules: the fields that
must not be zero, whether the opcode is reserved, the execution unit that
runs it, the cycle-counter class it counts to, and the scratchpad regions it
reads and writes. :func:`encode` and :func:`decode`, the golden interpreter,
the compiler, the hardware decoder, the execution units and the
documentation test all read this one table.

Region formulas are written once and evaluate on Python integers (an
:class:`Instruction`, or a dict of fields) and on Amaranth values (a view of
an instruction signal, :meth:`OpcodeSpec.view`) alike.
"""

from dataclasses import dataclass
import enum
from functools import reduce
import operator
from types import SimpleNamespace
from typing import Callable, NamedTuple

from amaranth import Mux, Value
from amaranth.lib import data

from ..numerics import (COEFFICIENT_BITS, EPS_BITS, GELU_TABLE_DEPTH, MAX_SELECTOR_HEADS,
                        MULTIPLIER_BITS, PROBABILITY_SHIFT_BITS, RATIO_BITS, SHIFT_BITS)
from .ceil_divide import ceil_divide
from .config import (DRAM_WORD_BYTES, MEMORY_ADDRESS_BITS, PARAMETER_ADDRESS_BITS,
                     SCRATCHPAD_ADDRESS_BITS, SIGMOID_ENTRIES_PER_WORD, SIGMOID_TABLE_DEPTH,
                     SIZE_BITS, TABLE_ENTRIES_PER_WORD)

__all__ = ["INSTRUCTION_BITS", "INSTRUCTION_BYTES", "INSTRUCTION_WORDS", "OPCODE_BITS",
           "COUNTER_CLASSES", "Opcode", "Space", "Live", "LiveState", "Formula", "Region", "Span",
           "OpcodeSpec", "ISA", "Instruction", "encode", "decode", "space_depth",
           "written_activations", "load_may_run_beside", "row_starts_beside",
           "beside_refusal",
           "ROW_HOSTS", "LOAD_HOSTS", "SIDE_HOSTS", "LOADED_BESIDE", "SIDE_LOADS", "SIDE_ROWS",
           "FAR_HOSTS", "FAR_ROWS", "FAR_LOADED", "far_load_fills", "SIDE_CLASSES",
           "resolve", "SELECT_MODES"]

INSTRUCTION_BITS = 256
INSTRUCTION_BYTES = INSTRUCTION_BITS // 8
#: External-memory words per instruction.
INSTRUCTION_WORDS = INSTRUCTION_BYTES // DRAM_WORD_BYTES
OPCODE_BITS = 8

#: Per-class cycle counters of the hardware, in register order: ``fetch`` counts
#: fetching and decoding, ``stall`` the cycles in which an instruction has
#: finished but the weight load running beside it has not; every other class
#: is the ``counter`` of some opcodes.
COUNTER_CLASSES = ("fetch", "load_store", "gemm", "softmax", "layernorm", "eltwise", "move",
                   "select", "stall")

#: ``TOKEN_SELECT``'s ``mode`` field: index into this tuple.
SELECT_MODES = ("threshold", "topk")

#: A LOAD into TBL moves one-byte entries, a whole external word of them per count.
_TABLE_ENTRIES_PER_WORD_LOG2 = TABLE_ENTRIES_PER_WORD.bit_length() - 1
#: ... and a LOAD into SIG two-byte entries.
_SIGMOID_ENTRIES_PER_WORD_LOG2 = SIGMOID_ENTRIES_PER_WORD.bit_length() - 1


class Opcode(enum.IntEnum):
    NOP = 0x00
    LOAD = 0x01              # external memory -> a scratchpad
    STORE = 0x02             # activation scratchpad -> external memory
    LOAD_SPARSE = 0x03       # HP-pruned weights -> WGT (values) and IDX (row numbers)
    GEMM = 0x10              # int8 GEMM, bias, per-channel requantization
    GEMM_SPARSE = 0x11       # GEMM on HP-pruned weights: A rows follow IDX
    GELU = 0x20
    SOFTMAX = 0x21           # row-parallel: one row per lane, over words
    LAYERNORM = 0x22         # row-parallel: one token per lane, over channels
    ADD = 0x23               # residual add of two rescaled operands
    COPY_TO_WGT = 0x30       # activation words -> weight words (K^T of attention)
    TRANSPOSE_TO_WGT = 0x31  # activation blocks transposed -> weight words (V of attention)
    TOKEN_SELECT = 0x40      # score, keep, compact tokens; fold the dropped into a package
    TOKEN_MEAN = 0x41        # per-image means over the alive patches, broadcast
    SYNC = 0x3F              # wait until every earlier instruction has finished
    DONE = 0xFF              # raise done and stop


class Space(enum.IntEnum):
    """The scratchpads (the values of LOAD's ``space`` field)."""
    ACT = 0     # activations: words of `array` int8
    WGT = 1     # weights: words of `array` int8
    PRM = 2     # GEMM requantization parameters (bias, multiplier, shift)
    LNP = 3     # LayerNorm per-channel gamma, beta
    TBL = 4     # the GELU table (256 int8)
    SIG = 5     # the token selector's two sigmoid tables (2 x 256 unsigned 16-bit)
    IDX = 6     # A-row numbers of sparse weight words: entry i belongs to WGT word i


class Live(enum.Enum):
    """What a field flagged live takes its value from (``docs/isa.md``, Live token count).

    ``TOKENS`` is the live token count ``T``, ``ALIVE`` the live count ``A``
    of patches still scored, ``TILES`` ``ceil(T / array)``, and
    ``TILE_WORDS`` ``ceil(T / array)`` times the instruction's
    ``tile_words`` field.
    """

    TOKENS = "T"
    ALIVE = "A"
    TILES = "ceil(T / array)"
    TILE_WORDS = "ceil(T / array) x `tile_words`"


class LiveState(NamedTuple):
    """The run-time token registers: ``tokens`` (T), ``alive`` (A) and ``tiles`` (ceil(T / array)).

    All three are 0 when a program starts; only ``TOKEN_SELECT`` writes them.
    """

    tokens: object = 0
    alive: object = 0
    tiles: object = 0

    @classmethod
    def of(cls, tokens, alive, array):
        """The state of ``tokens`` and ``alive`` (ints) in an array of ``array`` lanes."""
        return cls(tokens, alive, -(-tokens // array))


@dataclass(frozen=True)
class Formula:
    """A term of a :class:`Region` computed from the fields and the array size.

    Parameters
    ----------
    text : str
        How ``docs/isa.md`` writes it (field names in backticks).
    function : callable
        ``function(fields, array)``; ``fields`` has the opcode's fields as
        attributes (Python ints or Amaranth values).
    """

    text: str
    function: Callable


class Span(NamedTuple):
    """A region evaluated: scratchpad, first word, end word (exclusive), tile stride."""

    space: object
    first: object
    end: object
    stride: object


@dataclass(frozen=True)
class Region:
    """Scratchpad words an instruction touches.

    ``tiles`` tiles of ``length`` consecutive words, the tiles ``stride``
    words apart, the first tile from word ``first`` of scratchpad ``space``.
    Every term is a field name, an ``int`` or a :class:`Formula`; ``space``
    is a :class:`Space` or the name of the field that holds one (LOAD).
    """

    space: object
    first: object
    length: object
    tiles: object = 1
    stride: object = 0

    def span(self, fields, array, stage=None):
        """The :class:`Span` for ``fields`` (ints or Amaranth values) and ``array``; ``stage``
        goes around each term and the tiles-stride product (:func:`load_may_run_beside`)."""
        stage = stage or _unstaged
        first, stride, tiles, length = (stage(_evaluate(term, fields, array)) for term in
                                        (self.first, self.stride, self.tiles, self.length))
        end = first + stage((tiles - 1) * stride) + length
        return Span(stage(_evaluate(self.space, fields, array)), first, end, stride)

    def field_names(self):
        """The fields named directly by the terms."""
        return {term for term in (self.space, self.first, self.length, self.tiles, self.stride)
                if isinstance(term, str)}

    def __str__(self):
        where = f"{_text(self.length)} words of {_text(self.space)} from {_text(self.first)}"
        if self.tiles == 1:
            return where
        return f"{_text(self.tiles)} tiles of {where}, {_text(self.stride)} apart"


def _unstaged(term):
    return term


def _evaluate(term, fields, array):
    if isinstance(term, str):
        return getattr(fields, term)
    if isinstance(term, Formula):
        return term.function(fields, array)
    return term


def _text(term):
    if isinstance(term, str):
        return f"`{term}`"
    if isinstance(term, Formula):
        return term.text
    if isinstance(term, Space):
        return term.name
    return str(term)


@dataclass(frozen=True)
class OpcodeSpec:
    """One opcode of the instruction set: its encoding and its rules.

    Attributes
    ----------
    opcode : Opcode
    layout : amaranth.lib.data.StructLayout
        The instruction word from bit 0: ``opcode`` (8 bits), then the
        fields in order, all unsigned.
    nonzero : tuple of str
        Fields that must not be zero: the hardware stops with
        ``ERROR_EMPTY``, the golden interpreter raises.
    unit : str or None
        The execution unit that runs it (a key of the accelerator's unit
        table); ``None`` for what the controller does itself (NOP, SYNC,
        DONE) and for reserved opcodes.
    counter : str or None
        The :data:`COUNTER_CLASSES` entry its execution cycles count to;
        ``None`` exactly where ``unit`` is.
    reads, writes : tuple of Region
        The scratchpad words it reads and writes.
    reserved : bool
        Allocated for a coming instruction; refused by the encoder, the
        decoder and the hardware (``ERROR_OPCODE``).
    live : tuple of (str, Live)
        The fields that may take their value from the run-time token
        registers; bit ``i`` of the ``live`` field (the layout's last) flags
        ``live[i]``. A flagged field's value in the instruction is the most it
        may take (what the compiler sized buffers for): the regions are
        checked with it, and a larger live value stops the run
        (``ERROR_LIVE``).
    """

    opcode: Opcode
    layout: data.StructLayout
    nonzero: tuple = ()
    unit: str = None
    counter: str = None
    reads: tuple = ()
    writes: tuple = ()
    reserved: bool = False
    live: tuple = ()

    def __post_init__(self):
        name = self.opcode.name
        if self.layout.size > INSTRUCTION_BITS:
            raise ValueError(f"{name} layout must fit {INSTRUCTION_BITS} bits, not "
                             f"{self.layout.size}")
        unknown = sorted(({*self.nonzero}.union(*(region.field_names() for region in
                                                   (*self.reads, *self.writes)))
                          - set(self.fields)))
        if unknown:
            raise ValueError(f"{name} rules must name its fields {sorted(self.fields)}, "
                             f"not {unknown}")
        if (self.unit is None) != (self.counter is None):
            raise ValueError(f"{name} must have both a unit and a counter or neither, not "
                             f"unit={self.unit!r}, counter={self.counter!r}")
        if self.counter is not None and self.counter not in COUNTER_CLASSES:
            raise ValueError(f"{name} counter must be one of {COUNTER_CLASSES}, not "
                             f"{self.counter!r}")
        if self.reserved and (self.fields or self.unit):
            raise ValueError(f"reserved opcode {name} must have no fields and no unit")
        live_names = [field for field, _ in self.live]
        if sorted({*live_names} - set(self.fields)) or len(set(live_names)) != len(live_names):
            raise ValueError(f"{name} live fields must be distinct fields of "
                             f"{sorted(self.fields)}, not {live_names}")
        if any(kind is Live.TILE_WORDS for _, kind in self.live) and "tile_words" not in \
                self.fields:
            raise ValueError(f"{name} needs a tile_words field for a TILE_WORDS live field")

    @property
    def fields(self):
        """Field name -> ``amaranth.lib.data.Field`` (offset and width), opcode excluded."""
        return {name: field for name, field in self.layout if name != "opcode"}

    def view(self, instruction):
        """The fields of an instruction signal, ``view.src`` and so on."""
        return self.layout(instruction[:self.layout.size])

    def live_values(self, fields, state, stage=None):
        """Field name -> ``(flagged, live value)`` for the :attr:`live` fields.

        ``fields`` and ``state`` (a :class:`LiveState`) are ints or Amaranth values alike;
        ``flagged`` is the field's bit of ``live``; ``stage`` wraps a ``TILE_WORDS`` product.
        """
        values = {}
        for bit, (name, kind) in enumerate(self.live):
            value = {Live.TOKENS: state.tokens, Live.ALIVE: state.alive,
                     Live.TILES: state.tiles}.get(kind)
            if kind is Live.TILE_WORDS:
                value = (stage or _unstaged)(state.tiles * fields.tile_words)
            values[name] = ((fields.live >> bit) & 1, value)
        return values

    def empty(self, fields):
        """Whether a ``nonzero`` field is zero (a Python bool or a 1-bit Amaranth value)."""
        return reduce(operator.or_, (getattr(fields, name) == 0 for name in self.nonzero),
                      False)


def _choose(condition, chosen, otherwise):
    """``chosen`` if ``condition`` else ``otherwise``: a multiplexer for Amaranth values (no
    shift by a computed amount), a conditional expression for ints."""
    if isinstance(condition, Value):
        return Mux(condition, chosen, otherwise)
    return chosen if condition else otherwise


def _spec(opcode, fields=None, live=(), **rules):
    flags = {"beside": 1} if opcode in SIDE_ROWS else {}
    if live:
        flags["live"] = len(live)
    layout = data.StructLayout({"opcode": OPCODE_BITS, **(fields or {}), **flags})
    return OpcodeSpec(opcode=opcode, layout=layout, live=tuple(live), **rules)


_LOADED_WORDS = Formula("`count` (TBL: 16 x `count`, SIG: 8 x `count`)",
                        lambda f, array: _choose(
                            f.space == Space.TBL, f.count << _TABLE_ENTRIES_PER_WORD_LOG2,
                            _choose(f.space == Space.SIG,
                                    f.count << _SIGMOID_ENTRIES_PER_WORD_LOG2, f.count)))
_B_TILES = Formula("ceil(`n` / array)", lambda f, array: ceil_divide(f.n, array, SIZE_BITS))
_COPIED_WORDS = Formula("`tiles` x `words`", lambda f, array: f.tiles * f.words)
_CHANNEL_WORDS = Formula("array x `channel_tiles`", lambda f, array: f.channel_tiles * array)
_TOKEN_WORDS = Formula("array x `token_tiles`", lambda f, array: f.token_tiles * array)
_TOKEN_TILES = Formula("ceil(`tokens` / array)", lambda f, array: (f.tokens + array - 1) // array)
_ALIVE_TILES = Formula("ceil((1 + `alive`) / array)",
                       lambda f, array: (f.alive + array) // array)
_MEANS = Formula("`words` / `group`", lambda f, array: f.words // f.group)
_CARRIED_TILES = Formula("`m_tiles` + `carry`",
                         lambda f, array: f.m_tiles + getattr(f, "carry", 0))
_GROUP_WORDS = Formula("`blocks` x `kept_rows`", lambda f, array: f.blocks * f.kept_rows)
_B_SPACE = Formula("ACT if `b_act` else WGT",
                   lambda f, array: _choose(getattr(f, "b_act", 0), Space.ACT, Space.WGT))
_R_WORDS = Formula("`n` (0 without `residual`)",
                   lambda f, array: _choose(getattr(f, "residual", 0), f.n, 0))
_R_TILES = Formula("`m_tiles` (1 without `residual`)",
                   lambda f, array: _choose(getattr(f, "residual", 0), f.m_tiles, 1))

# Field widths: scratchpad words (addresses, strides, word counts), PRM and LNP
# entries, sizes (tiles, reduction depths, row lengths), external words.
_WORDS, _ENTRIES, _SIZE = SCRATCHPAD_ADDRESS_BITS, PARAMETER_ADDRESS_BITS, SIZE_BITS
_HEADS = MAX_SELECTOR_HEADS.bit_length()
_BLOCKS = 9         # 1..256 blocks of a group, 1..256 rows of a block
_SHIFT = 4          # log2 of the rows of a block, 1..8

_GEMM_FIELDS = {"a_addr": _WORDS, "a_stride": _WORDS, "b_addr": _WORDS, "b_stride": _WORDS,
                "c_addr": _WORDS, "c_stride": _WORDS, "p_addr": _ENTRIES, "k": _SIZE,
                "m_tiles": _SIZE, "n": _SIZE, "gelu": 1}

_ROW_TILES = {"src": _WORDS, "src_stride": _WORDS, "dst": _WORDS, "dst_stride": _WORDS,
              "m_tiles": _SIZE}


def _rows(start, length):
    """The ``m_tiles`` tiles of rows of ``length`` words a row-parallel instruction reads
    (``start="src"``) or writes (``start="dst"``)."""
    return Region(Space.ACT, start, length, tiles="m_tiles", stride=f"{start}_stride")


#: The computing instructions that run beside a host when their ``beside`` field asks
#: and :func:`beside_refusal` has nothing against it.
SIDE_ROWS = (Opcode.GELU, Opcode.SOFTMAX, Opcode.LAYERNORM, Opcode.ADD)
#: The opcodes a row instruction may run beside: the GEMMs, and the moves (a move reads ACT
#: and writes only WGT, so a piece of an attention head's softmax runs while another head's
#: keys or values move).
ROW_HOSTS = (Opcode.GEMM, Opcode.GEMM_SPARSE, Opcode.COPY_TO_WGT, Opcode.TRANSPOSE_TO_WGT)
#: The opcodes a load may run beside: the GEMMs, while they read the other WGT half and other
#: parameters, and the row instructions, which touch no scratchpad a load beside may fill
#: but LNP (a block's parameters load while its LayerNorm or the residual ADD before it runs).
LOAD_HOSTS = (Opcode.GEMM, Opcode.GEMM_SPARSE, *SIDE_ROWS)
#: The opcodes another instruction may run beside.
SIDE_HOSTS = tuple(dict.fromkeys((*ROW_HOSTS, *LOAD_HOSTS)))
#: The loads the hardware starts beside a host when :func:`load_may_run_beside`.
SIDE_LOADS = (Opcode.LOAD, Opcode.LOAD_SPARSE)
#: The hosts that run a load beside them together with a row instruction (the two
#: instructions after the host: a row of :data:`FAR_ROWS` beside it, then the load): the
#: GEMMs, whose side slot an attention head's softmax piece takes while the DMA is idle.
FAR_HOSTS = (Opcode.GEMM, Opcode.GEMM_SPARSE)
#: The row instructions beside a :data:`FAR_HOSTS` GEMM that leave room for a load beside
#: it too: all of them, as the far load fills only :data:`FAR_LOADED`.
FAR_ROWS = SIDE_ROWS
#: The scratchpads a load beside a host may fill: those no unit but the DMA writes, and that
#: have a write port of their own beside the reads (TBL's table sits in the element-wise
#: unit, which a GEMM's GELU reads).
LOADED_BESIDE = (Space.WGT, Space.IDX, Space.PRM, Space.LNP)
#: The scratchpads a far load (beside a GEMM and the row instruction beside it) may fill:
#: those of :data:`LOADED_BESIDE` that no row instruction reads (LayerNorm reads LNP).
FAR_LOADED = (Space.WGT, Space.IDX, Space.PRM)


#: The instruction set: opcode -> :class:`OpcodeSpec`.
ISA = {spec.opcode: spec for spec in (
    _spec(Opcode.NOP),
    _spec(Opcode.LOAD, {"space": 4, "dram_addr": MEMORY_ADDRESS_BITS, "spad_addr": _WORDS,
                        "count": _WORDS},
          nonzero=("count",), unit="dma", counter="load_store",
          writes=(Region("space", "spad_addr", _LOADED_WORDS),)),
    _spec(Opcode.STORE, {"spad_addr": _WORDS, "dram_addr": MEMORY_ADDRESS_BITS, "count": _WORDS},
          nonzero=("count",), unit="dma", counter="load_store",
          reads=(Region(Space.ACT, "spad_addr", "count"),)),
    _spec(Opcode.LOAD_SPARSE, {"dram_addr": MEMORY_ADDRESS_BITS, "spad_addr": _WORDS,
                               "tiles": _SIZE, "blocks": _BLOCKS, "kept_rows": _BLOCKS,
                               "block_shift": _SHIFT},
          nonzero=("tiles", "blocks", "kept_rows", "block_shift"), unit="dma",
          counter="load_store",
          writes=tuple(Region(space, "spad_addr", _GROUP_WORDS, tiles="tiles",
                              stride=_GROUP_WORDS) for space in (Space.WGT, Space.IDX))),
    _spec(Opcode.GEMM, {**_GEMM_FIELDS, "b_act": 1, "residual": 1, "r_addr": _WORDS,
                        "r_multiplier": MULTIPLIER_BITS, "c_multiplier": MULTIPLIER_BITS,
                        "r_shift": SHIFT_BITS},
          nonzero=("k", "m_tiles", "n"), unit="gemm", counter="gemm",
          live=(("m_tiles", Live.TILES), ("n", Live.TOKENS), ("k", Live.TOKENS)),
          reads=(Region(Space.ACT, "a_addr", "k", tiles="m_tiles", stride="a_stride"),
                 Region(_B_SPACE, "b_addr", "k", tiles=_B_TILES, stride="b_stride"),
                 Region(Space.PRM, "p_addr", "n"),
                 Region(Space.ACT, "r_addr", _R_WORDS, tiles=_R_TILES, stride="c_stride")),
          writes=(Region(Space.ACT, "c_addr", "n", tiles="m_tiles", stride="c_stride"),)),
    _spec(Opcode.GEMM_SPARSE, {**_GEMM_FIELDS, "depth": _SIZE},
          nonzero=("k", "m_tiles", "n", "depth"), unit="gemm", counter="gemm",
          live=(("m_tiles", Live.TILES),),
          reads=(Region(Space.ACT, "a_addr", "depth", tiles="m_tiles", stride="a_stride"),
                 Region(Space.WGT, "b_addr", "k", tiles=_B_TILES, stride="b_stride"),
                 Region(Space.IDX, "b_addr", "k", tiles=_B_TILES, stride="b_stride"),
                 Region(Space.PRM, "p_addr", "n")),
          writes=(Region(Space.ACT, "c_addr", "n", tiles="m_tiles", stride="c_stride"),)),
    _spec(Opcode.GELU, {"src": _WORDS, "dst": _WORDS, "count": _WORDS, "tile_words": _SIZE},
          nonzero=("count",), unit="eltwise", counter="eltwise",
          live=(("count", Live.TILE_WORDS),),
          reads=(Region(Space.ACT, "src", "count"),),
          writes=(Region(Space.ACT, "dst", "count"),)),
    _spec(Opcode.SOFTMAX, {**_ROW_TILES, "length": _SIZE, "ratio": RATIO_BITS,
                           "alpha": COEFFICIENT_BITS, "beta": COEFFICIENT_BITS,
                           "gamma": COEFFICIENT_BITS,
                           "probability_shift": PROBABILITY_SHIFT_BITS, "carry": 1,
                           "resume": 1},
          nonzero=("m_tiles", "length"), unit="softmax", counter="softmax",
          live=(("m_tiles", Live.TILES), ("length", Live.TOKENS)),
          reads=(Region(Space.ACT, "src", "length", tiles=_CARRIED_TILES,
                        stride="src_stride"),),
          writes=(_rows("dst", "length"),)),
    _spec(Opcode.LAYERNORM, {**_ROW_TILES, "channels": _SIZE, "lnp_addr": _ENTRIES,
                             "eps": EPS_BITS, "multiplier": MULTIPLIER_BITS,
                             "shift": SHIFT_BITS},
          nonzero=("m_tiles", "channels"), unit="layernorm", counter="layernorm",
          live=(("m_tiles", Live.TILES),),
          reads=(_rows("src", "channels"), Region(Space.LNP, "lnp_addr", "channels")),
          writes=(_rows("dst", "channels"),)),
    _spec(Opcode.ADD, {"x": _WORDS, "y": _WORDS, "dst": _WORDS, "count": _WORDS,
                       "x_multiplier": MULTIPLIER_BITS, "y_multiplier": MULTIPLIER_BITS,
                       "shift": SHIFT_BITS, "tile_words": _SIZE},
          nonzero=("count",), unit="eltwise", counter="eltwise",
          live=(("count", Live.TILE_WORDS),),
          reads=(Region(Space.ACT, "x", "count"), Region(Space.ACT, "y", "count")),
          writes=(Region(Space.ACT, "dst", "count"),)),
    _spec(Opcode.COPY_TO_WGT, {"src": _WORDS, "src_stride": _WORDS, "dst": _WORDS,
                               "tiles": _SIZE, "words": _SIZE},
          nonzero=("tiles", "words"), unit="moves", counter="move",
          live=(("tiles", Live.TILES),),
          reads=(Region(Space.ACT, "src", "words", tiles="tiles", stride="src_stride"),),
          writes=(Region(Space.WGT, "dst", _COPIED_WORDS),)),
    _spec(Opcode.TRANSPOSE_TO_WGT, {"src": _WORDS, "src_stride": _WORDS, "dst": _WORDS,
                                    "dst_stride": _WORDS, "token_tiles": _SIZE,
                                    "channel_tiles": _SIZE},
          nonzero=("token_tiles", "channel_tiles"), unit="moves", counter="move",
          live=(("token_tiles", Live.TILES),),
          reads=(Region(Space.ACT, "src", _CHANNEL_WORDS, tiles="token_tiles",
                        stride="src_stride"),),
          writes=(Region(Space.WGT, "dst", _TOKEN_WORDS, tiles="channel_tiles",
                         stride="dst_stride"),)),
    _spec(Opcode.TOKEN_SELECT, {"src": _WORDS, "src_stride": _WORDS, "dst": _WORDS,
                                "dst_stride": _WORDS, "channels": _SIZE, "scores": _WORDS,
                                "scores_stride": _WORDS, "weights": _WORDS, "heads": _HEADS,
                                "tokens": _SIZE, "alive": _SIZE, "keep": _SIZE, "mode": 1},
          nonzero=("channels", "heads", "tokens"), unit="selector", counter="select",
          live=(("tokens", Live.TOKENS), ("alive", Live.ALIVE)),
          reads=(Region(Space.ACT, "src", "channels", tiles=_TOKEN_TILES, stride="src_stride"),
                 Region(Space.ACT, "scores", "heads", tiles=_ALIVE_TILES,
                        stride="scores_stride"),
                 Region(Space.ACT, "weights", "heads")),
          writes=(Region(Space.ACT, "dst", "channels", tiles=_TOKEN_TILES,
                         stride="dst_stride"),)),
    _spec(Opcode.TOKEN_MEAN, {"src": _WORDS, "src_stride": _WORDS, "words": _SIZE,
                              "group": _SIZE, "alive": _SIZE, "dst": _WORDS,
                              "dst_stride": _WORDS, "dst_tiles": _SIZE},
          nonzero=("words", "group", "dst_tiles"), unit="selector", counter="select",
          live=(("alive", Live.ALIVE), ("dst_tiles", Live.TILES)),
          reads=(Region(Space.ACT, "src", "words", tiles=_ALIVE_TILES, stride="src_stride"),),
          writes=(Region(Space.ACT, "dst", _MEANS, tiles="dst_tiles", stride="dst_stride"),)),
    _spec(Opcode.SYNC),
    _spec(Opcode.DONE),
)}


#: The counter classes of the instructions that may run beside a host, in
#: :data:`COUNTER_CLASSES` order: the hardware counts, per class, the cycles they ran beside.
SIDE_CLASSES = tuple(name for name in COUNTER_CLASSES
                     if name in {ISA[opcode].counter for opcode in (*SIDE_LOADS, *SIDE_ROWS)})


def space_depth(space, config):
    """Entries of scratchpad ``space`` in an accelerator of ``config`` (AcceleratorConfig)."""
    depths = {Space.ACT: config.act_depth, Space.WGT: config.wgt_depth,
              Space.PRM: config.prm_depth, Space.LNP: config.lnp_depth,
              Space.TBL: GELU_TABLE_DEPTH, Space.SIG: SIGMOID_TABLE_DEPTH,
              Space.IDX: config.wgt_depth}
    return depths[Space(space)]


def written_activations(opcode, fields, array):
    """The :class:`Span` of the activation words an instruction computes (what trace mode
    stores), from its ``fields`` (a dict or an :class:`Instruction`) and ``array``.

    ``None`` for an opcode that writes no region in ACT by its definition (a
    LOAD writes the scratchpad its ``space`` field names: it moves data, it
    computes nothing).
    """
    if isinstance(fields, dict):
        fields = SimpleNamespace(**fields)
    for region in ISA[Opcode(opcode)].writes:
        if region.space is Space.ACT:
            return region.span(fields, array)
    return None


def load_may_run_beside(host, host_fields, load, load_fields, array, stage=None):
    """Whether ``load`` may run while ``host`` executes (``docs/isa.md``, Ordering).

    ``host`` is an opcode of :data:`LOAD_HOSTS` and ``load`` one of
    :data:`SIDE_LOADS`. It may if it fills at least one word, only words of
    :data:`LOADED_BESIDE`, and none that the host reads or writes (the
    compiler alternates halves of WGT, and of IDX with it, for this). The fields are
    ints, or views of instruction signals: the result is then a 1-bit
    Amaranth value. Hardware's ``stage`` registers each region's terms, their
    tiles-stride product and the words compared; the inputs must be held for
    those three cycles (and the result's own), as terms of different depths meet.
    """
    stage = stage or _unstaged

    def staged(span):
        return Span(*(stage(term) for term in (span.space, span.first, span.end)), span.stride)

    allowed = stage(ISA[load].empty(load_fields) == 0)
    used = [staged(region.span(host_fields, array, stage))
            for region in (*ISA[host].reads, *ISA[host].writes)
            if region.space in LOADED_BESIDE or isinstance(region.space, Formula)]
    for written in ISA[load].writes:
        loaded = staged(written.span(load_fields, array, stage))
        fills = 0
        for space in LOADED_BESIDE:
            fills = fills | (loaded.space == space)
        allowed = allowed & fills
        for span in used:
            allowed = allowed & ((loaded.space != span.space) | (loaded.end <= span.first)
                                 | (loaded.first >= span.end))
    return allowed


def far_load_fills(load, load_fields, array):
    """Whether ``load`` (of :data:`SIDE_LOADS`) fills only :data:`FAR_LOADED`, as a load in
    the far slot must (``docs/isa.md``, Ordering). ``load_fields`` are ints or a view of an
    instruction signal: the result is then a 1-bit Amaranth value."""
    allowed = 1
    for written in ISA[load].writes:
        space = written.span(load_fields, array).space
        fills = 0
        for far_space in FAR_LOADED:
            fills = fills | (space == far_space)
        allowed = allowed & fills
    return allowed


def row_starts_beside(opcode, fields, act_banks):
    """Whether the hardware starts ``opcode`` (of :data:`SIDE_ROWS`) with ``fields`` beside
    the host before it, on an accelerator of ``act_banks`` ACT banks: with two banks, when
    its ``beside`` field is set, it has no live flags and no field is zero that must not be.

    The regions are the program's promise (:func:`beside_refusal`). ``fields`` are ints
    (a field left out is 0, its encoding's default) or a view of an instruction signal:
    the result is then a 1-bit Amaranth value.
    """
    if act_banks == 1:
        return 0
    beside, live = (getattr(fields, name, 0) for name in ("beside", "live"))
    return beside & (ISA[opcode].empty(fields) == 0) & (live == 0)


def _act_spans(spec, fields, array, regions):
    """The ACT words of ``regions`` ("reads" or "writes"), empty regions (a GEMM's residual
    when it has none) left out."""
    spans = (region.span(fields, array) for region in getattr(spec, regions))
    return [span for span in spans if span.space == Space.ACT and span.end > span.first]


def _bank(span, bank_start):
    """The ACT bank a span lies in, or ``None`` if it crosses ``bank_start``."""
    if span.end <= bank_start:
        return 0
    return 1 if span.first >= bank_start else None


def _words(span):
    return f"ACT words {span.first}..{span.end - 1}"


def beside_refusal(host, side, array, bank_start):
    """Why ``side`` may not run beside ``host`` (``docs/isa.md``, Ordering), or ``None``.

    ``side`` (an :class:`Instruction` of :data:`SIDE_ROWS` whose ``beside`` field
    is set) starts while ``host``, the instruction before it, executes. That
    needs: a host of :data:`ROW_HOSTS`; no GELU or ADD beside a GEMM that adds a
    residual (on the element-wise unit); no live fields in ``side`` (the hardware
    starts it as written); two ACT banks (``bank_start``, the first word of the
    second, or ``None`` for one bank); every ACT region of both in one bank; the
    side reading only the bank the host does not read and writing only the bank
    the host does not write (each bank has one read and one write port); and no
    word the host reads written by the side, none it writes read by the side.
    Regions count as their hull (first tile to last), and ``host``'s fields are
    the values it executes with.
    """
    if host is None or host.opcode not in ROW_HOSTS:
        before = "nothing" if host is None else host.opcode.name
        return f"the instruction before it is {before}, not one of " \
               f"{[opcode.name for opcode in ROW_HOSTS]}"
    name = host.opcode.name
    if host.opcode == Opcode.GEMM and host.fields.get("residual") and ISA[side.opcode].unit \
            == ISA[Opcode.ADD].unit:
        return f"the {name} adds its residual on the element-wise unit, which {side.opcode.name}" \
               f" needs"
    if side.fields.get("live"):
        return f"it flags live fields, and an instruction beside a {name} runs as written"
    if bank_start is None:
        return f"ACT has one bank (act_banks=1), so the {name}'s ports are the only ones"
    spans = {(who, kind): _act_spans(ISA[instruction.opcode], instruction, array, kind)
             for who, instruction in (("host", host), ("side", side))
             for kind in ("reads", "writes")}
    for (who, kind), group in spans.items():
        for span in group:
            if _bank(span, bank_start) is None:
                owner = f"the {name}" if who == "host" else "it"
                return f"{owner} {kind[:-1]}s {_words(span)}, across the bank boundary " \
                       f"{bank_start}"
    for kind, other in (("reads", "writes"), ("writes", "reads")):
        for span in spans["side", kind]:
            for used in spans["host", kind]:
                if _bank(span, bank_start) == _bank(used, bank_start):
                    return f"it {kind[:-1]}s {_words(span)} in bank " \
                           f"{_bank(span, bank_start)}, whose {kind[:-1]} port the {name} " \
                           f"uses ({_words(used)})"
            for used in spans["host", other]:
                if span.first < used.end and used.first < span.end:
                    return f"it {kind[:-1]}s {_words(span)}, which the {name} " \
                           f"{other[:-1]}s ({_words(used)})"
    return None


@dataclass(frozen=True)
class Instruction:
    """An opcode and its field values (all unsigned integers); a field that :func:`encode`
    defaults reads as its default when ``fields`` leaves it out."""

    opcode: Opcode
    fields: dict

    def __getattr__(self, name):
        try:
            return self.fields[name]
        except KeyError:
            if name in _FIELD_DEFAULTS and name in ISA[self.opcode].fields:
                return _FIELD_DEFAULTS[name]
            raise AttributeError(f"{self.opcode.name} has no field {name!r}") from None

    def __repr__(self):
        args = ", ".join(f"{name}={value}" for name, value in self.fields.items())
        return f"{self.opcode.name}({args})"


def resolve(instruction, state):
    """``instruction`` with its flagged live fields replaced by their values in ``state``.

    Returns
    -------
    (Instruction, list of str)
        The instruction as the units execute it, and the flagged fields whose
        live value exceeds the instruction's own (a run stops on them with
        ``ERROR_LIVE``).
    """
    spec = ISA[instruction.opcode]
    fields = SimpleNamespace(**instruction.fields)
    values, exceeding = dict(instruction.fields), []
    for name, (flagged, value) in spec.live_values(fields, state).items():
        if flagged:
            values[name] = value
            if value > instruction.fields[name]:
                exceeding.append(name)
    return Instruction(instruction.opcode, values), exceeding


#: Fields :func:`encode` fills in when they are not given: no field live, no tile size.
_FIELD_DEFAULTS = {"live": 0, "tile_words": 0, "beside": 0, "gelu": 0, "carry": 0, "resume": 0,
                   "b_act": 0, "residual": 0, "r_addr": 0, "r_multiplier": 0,
                   "c_multiplier": 0, "r_shift": 0}


def encode(opcode, **values):
    """The 256-bit word of ``opcode`` with ``values``.

    Every field must be given and fit, except ``live``, ``tile_words``,
    ``beside``, ``gelu``, ``carry``, ``resume``, ``b_act`` and a GEMM's residual fields
    (``residual``, ``r_addr``, ``r_multiplier``, ``c_multiplier``, ``r_shift``), which
    are 0 unless given (no field takes a live value, nothing runs beside, no GELU in a
    GEMM's write-back, a SOFTMAX neither carries maxima nor resumes, a GEMM's B is in WGT
    and its results are written as they are).
    """
    spec = ISA[Opcode(opcode)]
    name = spec.opcode.name
    if spec.reserved:
        raise ValueError(f"opcode {name} is reserved and has no encoding yet")
    layout = spec.fields
    values = {**{key: value for key, value in _FIELD_DEFAULTS.items() if key in layout},
              **values}
    missing = sorted(set(layout) - set(values))
    unknown = sorted(set(values) - set(layout))
    if missing or unknown:
        raise ValueError(f"{name} needs fields {sorted(layout)}; missing {missing}, "
                         f"unknown {unknown}")
    word = int(spec.opcode)
    for field_name, field in layout.items():
        value = values[field_name]
        if not isinstance(value, int) or isinstance(value, bool):
            value = int(value)
        if not 0 <= value < 1 << field.width:
            raise ValueError(f"{name} field {field_name} must lie in "
                             f"[0, {(1 << field.width) - 1}], not {value}")
        word |= value << field.offset
    return word


def decode(word):
    """The :class:`Instruction` in a 256-bit word.

    Raises
    ------
    ValueError
        On an unknown or reserved opcode, or bits set outside the opcode's fields.
    """
    code = word & ((1 << OPCODE_BITS) - 1)
    try:
        spec = ISA[Opcode(code)]
    except ValueError:
        raise ValueError(f"unknown opcode 0x{code:02x}") from None
    if spec.reserved:
        raise ValueError(f"opcode {spec.opcode.name} is reserved")
    if word >> spec.layout.size:
        raise ValueError(f"{spec.opcode.name} instruction has bits set outside its fields")
    fields = {name: (word >> field.offset) & ((1 << field.width) - 1)
              for name, field in spec.fields.items()}
    return Instruction(spec.opcode, fields)
