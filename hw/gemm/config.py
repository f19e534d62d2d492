"""Configuration of the GEMM engine: the single source of every size and width."""

from dataclasses import asdict, dataclass, fields
import json

from amaranth.utils import bits_for

from vitforge.errors import ConfigError, ConfigTypeError

from ..checks import check_lanes, check_positive_int
from .array import ARRAY_LATENCY
from .cascade_array import cascade_array_latency
from ..numerics import MAX_ACC_BITS, MAX_PRODUCT

__all__ = ["GemmConfig", "accumulator_width", "check_k_per_cycle", "K_PER_CYCLE"]

#: The reduction steps per cycle an engine may take (powers of two, so that
#: A and B addresses split into bank and row without a divider).
K_PER_CYCLE = (1, 2, 4)


def accumulator_width(k_max):
    """Smallest signed width that holds a sum of ``k_max`` int8 products, ``+-k_max * 128**2``."""
    return (k_max * MAX_PRODUCT).bit_length() + 1


def check_k_per_cycle(k_per_cycle, macs_per_dsp):
    """Raise :exc:`ConfigError` unless ``k_per_cycle`` is one of :data:`K_PER_CYCLE` and,
    above 1, ``macs_per_dsp`` is 2 (the cascade array packs two columns per DSP)."""
    if k_per_cycle not in K_PER_CYCLE:
        raise ConfigError(f"k_per_cycle must be one of {K_PER_CYCLE}, not {k_per_cycle}")
    if k_per_cycle > 1 and macs_per_dsp != 2:
        raise ConfigError(f"macs_per_dsp must be 2 when k_per_cycle is {k_per_cycle} (the DSP "
                          f"cascades pack two columns), not {macs_per_dsp}")


@dataclass(frozen=True, kw_only=True)
class GemmConfig:
    """Sizes of one GEMM engine.

    Parameters
    ----------
    rows : int
        PE rows ``R``: output rows (tokens) computed per tile, and lanes of an
        activation-buffer word.
    cols : int
        PE columns ``C``: output columns (channels) computed per tile, and lanes
        of a weight-buffer word.
    k_max : int
        Largest reduction depth ``K`` of one GEMM command, at most ``a_depth``
        and ``b_depth`` (one tile of depth ``K`` takes ``K`` words). It bounds
        the accumulator: ``|acc| <= k_max * 128 * 128``.
    a_depth, b_depth, c_depth : int
        Words in the activation (A), weight (B) and output (C) buffers. An A or
        C word holds ``rows`` int8 lanes, a B word ``cols`` int8 lanes.
    param_depth : int
        Output channels held by the requantization parameter buffer.
    acc_width : int
        Accumulator width in bits, at least :attr:`required_acc_width` and at
        most 32 (the accumulator is int32 in ``docs/numerics.md``).
    macs_per_dsp : int
        1: one multiplier per PE; 2: the PEs of two adjacent columns share one
        DSP48E2 (:class:`~vitforge.hw.gemm.pe_pair.PackedPEPair`, Xilinx
        WP486), so ``rows x cols`` MACs take ``rows x cols / 2`` multipliers
        (``cols`` must be even). Results and cycles do not depend on it.
    k_per_cycle : int
        Reduction steps each PE adds per cycle: 1, or 2 or 4 on a
        :class:`~vitforge.hw.gemm.cascade_array.CascadeArray` (two columns per
        DSP48E2, ``macs_per_dsp`` 2), whose DSPs sum ``k_per_cycle`` products
        on their cascade before one fabric accumulator pair. A and B reads
        return ``k_per_cycle`` consecutive words, so dense commands address
        A and B in aligned groups of that many (see
        :meth:`GemmDescriptor.check`).
    """

    rows: int = 16
    cols: int = 16
    k_max: int = 768
    a_depth: int = 16384
    b_depth: int = 16384
    c_depth: int = 16384
    param_depth: int = 4096
    acc_width: int = 32
    macs_per_dsp: int = 1
    k_per_cycle: int = 1

    def __post_init__(self):
        for field in fields(self):
            check_positive_int(field.name, getattr(self, field.name))
        check_lanes("rows", self.rows)
        check_lanes("cols", self.cols)
        for depth_name in ("a_depth", "b_depth"):
            depth = getattr(self, depth_name)
            if self.k_max > depth:
                raise ConfigError(f"k_max must be at most {depth_name}={depth}, the deepest "
                                  f"tile that buffer holds, not {self.k_max}")
        if self.macs_per_dsp not in (1, 2):
            raise ConfigError(f"macs_per_dsp must be 1 or 2, not {self.macs_per_dsp}")
        if self.macs_per_dsp == 2 and self.cols % 2:
            raise ConfigError(f"cols must be even when macs_per_dsp is 2 (two columns share "
                              f"a DSP), not {self.cols}")
        check_k_per_cycle(self.k_per_cycle, self.macs_per_dsp)
        if self.k_per_cycle > 1:
            for depth_name in ("a_depth", "b_depth"):
                depth = getattr(self, depth_name)
                if depth % self.k_per_cycle:
                    raise ConfigError(f"{depth_name} must be a multiple of k_per_cycle="
                                      f"{self.k_per_cycle} (one bank per step), not {depth}")
        if self.acc_width > MAX_ACC_BITS:
            raise ConfigError(f"acc_width must be at most {MAX_ACC_BITS}, not {self.acc_width!r}")
        if self.acc_width < self.required_acc_width:
            raise ConfigError(
                f"acc_width must be at least {self.required_acc_width} to hold "
                f"k_max * 128 * 128 = {self.acc_bound}, not {self.acc_width!r}")

    @property
    def acc_bound(self):
        """Largest accumulator magnitude a command of depth ``k_max`` can reach."""
        return self.k_max * MAX_PRODUCT

    @property
    def required_acc_width(self):
        """Smallest signed width that holds ``+-acc_bound``."""
        return accumulator_width(self.k_max)

    @property
    def index_bits(self):
        """Width of an index-buffer entry (an A-row number below ``k_max``, sparse commands)."""
        return bits_for(self.k_max - 1)

    @property
    def pes(self):
        """Number of processing elements, ``rows * cols``."""
        return self.rows * self.cols

    @property
    def array_latency(self):
        """Cycles from operands at the array to sums in its result registers: a
        :class:`~vitforge.hw.gemm.array.PEArray`'s, or with ``k_per_cycle > 1`` a
        :class:`~vitforge.hw.gemm.cascade_array.CascadeArray`'s."""
        if self.k_per_cycle == 1:
            return ARRAY_LATENCY
        return cascade_array_latency(self.k_per_cycle)

    @property
    def macs_per_cycle(self):
        """Int8 multiply-accumulates the array does per cycle, ``pes * k_per_cycle``."""
        return self.pes * self.k_per_cycle

    @property
    def multipliers(self):
        """DSP48E2 multipliers of the array, ``macs_per_cycle / macs_per_dsp``."""
        return self.macs_per_cycle // self.macs_per_dsp

    def tile_issues(self, k, sparse=False):
        """Reduction steps the controller issues for one output tile of depth ``k``:
        ``ceil(k / k_per_cycle)`` for a dense command (aligned slabs), ``k`` for a sparse one
        (single gathered entries). A tile lasts at least ``cols`` cycles besides."""
        return k if sparse else -(-k // self.k_per_cycle)

    def to_dict(self):
        return asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data):
        """Build a config from a mapping, rejecting unknown keys by name."""
        if not isinstance(data, dict):
            raise ConfigTypeError(f"GEMM config must be a mapping, not {data!r}")
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"GEMM config has unknown key {unknown[0]!r}; "
                              f"known keys are {sorted(known)}")
        return cls(**data)
