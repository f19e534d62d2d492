"""Output-stationary array reducing ``depth`` steps of K per cycle on DSP48E2 cascades."""

from amaranth import Array, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In

from ..dsp48e2 import CASCADE_LATENCY
from ..numerics import OPERAND_BITS
from .array import tile_ports
from .packed_dot import PackedDotPair, check_cascade_depth
from .pe_pair import PACKED_WEIGHT_BITS, pack_weights

__all__ = ["CascadeArray", "cascade_array_latency"]


#: Registers between the array's inputs and the packing of the weights (the activations with
#: them), so that the packing adder does not share a cycle with the operands' read.
INPUT_STAGES = 1


#: Loads per copy of the drain counter that steers every row's result multiplexer (Vivado's
#: ``MAX_FANOUT``: about one copy per row at 40 columns).
_DRAIN_FANOUT = 256


def cascade_array_latency(depth):
    """Cycles from a step's operands at a :class:`CascadeArray`'s inputs to its sums in the
    result registers (:data:`~vitforge.hw.gemm.array.ARRAY_LATENCY` of a PE array)."""
    return INPUT_STAGES + depth + CASCADE_LATENCY


def _delayed(m, value, cycles, name):
    """``value`` through ``cycles`` registers of ``m``'s sync domain."""
    for stage in range(cycles):
        register = Signal.like(value, name=f"{name}_{stage}")
        m.d.sync += register.eq(value)
        value = register
    return value


class CascadeArray(wiring.Component):
    """``rows x cols`` int8 MACs of an output tile, ``depth`` steps of K per cycle.

    Every cycle ``a[t]`` (one int8 per row) and ``b[t]`` (one int8 per column)
    are step ``t`` of a ``depth``-step slab of the reduction, and cell ``(i,
    j)`` adds ``sum_t a[t][i] * b[t][j]``: a tile of depth ``K`` takes ``K /
    depth`` cycles (the caller pads K with zero steps) at ``rows * cols *
    depth`` MACs per cycle.

    Each row's two adjacent columns are one :class:`PackedDotPair`, a cascade
    of ``depth`` DSP48E2s that multiply the row's activation by both columns'
    weights at once (two MACs per DSP, Xilinx WP486). Here the weights of
    each column pair are registered (:data:`INPUT_STAGES`, the activations
    with them: at 40x40 the path from the weight scratchpad's block RAM
    through the packing adder was the design's slowest) and then packed once,
    and step ``t``'s operands are delayed by ``t`` more cycles for the
    cascade; the qualifiers follow the chains' sums.

    As in :class:`~vitforge.hw.gemm.array.PEArray`, a tile's finished sums
    reach the result registers :func:`cascade_array_latency` cycles after its
    ``last`` step entered, and :attr:`column` shows columns ``0, 1, ...,
    cols-1`` on consecutive ``shift`` cycles while the next tile accumulates;
    the next tile's ``last`` may enter at most every ``cols`` cycles. Unlike
    the PE array's drain chain, the result registers stay where they are: a
    ``cols``:1 multiplexer per row, steered by a drain counter, reads them:
    three or four LUT levels between the registers and :attr:`column` where
    a chain has none, and at 40 columns about 40% of the LUTs of a chain's
    2:1 multiplexer per result bit. The counter carries a ``max_fanout``
    attribute, so that Vivado replicates it across the rows.

    Parameters
    ----------
    rows, cols : int
        Output tile size (``cols`` even).
    depth : int
        Reduction steps per cycle, 1 to
        :data:`~vitforge.hw.gemm.pe_pair.DSP_RUN_PRODUCTS`.
    acc_width : int
        Accumulator width of each output.

    Attributes
    ----------
    a : ``In(ArrayLayout(ArrayLayout(signed(8), rows), depth))``
    b : ``In(ArrayLayout(ArrayLayout(signed(8), cols), depth))``
    valid, first, last : ``In(1)``
        Qualifiers of the slab ``a``/``b``: it is part of a tile, its first, its last.
    shift : ``In(1)``
        Advance the drain chain by one column.
    column : ``Out(ArrayLayout(signed(acc_width), rows))``
        Result registers of column 0.
    """

    def __init__(self, *, rows, cols, depth, acc_width):
        check_cascade_depth(depth)
        if cols % 2:
            raise ValueError(f"cols must be even (two columns share a DSP), not {cols}")
        super().__init__({
            "a": In(data.ArrayLayout(data.ArrayLayout(signed(OPERAND_BITS), rows), depth)),
            "b": In(data.ArrayLayout(data.ArrayLayout(signed(OPERAND_BITS), cols), depth)),
            **tile_ports(rows, acc_width),
        })
        self._rows = rows
        self._cols = cols
        self._depth = depth
        self._acc_width = acc_width

    def elaborate(self, platform):
        m = Module()
        pairs = self._cols // 2
        packed_layout = data.ArrayLayout(signed(PACKED_WEIGHT_BITS), pairs)
        activations = []
        weights = []
        for t in range(self._depth):
            b = _delayed(m, self.b[t], INPUT_STAGES, f"b_{t}_read")
            packed = Signal(packed_layout, name=f"packed_{t}")
            m.d.comb += [packed[p].eq(pack_weights(b[2 * p], b[2 * p + 1]))
                         for p in range(pairs)]
            activations.append(_delayed(m, self.a[t], INPUT_STAGES + t, f"a_{t}_skew"))
            weights.append(_delayed(m, packed, t, f"packed_{t}_skew"))
        chain_latency = INPUT_STAGES + self._depth - 1 + CASCADE_LATENCY
        add, first, last = (_delayed(m, signal, chain_latency, f"{name}_in_chain")
                            for signal, name in ((self.valid, "valid"), (self.first, "first"),
                                                 (self.last, "last")))

        drain_index = Signal(range(self._cols), attrs={"max_fanout": _DRAIN_FANOUT})
        with m.If(add & last):
            m.d.sync += drain_index.eq(0)
        with m.Elif(self.shift):
            m.d.sync += drain_index.eq(drain_index + 1)

        for i in range(self._rows):
            row = [PackedDotPair(depth=self._depth, acc_width=self._acc_width)
                   for _ in range(pairs)]
            for p, cell in enumerate(row):
                m.submodules[f"dot_pair_{i}_{p}"] = cell
                m.d.comb += [
                    *[cell.a[t].eq(activations[t][i]) for t in range(self._depth)],
                    *[cell.packed[t].eq(weights[t][p]) for t in range(self._depth)],
                    cell.add.eq(add),
                    cell.first.eq(first),
                    cell.last.eq(last),
                ]
            results = Array(cell.results[half] for cell in row for half in range(2))
            m.d.comb += self.column[i].eq(results[drain_index])
        return m
