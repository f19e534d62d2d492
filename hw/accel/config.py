"""Configuration of the programmable accelerator."""

from dataclasses import asdict, dataclass, fields

from vitforge.errors import ConfigError

from ..checks import check_positive_int
from ..gemm.config import GemmConfig

__all__ = ["AcceleratorConfig", "DRAM_WORD_BYTES"]

#: External memory is addressed in words of 16 bytes (a 128-bit AXI beat).
DRAM_WORD_BYTES = 16


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
        in one cycle (one word per cycle); 1 halves ADD's throughput but keeps
        the scratchpad in one copy of block RAM instead of two.
    """

    array: int = 16
    act_depth: int = 65536
    wgt_depth: int = 32768
    prm_depth: int = 4096
    lnp_depth: int = 1024
    k_max: int = 1024
    act_read_ports: int = 2

    def __post_init__(self):
        for field in fields(self):
            check_positive_int(field.name, getattr(self, field.name))
        if self.act_read_ports not in (1, 2):
            raise ConfigError(f"act_read_ports must be 1 or 2, not {self.act_read_ports}")
        self.gemm    # checks the GEMM engine's own rules

    @property
    def gemm(self):
        """The GEMM engine inside: A and C share the activation scratchpad."""
        return GemmConfig(rows=self.array, cols=self.array, k_max=self.k_max,
                          a_depth=self.act_depth, b_depth=self.wgt_depth,
                          c_depth=self.act_depth, param_depth=self.prm_depth)

    @property
    def act_entry_words(self):
        """External-memory words per activation (or weight) scratchpad word."""
        return -(-self.array // DRAM_WORD_BYTES)

    def to_dict(self):
        return asdict(self)
