"""An AXI4 master that gathers word requests into bursts."""

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from vitforge.errors import ConfigError

from ..accel.ports import MEMORY_ADDRESS_BITS, MEMORY_DATA_BITS, memory_port
from ..checks import check_positive_int
from .register_slice import RegisterSlice
from .signals import BURST_INCR, RESP_OKAY, axi_master_members

__all__ = ["AxiBurstMaster", "BEAT_BYTES", "check_burst_parameters"]

#: Bytes per data beat: the 128-bit HP ports of the Zynq UltraScale+.
BEAT_BYTES = MEMORY_DATA_BITS // 8
#: AxCACHE "normal non-cacheable bufferable", what the HP ports expect from a DMA master.
_CACHE = 0b0011


def check_burst_parameters(address_width, max_burst, max_outstanding):
    """Raise ``ConfigTypeError``/``ConfigError`` for invalid :class:`AxiBurstMaster` parameters."""
    check_positive_int("address_width", address_width, 64, "AXI4 addresses have at most 64 bits")
    check_positive_int("max_burst", max_burst)
    check_positive_int("max_outstanding", max_outstanding)
    if max_burst > 256 or max_burst & (max_burst - 1):
        raise ConfigError(f"max_burst must be a power of two from 1 to 256, not {max_burst}")


class AxiBurstMaster(wiring.Component):
    """Serves the accelerator's external-memory port over AXI4, in bursts.

    The accelerator asks for one 16-byte word at a time (``mem.req``); runs of
    requests to consecutive words in the same direction are gathered into one
    INCR burst of up to ``max_burst`` beats. A burst never crosses a
    ``max_burst``-word boundary of the bus address space, so it never crosses
    a 4 KB page. A burst is issued as soon as its run ends: the next request
    is not consecutive, is of the other direction, would cross the boundary,
    or no request came this cycle. Every transaction uses ID 0, full 16-byte
    beats (``wstrb`` all ones) and AxCACHE ``0b0011``.

    Throughput: one word per cycle in either direction, given a slave that
    keeps up (gathering costs no cycles between bursts). Latency: requests
    and read data each pass a :class:`RegisterSlice` (one cycle), and a
    burst's address goes out one cycle after its last word left the slice; write data
    wait in a ``2 * max_burst``-word FIFO until their address is accepted.

    Ordering: read data return in request order (a single AXI ID). A read is
    not accepted while writes are in flight and a write is not accepted while
    reads are in flight, so a load always sees an earlier store, and
    :attr:`idle` means every write has been acknowledged.

    Parameters
    ----------
    address_width : int
        AXI byte-address width.
    max_burst : int
        Beats per burst, a power of two from 1 to 256.
    max_outstanding : int
        Bursts in flight per direction (address sent, last response not yet
        received).

    Attributes
    ----------
    mem : the accelerator's memory port (word addresses)
    base : ``In(address_width)``
        Byte address of word 0; its four low bits are ignored (16-byte aligned).
    idle : ``Out(1)``
        No request is gathered, queued or in flight.
    bus_error : ``Out(1)``
        A response other than OKAY has arrived since :attr:`clear_error`.
    bus_error_resp : ``Out(2)``
        The first such response (``RESP_SLVERR`` or ``RESP_DECERR``) ...
    bus_error_write : ``Out(1)``
        ... and whether it answered a write (B) rather than a read (R).
    clear_error : ``In(1)``
    ``aw*``, ``w*``, ``b*``, ``ar*``, ``r*`` : the AXI4 master ports
    """

    def __init__(self, *, address_width=40, max_burst=16, max_outstanding=4):
        check_burst_parameters(address_width, max_burst, max_outstanding)
        self._max_burst = max_burst
        self._max_outstanding = max_outstanding
        super().__init__({
            "mem": memory_port().flip(),
            "base": In(address_width),
            "idle": Out(1),
            "bus_error": Out(1),
            "bus_error_resp": Out(2),
            "bus_error_write": Out(1),
            "clear_error": In(1),
            **axi_master_members(address_width, MEMORY_DATA_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        max_burst, max_outstanding = self._max_burst, self._max_outstanding
        # Requests enter through a register slice: no path from the accelerator's
        # address logic into the gathering below, nor from it back to the accelerator.
        m.submodules.request_slice = request_slice = RegisterSlice(
            self.mem.req.payload.shape())
        wiring.connect(m, wiring.flipped(self.mem.req), request_slice.input)
        request = request_slice.output

        # Bursts in flight per direction.
        reads_in_flight = Signal(range(max_outstanding + 1))
        writes_in_flight = Signal(range(max_outstanding + 1))

        # The burst being gathered ...
        gathering = Signal()
        gather_write = Signal()
        gather_first = Signal(MEMORY_ADDRESS_BITS)
        gather_count = Signal(range(max_burst + 1))
        gather_next = Signal(MEMORY_ADDRESS_BITS)     # gather_first + gather_count
        next_at_boundary = Signal()                   # gather_next starts a max_burst block
        # ... and the one whose address is on AW or AR.
        address_valid = Signal()
        address_write = Signal()
        address_first = Signal(MEMORY_ADDRESS_BITS)
        address_count = Signal(range(max_burst + 1))

        # Write data wait here until their burst's address has been accepted.
        m.submodules.write_data = write_data = fifo.SyncFIFOBuffered(
            width=MEMORY_DATA_BITS, depth=2 * max_burst)
        m.submodules.write_lengths = write_lengths = fifo.SyncFIFOBuffered(
            width=len(address_count), depth=max_outstanding)

        # AW / AR.
        byte_address = Cat(C(0, 4), self.base[4:] + address_first)
        m.d.comb += [
            self.awaddr.eq(byte_address), self.araddr.eq(byte_address),
            self.awlen.eq(address_count - 1), self.arlen.eq(address_count - 1),
            self.awsize.eq(4), self.arsize.eq(4),
            self.awburst.eq(BURST_INCR), self.arburst.eq(BURST_INCR),
            self.awcache.eq(_CACHE), self.arcache.eq(_CACHE),
            # Held back while the direction has max_outstanding bursts in flight;
            # that count only falls while an address waits, so valid never drops.
            self.awvalid.eq(address_valid & address_write
                            & (writes_in_flight < max_outstanding)),
            self.arvalid.eq(address_valid & ~address_write
                            & (reads_in_flight < max_outstanding)),
        ]
        address_taken = (self.awvalid & self.awready) | (self.arvalid & self.arready)
        with m.If(address_taken):
            m.d.sync += address_valid.eq(0)
        m.d.comb += [write_lengths.w_data.eq(address_count),
                     write_lengths.w_en.eq(self.awvalid & self.awready)]

        # Gathering. A burst starting on a max_burst boundary fills up exactly at
        # the next boundary, so "the next word does not follow" covers "full".
        # Boundaries count in absolute words: the image base need only be 16-byte aligned.
        follows = ((request.payload.write == gather_write)
                   & (request.payload.addr == gather_next) & ~next_at_boundary)
        joins = request.valid & gathering & follows
        issue = Signal()
        m.d.comb += issue.eq(gathering & (~address_valid | address_taken) & ~joins)
        with m.If(issue):
            m.d.sync += [address_valid.eq(1), address_write.eq(gather_write),
                         address_first.eq(gather_first), address_count.eq(gather_count),
                         gathering.eq(0)]

        # A request of one direction waits until the other direction is quiet.
        other_busy = Mux(request.payload.write,
                         (reads_in_flight != 0) | (address_valid & ~address_write)
                         | (gathering & ~gather_write),
                         (writes_in_flight != 0) | (address_valid & address_write)
                         | (gathering & gather_write))
        starts = request.valid & (~gathering | issue) & ~joins & ~other_busy
        data_room = ~request.payload.write | write_data.w_rdy
        m.d.comb += request.ready.eq((starts | joins) & data_room)
        with m.If(request.valid & request.ready):
            with m.If(starts):
                m.d.sync += [gathering.eq(1), gather_write.eq(request.payload.write),
                             gather_first.eq(request.payload.addr), gather_count.eq(1)]
            with m.Else():
                m.d.sync += gather_count.eq(gather_count + 1)
            following = request.payload.addr + 1
            m.d.sync += [gather_next.eq(following),
                         next_at_boundary.eq((self.base[4:] + following) % max_burst == 0)]
        m.d.comb += [write_data.w_data.eq(request.payload.wdata),
                     write_data.w_en.eq(request.valid & request.ready & request.payload.write)]

        # W: the data of bursts whose address has gone out.
        beat = Signal(range(max_burst))
        last = beat == write_lengths.r_data - 1
        m.d.comb += [
            self.wdata.eq(write_data.r_data),
            self.wstrb.eq(-1),
            self.wlast.eq(last),
            self.wvalid.eq(write_lengths.r_rdy & write_data.r_rdy),
            write_data.r_en.eq(self.wvalid & self.wready),
            write_lengths.r_en.eq(self.wvalid & self.wready & last),
        ]
        with m.If(self.wvalid & self.wready):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))

        # B and R; read data reach the accelerator through a register slice too.
        m.submodules.response_slice = response_slice = RegisterSlice(MEMORY_DATA_BITS)
        wiring.connect(m, response_slice.output, wiring.flipped(self.mem.resp))
        m.d.comb += [
            self.bready.eq(1),
            response_slice.input.valid.eq(self.rvalid),
            response_slice.input.payload.eq(self.rdata),
            self.rready.eq(response_slice.input.ready),
        ]
        read_done = self.rvalid & self.rready & self.rlast
        m.d.sync += reads_in_flight.eq(reads_in_flight + (self.arvalid & self.arready)
                                       - read_done)
        m.d.sync += writes_in_flight.eq(writes_in_flight + (self.awvalid & self.awready)
                                        - self.bvalid)
        with m.If(self.clear_error):
            m.d.sync += [self.bus_error.eq(0), self.bus_error_resp.eq(RESP_OKAY),
                         self.bus_error_write.eq(0)]
        write_error = self.bvalid & (self.bresp != RESP_OKAY)
        read_error = self.rvalid & self.rready & (self.rresp != RESP_OKAY)
        with m.Elif((write_error | read_error) & ~self.bus_error):
            m.d.sync += [self.bus_error.eq(1), self.bus_error_write.eq(write_error),
                         self.bus_error_resp.eq(Mux(write_error, self.bresp, self.rresp))]

        m.d.comb += self.idle.eq(~request.valid & ~response_slice.output.valid
                                 & ~gathering & ~address_valid
                                 & (reads_in_flight == 0)
                                 & (writes_in_flight == 0))
        return m
