"""The accelerator with a model of external memory, for simulation."""

from amaranth import ClockSignal, Instance, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from vitforge.hw.accel.accelerator import Accelerator, control_members
from vitforge.hw.accel.ports import MEMORY_DATA_BITS, forward
from vitforge.hw.accel.profile import PROFILE_DEPTH, profile_retirements
from vitforge.hw.gemm.core import COUNTER_BITS

__all__ = ["SimulatedSystem", "VERILOG_MEMORY_MODULE"]

#: External memory as plain Verilog, for Verilator runs: Amaranth would spell out
#: the initial contents of every word, which costs minutes for megabytes.
VERILOG_MEMORY_MODULE = """
module vitforge_sim_memory #(parameter WORDS = 1024, parameter ADDR_BITS = 10) (
  input clk,
  input [ADDR_BITS-1:0] read_addr,
  output reg [127:0] read_data,
  input [ADDR_BITS-1:0] write_addr,
  input [127:0] write_data,
  input write_en
);
  reg [127:0] storage [0:WORDS-1];
  always @(posedge clk) begin
    if (write_en) storage[write_addr] <= write_data;
    read_data <= storage[read_addr];
  end
endmodule
"""


class SimulatedSystem(wiring.Component):
    """:class:`Accelerator` plus ``memory_words`` words of external memory.

    The memory accepts a request every cycle and answers reads one cycle
    later, in order; a response the accelerator does not take (``mem.resp.ready``
    low, as the DMA's sparse loads do while they expand a word) stays on
    ``mem.resp`` and holds new requests back, as the AXI shell's read channel does. While the accelerator is idle, the testbench reads and
    writes the memory through ``host_*`` (one word per cycle, read data one
    cycle later): it loads the image, starts the program and reads the
    results, and never drives the accelerator cycle by cycle. A profile memory
    logs the cycle count at which each instruction retired. The accelerator's
    control and status ports (:func:`control_members`) are the system's own.
    """

    def __init__(self, config, memory_words, *, verilog_memory=False):
        self._config = config
        self._memory_words = memory_words
        self._verilog_memory = verilog_memory
        super().__init__({
            "host_addr": In(32),
            "host_wdata": In(MEMORY_DATA_BITS),
            "host_we": In(1),
            "host_rdata": Out(MEMORY_DATA_BITS),
            **control_members(),
            "profile_addr": In(range(PROFILE_DEPTH)),
            "profile_data": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = accelerator = Accelerator(self._config)
        read, write = self._memory(m)
        request = accelerator.mem.req
        responding = Signal()           # a read response is on mem.resp
        held = Signal.like(request.payload.addr)    # ... of the word at this address
        stall = Signal()                # ... and the accelerator does not take it yet
        forward(m, self, accelerator, control_members())
        m.d.comb += [
            stall.eq(responding & ~accelerator.mem.resp.ready),
            request.ready.eq(~stall),
            accelerator.mem.resp.valid.eq(responding),
            accelerator.mem.resp.payload.eq(read.data),
            self.host_rdata.eq(read.data),
        ]

        # Profile: the cycle count when each instruction retired.
        profile = profile_retirements(m, accelerator)
        m.d.comb += [
            profile.read_addr.eq(self.profile_addr),
            self.profile_data.eq(profile.read_data),
        ]
        with m.If(~stall):
            m.d.sync += [responding.eq(request.valid & ~request.payload.write),
                         held.eq(request.payload.addr)]
        with m.If(accelerator.busy):
            m.d.comb += [
                read.addr.eq(Mux(stall, held, request.payload.addr)),
                write.addr.eq(request.payload.addr),
                write.data.eq(request.payload.wdata),
                write.en.eq(request.valid & request.payload.write & ~stall),
            ]
        with m.Else():
            m.d.comb += [read.addr.eq(self.host_addr), write.addr.eq(self.host_addr),
                         write.data.eq(self.host_wdata), write.en.eq(self.host_we)]
        return m

    def _memory(self, m):
        """Read and write ports of the external memory (Amaranth or plain Verilog)."""
        if not self._verilog_memory:
            m.submodules.dram = dram = memory.Memory(shape=MEMORY_DATA_BITS,
                                                     depth=self._memory_words, init=[])
            return dram.read_port(), dram.write_port()
        bits = max(1, (self._memory_words - 1).bit_length())
        read = wiring.Signature({"addr": Out(bits), "data": In(MEMORY_DATA_BITS)}).create()
        write = wiring.Signature({"addr": Out(bits), "data": Out(MEMORY_DATA_BITS),
                                  "en": Out(1)}).create()
        m.submodules.dram = Instance(
            "vitforge_sim_memory", p_WORDS=self._memory_words, p_ADDR_BITS=bits,
            i_clk=ClockSignal(), i_read_addr=read.addr, o_read_data=read.data,
            i_write_addr=write.addr, i_write_data=write.data, i_write_en=write.en)
        return read, write
