"""The scratchpads: ACT, WGT, PRM, LNP and IDX memories, each port shared by its users."""

from functools import reduce
from operator import or_

from amaranth import Cat, Module, Mux, Signal, Value
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

    With ``config.act_banks == 2`` ACT is two memories, words below
    ``config.act_bank_start`` and the rest, and each ACT port is one port per
    bank: a request goes to the bank its address's top bit selects, and at
    most one user per bank and port may have ``en`` high, so two units may
    use the same port name in different banks at once (an instruction beside
    a GEMM). A user's read data comes from the bank of its last read (a
    register per user, loaded with ``en``): one 2:1 multiplexer more on the
    read path.

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
            bank_start = self._config.act_bank_start if name == "act" else None
            bounds = [0, depth] if bank_start is None else [0, bank_start, depth]
            stores = []
            for bank, (first, end) in enumerate(zip(bounds, bounds[1:])):
                store = memory.Memory(shape=shape, depth=end - first, init=[])
                m.submodules[name if len(bounds) == 2 else f"{name}{bank}"] = store
                stores.append(store)
            for port_name, (memory_name, direction) in SCRATCHPAD_PORTS.items():
                if memory_name == name and port_name in self._users:
                    self._connect(m, stores, getattr(self, port_name), direction)
        return m

    @staticmethod
    def _connect(m, stores, requests, direction):
        """One port of each of ``stores`` (the banks of a scratchpad, in address order),
        shared by ``requests``; the top address bit selects the bank of two."""
        data = []
        for bank, store in enumerate(stores):
            if len(stores) == 1:
                chosen = [request.en for request in requests]
            else:
                chosen = [request.en & (request.addr[-1] == bank) for request in requests]
            if direction == "read":
                port = store.read_port()
                data.append(port.data)
            else:
                port = store.write_port()
                m.d.comb += port.data.eq(_enabled(requests, chosen, "data"))
            m.d.comb += [port.addr.eq(_enabled(requests, chosen, "addr")),
                         port.en.eq(Cat(chosen).any())]
        if direction == "write":
            return
        for request in requests:
            if len(stores) == 1:
                m.d.comb += request.data.eq(data[0])
                continue
            bank = Signal(name=f"{request.addr.name}_bank")
            with m.If(request.en):
                m.d.sync += bank.eq(request.addr[-1])
            m.d.comb += request.data.eq(Mux(bank, data[1], data[0]))


def _enabled(requests, chosen, name):
    """Member ``name`` of the request whose ``chosen`` is high (0 if none is): an OR of the
    members each ANDed with its ``chosen`` (at most one is high), two LUT levels for up to
    eight users where a chain of multiplexers would take one level per user."""
    return reduce(or_, (Value.cast(getattr(request, name)) & enabled.replicate(
        len(Value.cast(getattr(request, name)))) for request, enabled in zip(requests, chosen)))
