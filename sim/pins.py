"""One way to drive a design's ports from either simulator.

Testbench logic (:mod:`vitforge.sim.gemm.session`) is written once against
:class:`Pins` and runs unchanged in Amaranth's Python simulator (fast unit
tests) and under cocotb/Verilator (cycle-accurate co-simulation).

Ports are named by their Amaranth path with dots (``"a_load.addr"``); in
Verilog the same port is ``a_load__addr``. Values are unsigned integers of the
port's bits. Inputs are set between clock edges and sampled at the next rising
edge; :meth:`Pins.tick` returns once the outputs show that edge's results, and
:meth:`Pins.settle` once combinational outputs follow inputs set since.
"""

from vitforge.errors import WatchdogError

__all__ = ["AmaranthPins", "CocotbPins", "run_in_amaranth", "pulse_reset"]


class AmaranthPins:
    """:class:`Pins` over an Amaranth async testbench context.

    Parameters
    ----------
    context : amaranth.sim testbench context
    component : wiring.Component
        The design under test; port paths are looked up on it.
    """

    def __init__(self, context, component):
        self._context = context
        self._component = component

    def _port(self, path):
        port = self._component
        for name in path.split("."):
            port = getattr(port, name)
        return port.as_value() if hasattr(port, "as_value") else port

    def set(self, path, value):
        self._context.set(self._port(path), value)

    def get(self, path):
        return self._context.get(self._port(path))

    async def tick(self):
        await self._context.tick()

    async def settle(self):
        """Let combinational outputs follow inputs set in this cycle (instant here)."""

    async def wait_until(self, path, value, max_cycles):
        """Tick until port ``path`` equals ``value``; return the cycles waited."""
        port = self._port(path)
        for cycle in range(max_cycles + 1):
            if self._context.get(port) == value:
                return cycle
            await self._context.tick()
        raise WatchdogError(f"{path} did not become {value} within {max_cycles} cycles")


def run_in_amaranth(component, session, *, period=1e-8):
    """Run ``await session(pins)`` on ``component`` in Amaranth's simulator; return its result.

    ``session`` is testbench logic written against :class:`AmaranthPins` (or
    any pins); the simulation ends when it returns.
    """
    from amaranth.sim import Simulator

    outcome = {}

    async def testbench(context):
        outcome["result"] = await session(AmaranthPins(context, component))

    simulator = Simulator(component)
    simulator.add_clock(period)
    simulator.add_testbench(testbench)
    simulator.run()
    return outcome["result"]


def _unsigned(value):
    """A cocotb ``Logic`` (1-bit port) or ``LogicArray`` as an unsigned integer."""
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


class CocotbPins:
    """:class:`Pins` over a cocotb DUT handle, clocked by ``dut.clk``.

    Inputs change on falling clock edges, so they are stable at rising edges.
    :meth:`wait_until` sleeps on the signal's edge under a time-out instead of
    polling, so long runs cost no Python per cycle.

    Parameters
    ----------
    dut : cocotb handle of the top level
    period_ns : int
        Clock period the testbench started ``dut.clk`` with.
    """

    def __init__(self, dut, period_ns):
        self._dut = dut
        self._period_ns = period_ns
        self._handles = {}

    def _handle(self, path):
        if path not in self._handles:
            self._handles[path] = getattr(self._dut, path.replace(".", "__"))
        return self._handles[path]

    def set(self, path, value):
        self._handle(path).value = value

    def get(self, path):
        return _unsigned(self._handle(path).value)

    def drive_inputs(self, signature, value=0):
        """Drive every input port of ``signature`` (the design's ``wiring.Signature``) to
        ``value``: a 4-state simulator leaves an undriven input at Z, which Verilator's 2-state
        model reads as 0."""
        from amaranth.lib.wiring import In

        for path, member in signature.members.flatten():
            if member.is_port and member.flow == In:
                self.set(".".join(map(str, path)), value)

    async def tick(self):
        from cocotb.triggers import FallingEdge
        await FallingEdge(self._dut.clk)

    async def settle(self):
        """Let combinational outputs follow inputs set in this cycle (one time step)."""
        from cocotb.triggers import Timer
        await Timer(1, "step")

    async def wait_until(self, path, value, max_cycles):
        """Sleep until the 1-bit port ``path`` equals ``value``; return the cycles waited."""
        from cocotb.simtime import get_sim_time
        from cocotb.triggers import FallingEdge, RisingEdge, SimTimeoutError, with_timeout

        handle = self._handle(path)
        start = get_sim_time("ns")
        if _unsigned(handle.value) != value:
            edge = RisingEdge(handle) if value else FallingEdge(handle)
            try:
                await with_timeout(edge, max_cycles * self._period_ns, "ns")
            except SimTimeoutError:
                raise WatchdogError(f"{path} did not become {value} within {max_cycles} "
                                    f"cycles") from None
            await FallingEdge(self._dut.clk)
        return round((get_sim_time("ns") - start) / self._period_ns)


async def pulse_reset(dut, cycles=2):
    """Hold ``dut.rst`` high for ``cycles`` falling edges of ``dut.clk`` (cocotb)."""
    from cocotb.triggers import FallingEdge

    dut.rst.value = 1
    for _ in range(cycles):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
