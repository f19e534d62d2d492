"""Processing element: one int8 x int8 multiply-accumulate with a result register."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..numerics import OPERAND_BITS

__all__ = ["ProcessingElement"]


class ProcessingElement(wiring.Component):
    """Output-stationary MAC cell.

    Each valid cycle adds ``a * b`` to the accumulator; ``first`` starts a new
    sum and ``last`` copies the finished sum into :attr:`result`, so the next
    sum can begin on the very next cycle while the result drains through the
    ``shift_in`` -> ``result`` chain of its row.

    Pipeline: ``a * b`` is registered (stage 1, the DSP48E2 ``MREG``), then
    accumulated (stage 2, ``PREG``). ``result`` holds the finished sum two
    cycles after the ``last`` inputs. Throughput: one MAC per cycle. Stage 1
    loads in valid cycles only (``MREG``'s clock enable), so that operands
    read before a buffer's first read (X in a 4-state simulator) reach no
    register.

    Arithmetic is exact: the caller guarantees (through
    :attr:`GemmConfig.acc_width`) that no sum overflows ``acc_width`` bits.

    Parameters
    ----------
    acc_width : int
        Accumulator and result width (signed).

    Attributes
    ----------
    a, b : ``In(signed(8))``
        Operands.
    valid, first, last : ``In(1)``
        Qualifiers of ``a`` and ``b`` in the same cycle.
    shift : ``In(1)``
        Load ``result`` from ``shift_in`` (ignored in the cycle a sum finishes).
    shift_in : ``In(signed(acc_width))``
        ``result`` of the next PE along the row.
    result : ``Out(signed(acc_width))``
        Finished sum, or a value shifted in.
    """

    def __init__(self, acc_width):
        super().__init__({
            "a": In(signed(OPERAND_BITS)),
            "b": In(signed(OPERAND_BITS)),
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "shift": In(1),
            "shift_in": In(signed(acc_width)),
            "result": Out(signed(acc_width)),
        })
        self._acc_width = acc_width

    def elaborate(self, platform):
        m = Module()

        product = Signal(signed(2 * OPERAND_BITS))
        product_valid = Signal()
        product_first = Signal()
        product_last = Signal()
        with m.If(self.valid):
            m.d.sync += product.eq(self.a * self.b)
        m.d.sync += [
            product_valid.eq(self.valid),
            product_first.eq(self.first),
            product_last.eq(self.last),
        ]

        accumulator = Signal(signed(self._acc_width))
        next_sum = Signal(signed(self._acc_width))
        m.d.comb += next_sum.eq(Mux(product_first, 0, accumulator) + product)

        with m.If(product_valid):
            m.d.sync += accumulator.eq(next_sum)
        with m.If(product_valid & product_last):
            m.d.sync += self.result.eq(next_sum)
        with m.Elif(self.shift):
            m.d.sync += self.result.eq(self.shift_in)
        return m
