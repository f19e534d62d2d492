"""Configuration of the programmable accelerator."""

from dataclasses import asdict, dataclass, fields

from vitforge.errors import ConfigError

from ..checks import check_lanes, check_positive_int
from ..numerics import GELU_TABLE_DEPTH, SIGMOID_BITS
from ..gemm.config import GemmConfig, accumulator_width, check_k_per_cycle

__all__ = ["AcceleratorConfig", "DRAM_WORD_BYTES", "MEMORY_ADDRESS_BITS",
           "SCRATCHPAD_ADDRESS_BITS", "PARAMETER_ADDRESS_BITS", "SIZE_BITS",
           "TABLE_ENTRIES_PER_WORD", "TABLE_WORDS", "SIGMOID_ENTRIES_PER_WORD",
           "SIGMOID_TABLE_DEPTH", "SIGMOID_WORDS", "MAX_SELECT_TOKENS"]

#: External memory is addressed in words of 16 bytes (a 128-bit AXI beat).
DRAM_WORD_BYTES = 16
#: External word addresses in instructions and on the memory port.
MEMORY_ADDRESS_BITS = 32
#: Instructions address (and count) ACT and WGT words with this many bits.
SCRATCHPAD_ADDRESS_BITS = 20
#: Instructions address PRM and LNP entries with this many bits.
PARAMETER_ADDRESS_BITS = 16
#: Tile counts, reduction depths, row lengths and channel counts in instructions.
SIZE_BITS = 16
#: The GELU table's one-byte entries fill external words whole: 16 words of 16.
TABLE_ENTRIES_PER_WORD = DRAM_WORD_BYTES
TABLE_WORDS = GELU_TABLE_DEPTH // TABLE_ENTRIES_PER_WORD
#: The token selector's sigmoid tables (SIG): the keep table at entries 0..255, the head
#: weight table at 256..511, 16-bit entries, 8 to an external word.
SIGMOID_TABLE_DEPTH = 2 * GELU_TABLE_DEPTH
SIGMOID_ENTRIES_PER_WORD = 8 * DRAM_WORD_BYTES // SIGMOID_BITS
SIGMOID_WORDS = SIGMOID_TABLE_DEPTH // SIGMOID_ENTRIES_PER_WORD
#: Most tokens a TOKEN_SELECT scores: the selector unit keeps a score per token.
MAX_SELECT_TOKENS = 1024


@dataclass(frozen=True, kw_only=True)
class AcceleratorConfig:
    """Sizes of the programmable accelerator.

    Parameters
    ----------
    array : int
        The PE array is ``array x array`` (square: attention reuses activation
        words as weight words, see ``docs/isa.md``).
    act_depth : int
        Words of ``array`` int8 in the activation scratchpad.
    wgt_depth : int
        Words of ``array`` int8 in the weight scratchpad.
    prm_depth : int
        GEMM requantization parameter entries (one per output channel).
    lnp_depth : int
        LayerNorm gamma/beta entries (one per channel).
    k_max : int
        Deepest GEMM reduction.
    act_read_ports : int
        Read ports of the activation scratchpad: 2 lets ADD read both operands
        in one cycle (one word per cycle) and SOFTMAX find a tile's maxima
        during the tile before it (two passes per tile instead of three); 1
        keeps the scratchpad in one copy of block RAM instead of two, at half
        ADD's throughput and a maxima pass per softmax tile.
    macs_per_dsp : int
        1, or 2 to pack two int8 MACs into each DSP48E2 (``docs/architecture.md``).
    act_banks : int
        1, or 2 to split the activation scratchpad into two banks, each with its
        own ports: words below :attr:`act_bank_start` and the rest. A SOFTMAX,
        LAYERNORM, GELU or ADD then runs beside a GEMM when its ``beside`` field
        asks and it uses the banks' ports the GEMM does not (``docs/isa.md``,
        Ordering).
    k_per_cycle : int
        1, or 2 or 4 reduction steps per GEMM cycle on DSP48E2 cascades
        (``macs_per_dsp`` 2, ``docs/architecture.md``): ACT and WGT are then
        that many interleaved memories, and a dense GEMM's A and B must be
        aligned groups of that many words.
    """

    array: int = 16
    act_depth: int = 65536
    wgt_depth: int = 32768
    prm_depth: int = 4096
    lnp_depth: int = 1024
    k_max: int = 1024
    act_read_ports: int = 2
    macs_per_dsp: int = 1
    act_banks: int = 2
    k_per_cycle: int = 1

    def __post_init__(self):
        for field in fields(self):
            check_positive_int(field.name, getattr(self, field.name))
        check_lanes("array", self.array)
        check_k_per_cycle(self.k_per_cycle, self.macs_per_dsp)
        if self.act_read_ports not in (1, 2):
            raise ConfigError(f"act_read_ports must be 1 or 2, not {self.act_read_ports}")
        if self.act_banks not in (1, 2):
            raise ConfigError(f"act_banks must be 1 or 2, not {self.act_banks}")
        if self.act_banks == 2 and self.act_depth < 2 * self.k_per_cycle:
            raise ConfigError(f"act_depth must be at least {2 * self.k_per_cycle} for two ACT "
                              f"banks, not {self.act_depth}")
        if self.macs_per_dsp == 2 and self.array % 2:
            raise ConfigError(f"array must be even when macs_per_dsp is 2 (two columns share "
                              f"a DSP), not {self.array}")
        for name in ("act_depth", "wgt_depth"):
            if getattr(self, name) % self.k_per_cycle:
                raise ConfigError(f"{name} must be a multiple of k_per_cycle="
                                  f"{self.k_per_cycle} (interleaved memories of equal depth), "
                                  f"not {getattr(self, name)}")
        # Instruction fields address depth - 1 and count up to k_max.
        limits = {"act_depth": 1 << SCRATCHPAD_ADDRESS_BITS,
                  "wgt_depth": 1 << SCRATCHPAD_ADDRESS_BITS,
                  "prm_depth": 1 << PARAMETER_ADDRESS_BITS,
                  "lnp_depth": 1 << PARAMETER_ADDRESS_BITS, "k_max": (1 << SIZE_BITS) - 1}
        for name, limit in limits.items():
            if getattr(self, name) > limit:
                raise ConfigError(f"{name} must be at most {limit} (what the instruction "
                                  f"fields reach), not {getattr(self, name)}")
        self.gemm    # checks the GEMM engine's own rules

    @property
    def gemm(self):
        """The GEMM engine inside: A and C share the activation scratchpad, and B, in
        WGT, may be in it too (a GEMM's ``b_act``) with a second read port: B's addresses
        reach the deeper of the two.

        Its accumulators are as wide as ``k_max`` needs, no wider.
        """
        b_depth = max(self.wgt_depth, self.act_depth if self.act_read_ports == 2 else 0)
        return GemmConfig(rows=self.array, cols=self.array, k_max=self.k_max,
                          acc_width=accumulator_width(self.k_max),
                          a_depth=self.act_depth, b_depth=b_depth,
                          c_depth=self.act_depth, param_depth=self.prm_depth,
                          macs_per_dsp=self.macs_per_dsp, k_per_cycle=self.k_per_cycle)

    @property
    def act_bank_start(self):
        """The first word of the second ACT bank: the largest power of two below
        ``act_depth`` (its top address bit selects the bank); ``None`` for one bank."""
        if self.act_banks == 1:
            return None
        return 1 << ((self.act_depth - 1).bit_length() - 1)

    @property
    def act_entry_words(self):
        """External-memory words per activation scratchpad word."""
        return -(-self.array // DRAM_WORD_BYTES)

    def weight_words(self, entries):
        """External-memory words of ``entries`` consecutive weight (WGT) entries as a LOAD
        or LOAD_SPARSE's values hold them: back to back, ``array`` bytes each, the last word
        zero-padded, when an entry is wider than a word; else a word each."""
        if self.array <= DRAM_WORD_BYTES:
            return entries
        return -(-entries * self.array // DRAM_WORD_BYTES)

    def to_dict(self):
        return asdict(self)
