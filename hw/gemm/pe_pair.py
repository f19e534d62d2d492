"""Two int8 MACs on one DSP48E2: a PE pair sharing its activation (Xilinx WP486)."""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..numerics import MAX_PRODUCT, OPERAND_BITS

__all__ = ["PackedPEPair", "pack_weights", "PACK_SHIFT", "PACKED_WEIGHT_BITS",
           "DSP_RUN_PRODUCTS", "accumulate_packed_sums"]

#: Bit position of the high weight in a packed weight word; the low product
#: lives in the bits below it, as an 18-bit two's-complement field.
PACK_SHIFT = 18
#: ``w_high * 2**18 + w_low`` fits the DSP48E2's 27-bit multiplier port.
PACKED_WEIGHT_BITS = 27
#: Products the DSP accumulates before the low field could overflow: the sum of
#: ``n`` products ``w_low * a`` (each within ``[-16256, 16384]``) fits 18 signed
#: bits for ``n <= 7``. Longer sums continue in fabric.
DSP_RUN_PRODUCTS = ((1 << (PACK_SHIFT - 1)) - 1) // MAX_PRODUCT
# The sum of DSP_RUN_PRODUCTS products ``(w_high * 2**18 + w_low) * a``, and the low bias.
_RUN_BITS = (DSP_RUN_PRODUCTS * MAX_PRODUCT * ((1 << PACK_SHIFT) + 1)
             + (1 << PACK_SHIFT)).bit_length() + 1


def pack_weights(low, high):
    """``high * 2**18 + low``: the 27-bit word one DSP multiplies by a shared activation.

    Parameters
    ----------
    low, high : Value
        Signed int8 weights of two adjacent output columns.

    Returns
    -------
    Value
        Signed, :data:`PACKED_WEIGHT_BITS` wide.
    """
    return (high.as_signed() << PACK_SHIFT) + low.as_signed()


def accumulate_packed_sums(m, packed_sum, *, add, fresh, acc_shape):
    """Split a biased packed sum into its two column sums and accumulate them.

    ``packed_sum`` is ``2**17 + sum((w_high * 2**18 + w_low) * a)`` over at most
    :data:`DSP_RUN_PRODUCTS` products: its low 18 bits hold the low sum plus
    ``2**17`` (so ``P[0:18]`` with bit 17 inverted, read as signed), the bits
    above it the high sum. In a cycle with ``add`` the two sums are added to two
    full-width accumulators of ``acc_shape`` in ``m``'s sync domain (replacing
    them with ``fresh``).

    Returns
    -------
    tuple of Signal
        The low and the high column's sum including this cycle's step
        (combinational): what the accumulators take at the clock edge. The
        caller guarantees that no sum overflows ``acc_shape``.
    """
    low_sum = Cat(packed_sum[:PACK_SHIFT - 1], ~packed_sum[PACK_SHIFT - 1]).as_signed()
    high_sum = packed_sum[PACK_SHIFT:].as_signed()
    next_sums = []
    for half, sum_ in enumerate((low_sum, high_sum)):
        accumulator = Signal(acc_shape, name=f"accumulator_{half}")
        next_sum = Signal(acc_shape, name=f"next_sum_{half}")
        m.d.comb += next_sum.eq(Mux(fresh, 0, accumulator) + sum_)
        with m.If(add):
            m.d.sync += accumulator.eq(next_sum)
        next_sums.append(next_sum)
    return tuple(next_sums)


class PackedPEPair(wiring.Component):
    """Output-stationary MAC cells of two adjacent columns on one multiplier.

    Each valid cycle the DSP48E2 adds ``packed * a`` to its ``P`` register,
    where ``packed = w_high * 2**18 + w_low`` (:func:`pack_weights`, formed once
    per column pair outside the array). ``P`` then holds ``sum(w_high * a) *
    2**18 + sum(w_low * a)``; the low sum is exact in ``P``'s 18 low bits for
    up to :data:`DSP_RUN_PRODUCTS` products (the guard bits), so the array
    cuts the reduction into *runs* of at most that many: ``restart`` starts
    ``P`` afresh at a run's first product and ``dump`` marks its last. One
    cycle later the fabric splits ``P`` into the two sums and adds them to two
    full-width accumulators.

    The split needs no adder. A negative low sum borrows one from the high
    field (WP486's sign correction adds it back); instead, a run starts from
    ``P = 2**17`` (the DSP48E2's rounding constant), which moves the low field
    to ``[0, 2**18)``: then ``high = P[18:]`` exactly and ``low = P[0:18] -
    2**17``, which is ``P[0:18]`` with bit 17 inverted, read as signed.

    Pipeline: the multiply-accumulate into ``P`` is stage 1 (the DSP48E2
    ``PREG``, without ``MREG``), the fabric accumulation stage 2, so
    :attr:`results` hold the finished sums two cycles after the ``last``
    inputs, the latency of :class:`ProcessingElement`. Throughput: two MACs
    per cycle. Arithmetic is exact; the caller guarantees that no sum
    overflows ``acc_width`` bits.

    Parameters
    ----------
    acc_width : int
        Accumulator and result width (signed) of each column.

    Attributes
    ----------
    a : ``In(signed(8))``
        The activation both columns share.
    packed : ``In(signed(27))``
        The two columns' weights, :func:`pack_weights`.
    valid : ``In(1)``
        ``a`` and ``packed`` are a product of the current sum.
    restart, dump : ``In(1)``
        The product starts, or ends, a run of the DSP's accumulator.
    fresh : ``In(1)``
        The run this product belongs to began the sum: its dump replaces the
        fabric accumulators instead of adding to them.
    last : ``In(1)``
        The product is the sum's last (``dump`` must be high too).
    shift : ``In(1)``
        Load :attr:`results` from ``(results[1], shift_in)`` (ignored in the
        cycle a sum finishes).
    shift_in : ``In(signed(acc_width))``
        ``results[0]`` of the next pair along the row.
    results : ``Out(ArrayLayout(signed(acc_width), 2))``
        Finished sums of the low (even) and high (odd) column, or values
        shifted in.
    """

    def __init__(self, acc_width):
        super().__init__({
            "a": In(signed(OPERAND_BITS)),
            "packed": In(signed(PACKED_WEIGHT_BITS)),
            "valid": In(1),
            "restart": In(1),
            "dump": In(1),
            "fresh": In(1),
            "last": In(1),
            "shift": In(1),
            "shift_in": In(signed(acc_width)),
            "results": Out(data.ArrayLayout(signed(acc_width), 2)),
        })
        self._acc_width = acc_width

    def elaborate(self, platform):
        m = Module()

        low_bias = 1 << (PACK_SHIFT - 1)
        run_sum = Signal(signed(_RUN_BITS))
        with m.If(self.valid):
            m.d.sync += run_sum.eq(Mux(self.restart, low_bias, run_sum) + self.packed * self.a)
        dumped = Signal()
        fresh = Signal()
        last = Signal()
        m.d.sync += [dumped.eq(self.valid & self.dump), fresh.eq(self.fresh),
                     last.eq(self.last)]

        sums = accumulate_packed_sums(m, run_sum, add=dumped, fresh=fresh,
                                      acc_shape=signed(self._acc_width))
        for half, sum_ in enumerate(sums):
            with m.If(dumped & last):
                m.d.sync += self.results[half].eq(sum_)
            with m.Elif(self.shift):
                m.d.sync += self.results[half].eq(self.results[1] if half == 0 else self.shift_in)
        return m
