"""Sequencer that walks a GEMM command tile by tile."""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, exact_log2

from .descriptor import descriptor_layout

__all__ = ["TileController", "tile_event_layout"]


def tile_event_layout(config):
    """Where a finished tile goes: the fields :class:`Writeback` needs."""
    layout = descriptor_layout(config)
    return data.StructLayout({
        "c_tile": layout["c_addr"].shape,   # C word of this tile's column 0
        "n_base": layout["n"].shape,        # output column of the tile's column 0
        "n": layout["n"].shape,             # valid columns of the command
        "p_addr": layout["p_addr"].shape,
    })


def _slab_period_end(payload, period, cols, slab, bank_bits):
    """``(last k_index, whether the first step is already it)`` of a tile of ``payload`` on a
    ``slab > 1`` engine: its issue steps and then idle ones, ``max(ceil(k / slab), cols)``
    cycles of ``slab`` steps, or of one step (``period = max(k, cols)`` cycles) if sparse.

    ``ceil(k / slab) * slab - slab`` is ``k - 1`` with its low ``bank_bits`` cleared, so
    the dense end needs no round-up adder. A dense tile is never a single cycle: ``cols``
    is even (the cascade packs column pairs), so it idles to at least two.
    """
    last_slab = Cat(Const(0, bank_bits), (payload.k - 1)[bank_bits:])
    idle_end = (cols - 1) * slab
    dense_end = Mux(last_slab > idle_end, last_slab, idle_end)
    return Mux(payload.sparse, period - 1, dense_end), payload.sparse & (period == 1)


class TileController(wiring.Component):
    """Walks the tiles of a :class:`GemmDescriptor` and feeds the PE array.

    Row tiles form the outer loop and column tiles the inner loop, so an A tile
    is read ``ceil(n / cols)`` times in a row. Within a tile, the controller
    reads one group of ``s = config.k_per_cycle`` A words and B words per
    cycle (a *slab*, ``s`` reduction steps) for ``ceil(k / s)`` cycles, then
    idles up to ``cols`` cycles in all, so a tile never finishes before the
    previous one has drained. Consecutive tiles follow without bubbles: a
    dense command takes ``m_tiles * ceil(n / cols) * max(ceil(k / s), cols)``
    issue cycles. :attr:`live` marks the slab's steps below ``k`` (the rest
    are the next words of the buffer, which the core zeroes).

    Timing: a step issued in cycle ``t`` drives the buffer addresses from
    registers in ``t + 1`` (nothing read from a memory in ``t`` reaches a
    memory's address in the same cycle); ``valid``/``first``/``last`` and
    :attr:`tile_done` come out registered in ``t + 2``, aligned with the
    words the buffers return. :attr:`running` stays high through ``t + 1``
    of the last step.

    Sparse commands (``sparse`` set) take one step per cycle, whatever
    ``k_per_cycle`` is: ``max(k, cols)`` cycles per tile. Step ``j`` of a
    tile reads A word ``a_tile + I[b]`` instead of ``a_tile + j``, where ``b``
    is the B word it reads and ``I`` the index buffer; :attr:`a_lane` and
    :attr:`b_lane` say where the two words are in their groups, and
    :attr:`live` marks step 0 alone. The controller reads
    ``I`` one cycle ahead: in every cycle ``i_read.addr`` is the B address of
    the next cycle (the offered command's ``b_addr`` in every idle cycle), so
    ``i_read.data`` holds ``I[b]`` in the cycle the step issues, and the A
    address register takes ``a_tile + I[b]``.

    Parameters
    ----------
    config : GemmConfig

    Attributes
    ----------
    cmd : ``In(stream.Signature(descriptor_layout(config)))``
        Accepted only while idle.
    a_read, b_read : ``Out`` read-port requests (``addr``, ``en``)
    i_read : ``Out`` index-buffer read request (``addr``, ``en`` out; ``data`` in,
        ``config.index_bits`` unsigned, one cycle after ``en``)
    valid, first, last : ``Out(1)``
        Qualifiers of the words returned by the buffers this cycle.
    live : ``Out(k_per_cycle)``
        Which steps of the slab returned this cycle are part of the tile
        (only when ``k_per_cycle > 1``, as are the lanes).
    a_lane, b_lane : ``Out(range(k_per_cycle))``
        The returned group's word that step 0 takes (0 in dense commands,
        whose reads are aligned).
    tile_done : ``Out(1)``
        Pulses with the ``last`` word of a tile; :attr:`tile` says where it goes.
    tile : ``Out(tile_event_layout(config))``
    running : ``Out(1)``
        A command is being issued.
    """

    def __init__(self, config):
        self._config = config
        layout = descriptor_layout(config)
        super().__init__({
            "cmd": In(stream.Signature(layout)),
            "a_read": Out(wiring.Signature({"addr": Out(layout["a_addr"].shape),
                                            "en": Out(1)})),
            "b_read": Out(wiring.Signature({"addr": Out(layout["b_addr"].shape),
                                            "en": Out(1)})),
            "i_read": Out(wiring.Signature({"addr": Out(layout["b_addr"].shape),
                                            "en": Out(1),
                                            "data": In(config.index_bits)})),
            "valid": Out(1),
            "first": Out(1),
            "last": Out(1),
            **({} if config.k_per_cycle == 1 else {
                "live": Out(config.k_per_cycle),
                "a_lane": Out(range(config.k_per_cycle)),
                "b_lane": Out(range(config.k_per_cycle)),
            }),
            "tile_done": Out(1),
            "tile": Out(tile_event_layout(config)),
            "running": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cols = self._config.cols
        slab = self._config.k_per_cycle
        bank_bits = exact_log2(slab)
        layout = descriptor_layout(self._config)

        command = Signal(layout)
        k_index = Signal(bits_for(max(self._config.k_max + slab - 1, cols * slab)))
        period_end = Signal.like(k_index)          # the tile's last k_index, issued or idle
        a_tile = Signal.like(command.a_addr)
        b_tile = Signal.like(command.b_addr)
        c_tile = Signal.like(command.c_addr)
        n_base = Signal.like(command.n)
        m_left = Signal.like(command.m_tiles)

        # The registers' values of the next cycle: the index buffer is read one cycle ahead.
        k_next = Signal.like(k_index)
        b_next = Signal.like(b_tile)
        n_base_next = Signal.like(n_base)
        m.d.comb += [k_next.eq(k_index), b_next.eq(b_tile), n_base_next.eq(n_base)]
        m.d.sync += [k_index.eq(k_next), b_tile.eq(b_next), n_base.eq(n_base_next)]
        # The index buffer's address b_next + k_next, kept running as b_tile + k_index:
        # one small adder before the buffer's address instead of the two in a row.
        index_address = Signal.like(b_tile)
        index_next = Signal.like(b_tile)
        m.d.comb += index_next.eq(index_address)
        m.d.sync += index_address.eq(index_next)
        # Where the walk turns, as registers of the current k_index and n_base (so that
        # no comparison stands before the index buffer's address): the tile's last
        # period step, and a column tile after this one.
        period_last = Signal()
        columns_left = Signal()
        b_following = Signal.like(b_tile)          # b_tile + b_stride
        m.d.sync += [columns_left.eq(n_base_next + cols < command.n),
                     b_following.eq(b_next + command.b_stride)]

        walking = Signal()                         # the RUN state
        step = Mux(command.sparse, 1, slab) if slab > 1 else 1
        issue = Signal()
        requested = Signal()                       # a step's requests are on the buffers
        m.d.comb += [
            issue.eq(walking & (k_index < command.k)),
            self.i_read.addr.eq(index_next),
            self.i_read.en.eq(walking | self.cmd.valid),
            self.running.eq(walking | requested),
        ]
        m.d.sync += [
            self.a_read.addr.eq(a_tile + Mux(command.sparse, self.i_read.data, k_index)),
            self.b_read.addr.eq(b_tile + k_index),
            self.a_read.en.eq(issue),
            self.b_read.en.eq(issue),
            requested.eq(issue),
        ]
        # The qualifiers and the tile's destination, two registers after the issue.
        qualifier_fields = {"valid": 1, "first": 1, "last": 1,
                            "tile": tile_event_layout(self._config)}
        if slab == 1:
            last = issue & (k_index == command.k - 1)
        else:
            last = issue & (k_index + step >= command.k)
            qualifier_fields["live"] = slab
        qualifiers = Signal(data.StructLayout(qualifier_fields))
        if slab > 1:
            m.d.sync += [
                qualifiers.live.eq(Cat(1, *[~command.sparse & (k_index + t < command.k)
                                            for t in range(1, slab)])),
                self.live.eq(qualifiers.live),
                self.a_lane.eq(self.a_read.addr[:bank_bits]),
                self.b_lane.eq(self.b_read.addr[:bank_bits]),
            ]
        m.d.sync += [
            qualifiers.valid.eq(issue),
            qualifiers.first.eq(issue & (k_index == 0)),
            qualifiers.last.eq(last),
            qualifiers.tile.c_tile.eq(c_tile),
            qualifiers.tile.n_base.eq(n_base),
            qualifiers.tile.n.eq(command.n),
            qualifiers.tile.p_addr.eq(command.p_addr),
            self.valid.eq(qualifiers.valid),
            self.first.eq(qualifiers.first),
            self.last.eq(qualifiers.last),
            self.tile_done.eq(qualifiers.last),
            self.tile.eq(qualifiers.tile),
        ]

        with m.FSM():
            with m.State("IDLE"):
                # The first step's registers whether or not a command is offered, so that
                # `valid`, which comes late in its cycle (the accelerator's decode), selects
                # none of them.
                payload = self.cmd.payload
                period = Mux(payload.k > cols, payload.k, cols)
                if slab == 1:
                    last_index = period - 1
                    first_is_last = period == 1
                else:
                    last_index, first_is_last = _slab_period_end(payload, period, cols, slab,
                                                                 bank_bits)
                m.d.comb += [self.cmd.ready.eq(1), k_next.eq(0), b_next.eq(payload.b_addr),
                             n_base_next.eq(0), index_next.eq(payload.b_addr)]
                m.d.sync += [period_last.eq(first_is_last),
                             columns_left.eq(cols < payload.n),
                             b_following.eq(payload.b_addr + payload.b_stride)]
                with m.If(self.cmd.valid):
                    m.d.sync += [
                        command.eq(payload),
                        period_end.eq(last_index),
                        a_tile.eq(payload.a_addr),
                        c_tile.eq(payload.c_addr),
                        m_left.eq(payload.m_tiles),
                    ]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [walking.eq(1), k_next.eq(k_index + step),
                             index_next.eq(index_address + step)]
                m.d.sync += period_last.eq(k_next == period_end)
                with m.If(period_last):
                    m.d.comb += k_next.eq(0)
                    with m.If(columns_left):
                        m.d.comb += [b_next.eq(b_following), index_next.eq(b_following),
                                     n_base_next.eq(n_base + cols)]
                    with m.Else():
                        m.d.comb += [b_next.eq(command.b_addr), index_next.eq(command.b_addr),
                                     n_base_next.eq(0)]
                        m.d.sync += [
                            a_tile.eq(a_tile + command.a_stride),
                            c_tile.eq(c_tile + command.c_stride),
                            m_left.eq(m_left - 1),
                        ]
                        with m.If(m_left == 1):
                            m.next = "IDLE"
        return m
