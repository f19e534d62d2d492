"""The GEMM command (tile descriptor) and its bit layout."""

from dataclasses import dataclass, fields

from amaranth.lib import data
from amaranth.utils import bits_for, ceil_log2

__all__ = ["GemmDescriptor", "descriptor_layout"]


def _address_width(depth):
    return max(1, ceil_log2(depth))


def descriptor_layout(config):
    """Bit layout of a :class:`GemmDescriptor` for ``config``.

    Address fields are as wide as their buffer's address; strides likewise;
    ``k`` holds ``1..k_max``; ``m_tiles`` holds up to ``a_depth`` tiles and
    ``n`` up to ``param_depth`` columns.
    """
    a_width = _address_width(config.a_depth)
    b_width = _address_width(config.b_depth)
    c_width = _address_width(config.c_depth)
    p_width = _address_width(config.param_depth)
    return data.StructLayout({
        "a_addr":   a_width,
        "a_stride": a_width,
        "b_addr":   b_width,
        "b_stride": b_width,
        "c_addr":   c_width,
        "c_stride": c_width,
        "p_addr":   p_width,
        "k":        bits_for(config.k_max),
        "m_tiles":  bits_for(config.a_depth),
        "n":        bits_for(config.param_depth),
        "sparse":   1,
    })


@dataclass(frozen=True, kw_only=True)
class GemmDescriptor:
    """One GEMM command: ``m_tiles`` row tiles by ``ceil(n / cols)`` column tiles.

    The engine computes, for every row tile ``mt < m_tiles`` and output column
    ``j < n``::

        acc[i]   = sum(A[a_addr + mt*a_stride + k][i] * B[b_addr + (j//C)*b_stride + k][j%C]
                       for k in range(self.k))
        C[c_addr + mt*c_stride + j][i] = requantize(acc[i], P[p_addr + j])

    with ``i`` the lane (``0 <= i < rows``) and ``C`` the number of PE columns.
    See ``docs/numerics.md`` for ``requantize`` and ``docs/architecture.md`` for
    the buffer layouts.

    A ``sparse`` command (HP-pruned weights, ``docs/sparsity.md``) reads A word
    ``a_addr + mt*a_stride + I[b]`` instead of ``a_addr + mt*a_stride + k``,
    where ``b`` is the B word of the same step and ``I`` the index buffer (one
    A-row number per B word). The indices must stay inside the A tile; this
    descriptor cannot check them, so :meth:`check` leaves A out.

    On an engine with ``k_per_cycle = s > 1`` a dense command reads A and B
    in aligned groups of ``s`` words, so ``a_addr``, ``a_stride``, ``b_addr``
    and ``b_stride`` must be multiples of ``s`` (the words of a group past
    ``k`` are read and ignored). Sparse commands read single words anywhere.
    """

    a_addr: int
    a_stride: int
    b_addr: int
    b_stride: int
    c_addr: int
    c_stride: int
    p_addr: int
    k: int
    m_tiles: int
    n: int
    sparse: int = 0

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"descriptor field {field.name} must be an integer, "
                                f"not {value!r}")
            if value < 0:
                raise ValueError(f"descriptor field {field.name} must be non-negative, "
                                 f"not {value!r}")
        for name in ("k", "m_tiles", "n"):
            if getattr(self, name) == 0:
                raise ValueError(f"descriptor field {name} must be positive, not 0")
        if self.sparse not in (0, 1):
            raise ValueError(f"descriptor field sparse must be 0 or 1, not {self.sparse}")

    @classmethod
    def from_fields(cls, values, sparse=0):
        """The descriptor of a mapping that holds its fields among others (a GEMM or
        GEMM_SPARSE instruction's, which also has ``live``)."""
        return cls(**{field.name: values[field.name] for field in fields(cls)
                      if field.name != "sparse"}, sparse=sparse)

    def n_tiles(self, config):
        """Column tiles of this command on ``config``'s array."""
        return -(-self.n // config.cols)

    def check(self, config):
        """Raise :exc:`ValueError` unless every access of this command stays in bounds
        and, on a ``k_per_cycle > 1`` engine, a dense command's A and B are aligned."""
        if self.k > config.k_max:
            raise ValueError(f"descriptor field k must be at most k_max={config.k_max}, "
                             f"not {self.k}")
        if not self.sparse:
            for name in ("a_addr", "a_stride", "b_addr", "b_stride"):
                value = getattr(self, name)
                if value % config.k_per_cycle:
                    raise ValueError(f"descriptor field {name} must be a multiple of "
                                     f"k_per_cycle={config.k_per_cycle} in a dense command, "
                                     f"not {value}")
        spans = {
            # name: (first word, last word touched, buffer depth, config field)
            "B": (self.b_addr,
                  self.b_addr + (self.n_tiles(config) - 1) * self.b_stride + self.k - 1,
                  config.b_depth, "b_depth"),
            "C": (self.c_addr, self.c_addr + (self.m_tiles - 1) * self.c_stride + self.n - 1,
                  config.c_depth, "c_depth"),
            "parameter": (self.p_addr, self.p_addr + self.n - 1,
                          config.param_depth, "param_depth"),
        }
        if not self.sparse:
            spans["A"] = (self.a_addr,
                          self.a_addr + (self.m_tiles - 1) * self.a_stride + self.k - 1,
                          config.a_depth, "a_depth")
        for buffer, (first, last, depth, depth_name) in spans.items():
            if last >= depth:
                raise ValueError(
                    f"GEMM command reads or writes {buffer} buffer words {first}..{last}, "
                    f"beyond {depth_name}={depth}")

    def encode(self, config):
        """The command as an integer in :func:`descriptor_layout` bit order."""
        self.check(config)
        layout = descriptor_layout(config)
        word = 0
        for name, field in layout:
            value = getattr(self, name)
            if value >= 1 << field.width:
                raise ValueError(f"descriptor field {name}={value} does not fit "
                                 f"{field.width} bits")
            word |= value << field.offset
        return word
