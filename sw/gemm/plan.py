"""Placing a GEMM on the engine: buffer regions, command, words to load."""

from dataclasses import dataclass

import numpy as np

from vitforge.errors import ConfigError
from vitforge.hw.checks import check_positive_int
from vitforge.hw.gemm.descriptor import GemmDescriptor
from vitforge.sw.golden.gemm.requantize import check_requant_params, requantize

from .layout import aligned, pack_activations, pack_weights, tiles, unpack_activations
from .sparse import HPSparseWeight

__all__ = ["GemmProblem", "GemmJob", "plan_gemm", "plan_sparse_gemm", "check_shape",
           "ideal_cycles", "command_cycles"]

#: After a tile's last issue: the drain starts 2 cycles (address register, buffer
#: read) and the array's latency later, and lasts ``cols`` cycles; a drained column
#: is written 7 cycles later (column register, six requantizer stages).
_READ_DELAY = 2
_WRITE_DELAY = 7


@dataclass(frozen=True)
class GemmProblem:
    """``Y = requantize(A @ B, bias, multiplier, shift)``, all integers.

    Parameters
    ----------
    a : int8 ``M x K``
    b : int8 ``K x N``
    bias : int32-range ``N``
    multiplier : ``N`` values in ``[0, 2**16)``
    shift : ``N`` values in ``[0, 63]``
    """

    a: np.ndarray
    b: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray

    def __post_init__(self):
        for name in ("a", "b"):
            matrix = getattr(self, name)
            if not isinstance(matrix, np.ndarray) or matrix.ndim != 2:
                raise ValueError(f"{name} must be a 2-D numpy array, not {type(matrix).__name__}"
                                 f" of shape {np.shape(matrix)}")
            if matrix.dtype != np.int8:
                raise TypeError(f"{name} must have dtype int8, not {matrix.dtype}")
            if 0 in matrix.shape:
                raise ValueError(f"{name} must not be empty, not of shape {matrix.shape}")
        if self.a.shape[1] != self.b.shape[0]:
            raise ValueError(f"a columns must equal b rows, not {self.a.shape[1]} and "
                             f"{self.b.shape[0]}")
        for name in ("bias", "multiplier", "shift"):
            if np.shape(getattr(self, name)) != (self.n,):
                raise ValueError(f"{name} must have shape ({self.n},), not "
                                 f"{np.shape(getattr(self, name))}")
        check_requant_params(self.bias, self.multiplier, self.shift)

    @property
    def m(self):
        return self.a.shape[0]

    @property
    def k(self):
        return self.a.shape[1]

    @property
    def n(self):
        return self.b.shape[1]

    def reference(self):
        """The result straight from ``docs/numerics.md``, without buffers or tiles."""
        sums = self.a.astype(np.int64) @ self.b.astype(np.int64)
        return requantize(sums, self.bias, self.multiplier, self.shift)


@dataclass(frozen=True)
class GemmJob:
    """A :class:`GemmProblem` placed in the buffers: words to load, command, result region.

    ``i_words`` (sparse jobs only, else ``None``) are the index-buffer entries
    (A-row numbers, int64) loaded at ``descriptor.b_addr`` beside ``b_words``.
    """

    problem: GemmProblem
    descriptor: GemmDescriptor
    a_words: np.ndarray
    b_words: np.ndarray
    i_words: np.ndarray = None

    def result(self, c_words):
        """The ``M x N`` result from the words read at ``descriptor.c_addr``."""
        return unpack_activations(c_words, self.problem.m, self.problem.n,
                                  c_words.shape[1])

    @property
    def c_word_count(self):
        return self.descriptor.m_tiles * self.descriptor.c_stride


def ideal_cycles(config, m, k, n):
    """MAC-bound cycles of an ``m x k`` by ``k x n`` GEMM: ``m*k*n / macs_per_cycle``."""
    return m * k * n / config.macs_per_cycle


def command_cycles(config, descriptor):
    """Busy cycles of one command, exactly as the engine's ``busy_cycles`` counts them.

    The controller issues ``max(ceil(k / k_per_cycle), cols)`` cycles per
    tile (sparse commands: ``max(k, cols)``; the final tile counts up to its
    last issue). The engine stays busy until the final tile's drain has ended
    and its last valid column is written. The Verilator tests check this
    against the hardware counter for every GEMM.
    """
    d = descriptor
    issues = config.tile_issues(d.k, d.sparse)
    period = max(issues, config.cols)
    last_issue = d.m_tiles * d.n_tiles(config) * period - (period - issues)
    last_tile_columns = d.n - (d.n_tiles(config) - 1) * config.cols
    drain_start = _READ_DELAY + config.array_latency
    drain_end = drain_start + config.cols - 1
    last_write = drain_start + last_tile_columns - 1 + _WRITE_DELAY
    return last_issue + max(drain_end, last_write)


def _region(name, words, depth, depth_name, slot):
    """Base address of ``words`` words in buffer half ``slot`` (or the whole buffer)."""
    capacity = depth if slot is None else depth // 2
    if words > capacity:
        where = f"{depth_name}={depth}" if slot is None else f"half of {depth_name}={depth}"
        raise ConfigError(f"GEMM needs {words} {name} words, but {where} holds {capacity}")
    return 0 if slot is None else slot * capacity


def _check_slot_and_depth(config, problem, slot):
    if slot not in (None, 0, 1):
        raise ConfigError(f"slot must be None, 0 or 1, not {slot!r}")
    if problem.k > config.k_max:
        raise ConfigError(f"GEMM reduction depth k must be at most k_max={config.k_max}, "
                          f"not {problem.k}")


def _place(config, problem, slot, b_words, depth, *, b_stride=None, i_words=None):
    """The job of ``problem`` with weight words ``b_words`` (``depth`` words per column
    tile, ``b_stride`` apart, by default ``depth``; ``i_words`` their A rows if sparse)
    in buffer half ``slot``. Dense A and B are laid out in aligned groups of
    ``k_per_cycle`` words, zero-padded."""
    m_tiles = tiles(problem.m, config.rows)
    a_stride = problem.k if i_words is not None else aligned(problem.k, config.k_per_cycle)
    a_words = pack_activations(_zero_padded(problem.a, a_stride), config.rows)
    descriptor = GemmDescriptor(
        a_addr=_region("A-buffer", len(a_words), config.a_depth, "a_depth", slot),
        a_stride=a_stride,
        b_addr=_region("B-buffer", len(b_words), config.b_depth, "b_depth", slot),
        b_stride=depth if b_stride is None else b_stride,
        c_addr=_region("C-buffer", m_tiles * problem.n, config.c_depth, "c_depth", slot),
        c_stride=problem.n,
        p_addr=_region("parameter", problem.n, config.param_depth, "param_depth", slot),
        k=depth,
        m_tiles=m_tiles,
        n=problem.n,
        sparse=int(i_words is not None),
    )
    descriptor.check(config)
    return GemmJob(problem=problem, descriptor=descriptor, a_words=a_words, b_words=b_words,
                   i_words=i_words)


def _zero_padded(matrix, columns):
    """``matrix`` with zero columns appended up to ``columns``."""
    padded = np.zeros((matrix.shape[0], columns), matrix.dtype)
    padded[:, :matrix.shape[1]] = matrix
    return padded


def check_shape(config, m, k, n, slot=None):
    """Raise the :exc:`~vitforge.errors.ConfigError` that :func:`plan_gemm` would for an
    ``m x k`` by ``k x n`` problem, before any operand is made: ``k`` above ``k_max``, or A,
    B, C or the parameters beyond their buffer (or half of it)."""
    for name, value in (("m", m), ("k", k), ("n", n)):
        check_positive_int(name, value)
    if k > config.k_max:
        raise ConfigError(f"GEMM reduction depth k must be at most k_max={config.k_max}, "
                          f"not {k}")
    stride = aligned(k, config.k_per_cycle)
    for name, words, depth_name in (("A-buffer", tiles(m, config.rows) * stride, "a_depth"),
                                    ("B-buffer", tiles(n, config.cols) * stride, "b_depth"),
                                    ("C-buffer", tiles(m, config.rows) * n, "c_depth"),
                                    ("parameter", n, "param_depth")):
        _region(name, words, getattr(config, depth_name), depth_name, slot)


def plan_gemm(config, problem, slot=None):
    """Place ``problem`` on ``config``'s engine.

    Parameters
    ----------
    config : GemmConfig
    problem : GemmProblem
    slot : None, 0 or 1
        ``None`` uses each buffer from address 0; 0 or 1 uses that half of
        every buffer, so two jobs in different slots can be loaded and run at
        once (double buffering).

    Raises
    ------
    vitforge.errors.ConfigError
        If ``k`` exceeds ``k_max`` or an operand, the result or the
        parameters do not fit their buffer (or half of it).
    """
    _check_slot_and_depth(config, problem, slot)
    stride = aligned(problem.k, config.k_per_cycle)
    b_words = pack_weights(_zero_padded(problem.b.T, stride).T, config.cols)
    return _place(config, problem, slot, b_words, problem.k, b_stride=stride)


def plan_sparse_gemm(config, problem, weight, slot=None):
    """Place ``problem`` as a sparse command whose B is the HP-pruned ``weight``.

    Each column tile streams its ``L`` kept rows (``weight.values``): the job's
    ``b_words`` are the ``groups * L`` value words, its ``i_words`` their A
    rows (``weight.pattern.row_index()``, flattened), and the command has
    ``k = b_stride = L``, ``a_stride = K`` and ``sparse = 1``, so it takes
    ``command_cycles`` of a dense command of depth ``L``. A layer pruned
    entirely (``L = 0``) gets one filler entry (row 0, zero weights): ``k = 1``
    and the result is the bias path.

    Parameters
    ----------
    config : GemmConfig
    problem : GemmProblem
        ``problem.b`` must equal ``weight.dense()``.
    weight : vitforge.sw.gemm.sparse.HPSparseWeight
        Pruned for groups of ``config.cols`` columns, or of a multiple of them
        (it is then re-tiled with :meth:`HPSparseWeight.for_cols`).
    slot : None, 0 or 1
        As for :func:`plan_gemm`.

    Raises
    ------
    TypeError
        If ``weight`` is not an :class:`HPSparseWeight`.
    ValueError
        If ``weight`` is not ``problem.b``, or its groups are not a multiple
        of ``config.cols`` columns.
    vitforge.errors.ConfigError
        As for :func:`plan_gemm`.
    """
    if not isinstance(weight, HPSparseWeight):
        raise TypeError(f"weight must be an HPSparseWeight, not {type(weight).__name__}")
    dense = weight.dense()
    if dense.shape != problem.b.shape or not np.array_equal(dense, problem.b):
        raise ValueError(f"weight must be the problem's b matrix ({problem.k}x{problem.n}); "
                         f"its dense form ({dense.shape[0]}x{dense.shape[1]}) differs")
    pattern_cols = weight.pattern.cols
    if pattern_cols % config.cols:
        raise ValueError(f"weight must be pruned for groups of a multiple of the array's "
                         f"cols={config.cols} columns, not of {pattern_cols}")
    _check_slot_and_depth(config, problem, slot)
    if pattern_cols != config.cols:
        weight = weight.for_cols(config.cols)
    weight = weight.nonempty()
    return _place(config, problem, slot, weight.values.reshape(-1, config.cols),
                  weight.pattern.length, i_words=weight.pattern.row_index().reshape(-1))
