"""The scratchpads: ACT, WGT, PRM, LNP and IDX memories, each port shared by its users."""

from amaranth import Cat, Module, Mux
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In

from .ports import SCRATCHPAD_PORTS, scratchpad_entries, scratchpad_ports

__all__ = ["Scratchpads"]


class Scratchpads(wiring.Component):
    """The accelerator's on-chip memories and the sharing of their ports.

    Each scratchpad port of :data:`SCRATCHPAD_PORTS` that some unit uses is
    one memory port, driven by whichever of its users has ``en`` high (units
    take turns, so at most one does); read data goes back to every user one
    cycle after ``en`` (``amaranth.lib.memory`` read ports, not transparent).
    ``y_read`` is the activation scratchpad's second read port.

    Parameters
    ----------
    config : AcceleratorConfig
    users : dict of str to int
        Port name -> how many units have that port.

    Attributes
    ----------
    <port name> : array of ``In(...)``
        One port per user, the flipped twin of :func:`scratchpad_ports`.
    """

    def __init__(self, config, users):
        self._config = config
        unknown = sorted(set(users) - set(SCRATCHPAD_PORTS))
        if unknown:
            raise ValueError(f"users must name scratchpad ports {sorted(SCRATCHPAD_PORTS)}, "
                             f"not {unknown}")
        self._users = dict(users)
        ports = scratchpad_ports(config, *self._users)
        super().__init__({name: In(ports[name].signature).array(count)
                          for name, count in self._users.items()})

    def elaborate(self, platform):
        m = Module()
        for name, (shape, depth) in scratchpad_entries(self._config).items():
            m.submodules[name] = store = memory.Memory(shape=shape, depth=depth, init=[])
            for port_name, (memory_name, direction) in SCRATCHPAD_PORTS.items():
                if memory_name != name or port_name not in self._users:
                    continue
                requests = getattr(self, port_name)
                if direction == "read":
                    port = store.read_port()
                    m.d.comb += [request.data.eq(port.data) for request in requests]
                else:
                    port = store.write_port()
                    m.d.comb += port.data.eq(_enabled(requests, "data"))
                m.d.comb += [port.addr.eq(_enabled(requests, "addr")),
                             port.en.eq(Cat(request.en for request in requests).any())]
        return m


def _enabled(requests, name):
    """Member ``name`` of the request with ``en`` high (0 if none is)."""
    value = 0
    for request in reversed(requests):
        value = Mux(request.en, getattr(request, name), value)
    return value
