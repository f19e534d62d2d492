"""Two int8 columns of one row, ``depth`` products each per cycle, on a DSP48E2 cascade."""

from amaranth import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..dsp48e2 import add_cascade
from ..numerics import OPERAND_BITS
from .pe_pair import DSP_RUN_PRODUCTS, PACK_SHIFT, PACKED_WEIGHT_BITS, accumulate_packed_sums

__all__ = ["PackedDotPair", "check_cascade_depth"]


def check_cascade_depth(depth):
    """Reject a cascade longer than the packed low field's guard bits allow."""
    if not isinstance(depth, int) or isinstance(depth, bool):
        raise TypeError(f"depth must be an int, not {depth!r}")
    if not 1 <= depth <= DSP_RUN_PRODUCTS:
        raise ValueError(f"depth must be in [1, {DSP_RUN_PRODUCTS}] (the packed low sum "
                         f"holds that many products), not {depth}")


class PackedDotPair(wiring.Component):
    """Output-stationary MAC cells of two adjacent columns, ``depth`` reduction steps a cycle.

    A chain of ``depth`` :class:`~vitforge.hw.dsp48e2.CascadeMultiplyAdd`
    links, one DSP48E2 each: link ``t`` multiplies the row's activation
    ``a[t]`` by ``packed[t] = w_high[t] * 2**18 + w_low[t]``
    (:func:`~vitforge.hw.gemm.pe_pair.pack_weights`) and the ``PCOUT -> PCIN``
    cascade sums the products, starting from ``2**17``. The chain's output is
    the biased packed sum that :func:`accumulate_packed_sums` splits into the
    two columns' partial sums and adds to their accumulators: per cycle,
    ``2 * depth`` MACs on ``depth`` DSPs, and one pair of fabric accumulators
    for all of them. ``depth`` is at most
    :data:`~vitforge.hw.gemm.pe_pair.DSP_RUN_PRODUCTS`, the products the low
    field holds.

    Timing: link ``t`` takes its operands ``t`` cycles after link 0 (the
    caller skews them), and the sum of a step leaves the chain ``depth + 2``
    cycles after link 0's operands. ``add``, ``first`` and ``last`` qualify
    that sum in the cycle it leaves; :attr:`results` hold the finished sums
    one cycle after ``last``, until the next sum finishes. They are plain
    registers with an enable, loaded from the accumulators' adders: the
    caller reads them through a multiplexer
    (:class:`~vitforge.hw.gemm.cascade_array.CascadeArray`), where a drain
    chain would cost a 2:1 multiplexer per result bit. Throughput: one step
    of ``depth`` products per cycle. Arithmetic is exact; the caller
    guarantees that no sum overflows ``acc_width`` bits.

    Parameters
    ----------
    depth : int
        Products per column per cycle (DSP48E2s in the chain).
    acc_width : int
        Accumulator and result width (signed) of each column.

    Attributes
    ----------
    a : ``In(ArrayLayout(signed(8), depth))``
        The row's activations, one per link.
    packed : ``In(ArrayLayout(signed(27), depth))``
        The two columns' packed weights, one per link.
    add : ``In(1)``
        The chain's output is a step of the current sum.
    first, last : ``In(1)``
        That step begins, or ends, the sum.
    results : ``Out(ArrayLayout(signed(acc_width), 2))``
        Finished sums of the low (even) and high (odd) column.
    """

    def __init__(self, *, depth, acc_width):
        check_cascade_depth(depth)
        super().__init__({
            "a": In(data.ArrayLayout(signed(OPERAND_BITS), depth)),
            "packed": In(data.ArrayLayout(signed(PACKED_WEIGHT_BITS), depth)),
            "add": In(1),
            "first": In(1),
            "last": In(1),
            "results": Out(data.ArrayLayout(signed(acc_width), 2)),
        })
        self._depth = depth

    def elaborate(self, platform):
        m = Module()
        links = add_cascade(m, self._depth, round_constant=1 << (PACK_SHIFT - 1),
                            b_bits=OPERAND_BITS)
        for t, link in enumerate(links):
            m.d.comb += [link.a.eq(self.packed[t]), link.b.eq(self.a[t])]
        sums = accumulate_packed_sums(m, links[-1].p, add=self.add, fresh=self.first,
                                      acc_shape=self.results[0].shape())
        with m.If(self.add & self.last):
            m.d.sync += [result.eq(sum_) for result, sum_ in zip(self.results, sums)]
        return m
