"""AXI4-Lite register access over :mod:`vitforge.sim.pins`, for either simulator."""

__all__ = ["write_register", "read_register"]


async def write_register(pins, address, value, *, prefix="", max_cycles=10):
    """Write one 32-bit register; returns the write response code (``bresp``).

    ``prefix`` names the port bundle (``"s_axil_"`` for the shell's ports).
    """
    pins.set(f"{prefix}awaddr", address)
    pins.set(f"{prefix}awvalid", 1)
    pins.set(f"{prefix}wdata", value)
    pins.set(f"{prefix}wstrb", 0xF)
    pins.set(f"{prefix}wvalid", 1)
    pins.set(f"{prefix}bready", 1)
    for _ in range(max_cycles):
        await pins.tick()
        if pins.get(f"{prefix}awready") == 0:
            pins.set(f"{prefix}awvalid", 0)
        if pins.get(f"{prefix}wready") == 0:
            pins.set(f"{prefix}wvalid", 0)
        if pins.get(f"{prefix}bvalid"):
            response = pins.get(f"{prefix}bresp")
            await pins.tick()
            pins.set(f"{prefix}bready", 0)
            return response
    raise AssertionError(f"no write response to 0x{address:x} within {max_cycles} cycles")


async def read_register(pins, address, *, prefix=""):
    """Read one 32-bit register; returns ``(rresp, rdata)``."""
    pins.set(f"{prefix}araddr", address)
    pins.set(f"{prefix}arvalid", 1)
    pins.set(f"{prefix}rready", 1)
    await pins.tick()
    pins.set(f"{prefix}arvalid", 0)
    if not pins.get(f"{prefix}rvalid"):
        raise AssertionError(f"no read response to 0x{address:x} one cycle after its address")
    result = pins.get(f"{prefix}rresp"), pins.get(f"{prefix}rdata")
    await pins.tick()
    pins.set(f"{prefix}rready", 0)
    return result
