"""AXI4 and AXI4-Lite signal tables, as flat port members.

Flat members named ``<prefix>_<signal>`` are what Vivado's interface
inference and cocotbext-axi's ``from_prefix`` both look for.
"""

from amaranth.lib.wiring import In, Out

__all__ = ["axi_lite_slave_members", "axi_master_members", "prefixed", "connect_flat",
           "RESP_OKAY", "RESP_SLVERR", "BURST_INCR"]

RESP_OKAY = 0
RESP_SLVERR = 2
BURST_INCR = 1


def axi_lite_slave_members(address_width):
    """AXI4-Lite slave with 32-bit data: ``{signal: In/Out(width)}``."""
    return {
        "awaddr": In(address_width), "awprot": In(3), "awvalid": In(1), "awready": Out(1),
        "wdata": In(32), "wstrb": In(4), "wvalid": In(1), "wready": Out(1),
        "bresp": Out(2), "bvalid": Out(1), "bready": In(1),
        "araddr": In(address_width), "arprot": In(3), "arvalid": In(1), "arready": Out(1),
        "rdata": Out(32), "rresp": Out(2), "rvalid": Out(1), "rready": In(1),
    }


def axi_master_members(address_width, data_width):
    """AXI4 master with one-bit IDs, all transactions on ID 0: ``{signal: In/Out(width)}``."""
    members = {}
    for channel in ("aw", "ar"):
        members.update({
            f"{channel}id": Out(1), f"{channel}addr": Out(address_width), f"{channel}len": Out(8),
            f"{channel}size": Out(3), f"{channel}burst": Out(2), f"{channel}cache": Out(4),
            f"{channel}prot": Out(3), f"{channel}valid": Out(1), f"{channel}ready": In(1),
        })
    members.update({
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
        "wvalid": Out(1), "wready": In(1),
        "bid": In(1), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "rid": In(1), "rdata": In(data_width), "rresp": In(2), "rlast": In(1), "rvalid": In(1),
        "rready": Out(1),
    })
    return members


def prefixed(prefix, members):
    """``members`` renamed ``<prefix>_<signal>``."""
    return {f"{prefix}_{name}": member for name, member in members.items()}


def connect_flat(m, outer, prefix, inner, members):
    """Wire ``inner``'s ports ``members`` to ``outer``'s ``<prefix>_<signal>`` ports.

    ``members`` are as seen from ``inner``; ``outer`` has the same directions.
    """
    for name, member in members.items():
        outer_port = getattr(outer, f"{prefix}_{name}")
        inner_port = getattr(inner, name)
        if member.flow == In:
            m.d.comb += inner_port.eq(outer_port)
        else:
            m.d.comb += outer_port.eq(inner_port)
