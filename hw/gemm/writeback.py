"""Drain of finished tiles: requantize column by column and write the C buffer."""

from amaranth import Cat, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..numerics import OPERAND_BITS
from .descriptor import descriptor_layout
from .requantize import REQUANT_LATENCY, RequantParams, Requantizer
from .tile_controller import tile_event_layout

__all__ = ["Writeback", "WRITEBACK_LATENCY"]


#: Cycles from the first drained column to its write into the C buffer:
#: parameter read (1) and requantizer (:data:`REQUANT_LATENCY`).
WRITEBACK_LATENCY = 1 + REQUANT_LATENCY


class Writeback(wiring.Component):
    """Drains one finished tile in ``cols`` cycles, one output column per cycle.

    ``config.array_latency`` cycles after :attr:`tile_done` the array's result
    registers hold the tile. For column ``j`` the writeback reads the
    parameters of output channel ``p_addr + n_base + j``, requantizes the
    ``rows`` sums with them and writes the resulting word to
    ``c_tile + n_base + j``; columns at or beyond the command's ``n`` are
    dropped (the last column tile of a command may be partial). The first word
    is written :data:`WRITEBACK_LATENCY` cycles after its column is drained.

    Parameters
    ----------
    config : GemmConfig

    Attributes
    ----------
    tile_done : ``In(1)``
    tile : ``In(tile_event_layout(config))``
    column : ``In(ArrayLayout(signed(acc_width), rows))``
        The array's column-0 result registers.
    shift : ``Out(1)``
        Advance the array's drain chain.
    p_read : read-port request to the parameter buffer (``addr``, ``en``, ``data``)
    c_write : write-port request to the C buffer (``addr``, ``data``, ``en``)
    busy : ``Out(1)``
        A tile is on its way to the C buffer.
    """

    def __init__(self, config):
        self._config = config
        layout = descriptor_layout(config)
        super().__init__({
            "tile_done": In(1),
            "tile": In(tile_event_layout(config)),
            "column": In(data.ArrayLayout(signed(config.acc_width), config.rows)),
            "shift": Out(1),
            "p_read": Out(wiring.Signature({
                "addr": Out(layout["p_addr"].shape),
                "en": Out(1),
                "data": In(RequantParams),
            })),
            "c_write": Out(wiring.Signature({
                "addr": Out(layout["c_addr"].shape),
                "data": Out(data.ArrayLayout(signed(OPERAND_BITS), config.rows)),
                "en": Out(1),
            })),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        event_shape = tile_event_layout(config)

        # The sums reach the result registers array_latency cycles after
        # tile_done; the drain register below adds one of them.
        pending = [self.tile_done]
        pending_tile = [self.tile]
        for stage in range(config.array_latency - 1):
            pending.append(Signal(name=f"pending_{stage}"))
            pending_tile.append(Signal(event_shape, name=f"pending_tile_{stage}"))
            m.d.sync += [pending[-1].eq(pending[-2]), pending_tile[-1].eq(pending_tile[-2])]

        # Drain: column counter over the tile.
        draining = Signal()
        column_index = Signal(bits_for(config.cols - 1))
        tile = Signal(event_shape)
        with m.If(pending[-1]):
            m.d.sync += [draining.eq(1), column_index.eq(0), tile.eq(pending_tile[-1])]
        with m.Elif(draining):
            m.d.sync += column_index.eq(column_index + 1)
            with m.If(column_index == config.cols - 1):
                m.d.sync += draining.eq(0)

        output_column = Signal(range(config.param_depth + config.cols))   # never wraps
        m.d.comb += [
            output_column.eq(tile.n_base + column_index),
            self.shift.eq(draining),
            self.p_read.addr.eq(tile.p_addr + output_column),
            self.p_read.en.eq(draining),
        ]

        # Align the sums with the parameters (read latency 1), then requantize.
        m.submodules.requantizer = requantizer = Requantizer(lanes=config.rows,
                                                             acc_width=config.acc_width)
        m.d.sync += [requantizer.i_acc.eq(self.column), requantizer.i_valid.eq(draining)]
        m.d.comb += requantizer.i_params.eq(self.p_read.data)

        # Carry the destination alongside: address and "column < n" enable.
        address = [Signal.like(self.c_write.addr, name=f"address_{stage}")
                   for stage in range(WRITEBACK_LATENCY)]
        in_range = [Signal(name=f"in_range_{stage}") for stage in range(WRITEBACK_LATENCY)]
        m.d.sync += [address[0].eq(tile.c_tile + output_column),
                     in_range[0].eq(draining & (output_column < tile.n))]
        for stage in range(1, WRITEBACK_LATENCY):
            m.d.sync += [address[stage].eq(address[stage - 1]),
                         in_range[stage].eq(in_range[stage - 1])]

        m.d.comb += [
            self.c_write.addr.eq(address[-1]),
            self.c_write.data.eq(requantizer.o_data),
            self.c_write.en.eq(requantizer.o_valid & in_range[-1]),
            self.busy.eq(Cat(*pending, draining, *in_range).any()),
        ]
        return m
