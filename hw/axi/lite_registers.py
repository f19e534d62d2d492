"""An AXI4-Lite slave exposing a table of 32-bit registers."""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .signals import RESP_OKAY, RESP_SLVERR, axi_lite_slave_members

__all__ = ["AxiLiteRegisters"]


class AxiLiteRegisters(wiring.Component):
    """AXI4-Lite slave (32-bit data) for ``registers`` (:class:`Register` records).

    Each register ``NAME`` has a port ``reg_NAME``: an output holding the
    value written for ``rw`` registers, an input read back for ``ro`` and
    ``w1c`` registers; ``w1c`` registers also get ``clear_NAME``, the written
    bits pulsed for one cycle. The ``strobes`` bits of an ``rw`` register
    are high for one cycle after a write of 1 and read 0 otherwise (a start
    strobe).

    One transaction at a time: a write completes when address and data have
    both arrived (in either order), a read one cycle after its address. An
    address outside the table answers ``SLVERR`` and changes nothing.
    Registers are written whole (``wstrb`` and ``*prot`` are ignored) and the
    two low address bits are ignored.

    Parameters
    ----------
    registers : sequence of Register
    address_width : int
    """

    def __init__(self, registers, address_width=8):
        self._registers = tuple(registers)
        members = axi_lite_slave_members(address_width)
        for register in self._registers:
            members[f"reg_{register.name}"] = Out(32) if register.access == "rw" else In(32)
            if register.access == "w1c":
                members[f"clear_{register.name}"] = Out(32)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        # Write channel: take address and data, then answer.
        address = Signal.like(self.awaddr)
        have_address = Signal()
        value = Signal(32)
        have_value = Signal()
        m.d.comb += [self.awready.eq(~have_address & ~self.bvalid),
                     self.wready.eq(~have_value & ~self.bvalid)]
        with m.If(self.awvalid & self.awready):
            m.d.sync += [address.eq(self.awaddr), have_address.eq(1)]
        with m.If(self.wvalid & self.wready):
            m.d.sync += [value.eq(self.wdata), have_value.eq(1)]
        for register in self._registers:
            if register.access == "w1c":
                m.d.sync += getattr(self, f"clear_{register.name}").eq(0)
            if register.strobes:
                port = getattr(self, f"reg_{register.name}")
                m.d.sync += port.eq(port & ~register.strobes)        # strobes last a cycle
        with m.If(have_address & have_value & ~self.bvalid):
            m.d.sync += [have_address.eq(0), have_value.eq(0), self.bvalid.eq(1),
                         self.bresp.eq(RESP_SLVERR)]
            with m.Switch(address[2:]):
                for register in self._registers:
                    with m.Case(register.offset >> 2):
                        m.d.sync += self.bresp.eq(RESP_OKAY)
                        if register.access == "rw":
                            m.d.sync += getattr(self, f"reg_{register.name}").eq(value)
                        elif register.access == "w1c":
                            m.d.sync += getattr(self, f"clear_{register.name}").eq(value)
        with m.If(self.bvalid & self.bready):
            m.d.sync += self.bvalid.eq(0)

        # Read channel.
        m.d.comb += self.arready.eq(~self.rvalid)
        with m.If(self.arvalid & self.arready):
            m.d.sync += [self.rvalid.eq(1), self.rresp.eq(RESP_SLVERR), self.rdata.eq(0)]
            with m.Switch(self.araddr[2:]):
                for register in self._registers:
                    with m.Case(register.offset >> 2):
                        m.d.sync += [self.rresp.eq(RESP_OKAY),
                                     self.rdata.eq(getattr(self, f"reg_{register.name}"))]
        with m.If(self.rvalid & self.rready):
            m.d.sync += self.rvalid.eq(0)
        return m
