"""Bit-exact twin of :mod:`vitforge.hw.gemm.engine`: a command over buffer images."""

import numpy as np

from .requantize import requantize

__all__ = ["BufferImages", "execute"]


class BufferImages:
    """NumPy model of the engine's four buffers.

    Attributes
    ----------
    a, c : numpy.ndarray, int8, shape ``(depth, rows)``
    b : numpy.ndarray, int8, shape ``(b_depth, cols)``
    index : numpy.ndarray, int64, shape ``(b_depth,)``
        The A-row number of each B word (sparse commands).
    bias, multiplier, shift : numpy.ndarray, int64, shape ``(param_depth,)``
    """

    def __init__(self, config):
        self.config = config
        self.a = np.zeros((config.a_depth, config.rows), dtype=np.int8)
        self.b = np.zeros((config.b_depth, config.cols), dtype=np.int8)
        self.index = np.zeros(config.b_depth, dtype=np.int64)
        self.c = np.zeros((config.c_depth, config.rows), dtype=np.int8)
        self.bias = np.zeros(config.param_depth, dtype=np.int64)
        self.multiplier = np.zeros(config.param_depth, dtype=np.int64)
        self.shift = np.zeros(config.param_depth, dtype=np.int64)


def execute(images, descriptor):
    """Run one :class:`GemmDescriptor` on ``images``, writing results to ``images.c``.

    Follows the descriptor's definition word for word, including lanes that
    only hold padding. Integer products are summed in float64, which is exact:
    ``k_max * 2**14`` is far below ``2**53``. A sparse command gathers each
    column tile's A words through ``images.index`` (which must stay inside
    ``images.a``; ``IndexError`` otherwise).
    """
    config = images.config
    descriptor.check(config)
    d = descriptor
    n_tiles = d.n_tiles(config)
    k_steps = np.arange(d.k)
    # B for all column tiles side by side: (k, n_tiles * cols), then the first n.
    b_rows = d.b_addr + np.arange(n_tiles)[:, None] * d.b_stride + k_steps[None, :]
    weights = images.b[b_rows].transpose(1, 0, 2).reshape(d.k, -1)[:, :d.n]
    weights = weights.astype(np.float64)
    channels = d.p_addr + np.arange(d.n)
    bias = images.bias[channels]
    multiplier = images.multiplier[channels]
    shift = images.shift[channels]
    for tile in range(d.m_tiles):
        a_start = d.a_addr + tile * d.a_stride
        if d.sparse:
            sums = np.zeros((config.rows, d.n), np.int64)
            for column_tile, rows in enumerate(images.index[b_rows]):
                if np.any(a_start + rows >= len(images.a)):
                    raise IndexError(f"sparse GEMM reads A word {a_start + rows.max()}, beyond "
                                     f"the buffer's {len(images.a)}")
                columns = slice(column_tile * config.cols, (column_tile + 1) * config.cols)
                activations = images.a[a_start + rows].astype(np.float64)      # (k, rows)
                sums[:, columns] = activations.T @ weights[:, columns]
        else:
            activations = images.a[a_start:a_start + d.k].astype(np.float64)   # (k, rows)
            sums = (activations.T @ weights).astype(np.int64)                  # (rows, n)
        c_start = d.c_addr + tile * d.c_stride
        images.c[c_start:c_start + d.n] = requantize(sums, bias, multiplier, shift).T
