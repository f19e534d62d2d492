"""The scratchpads: ACT, WGT, PRM, LNP and IDX memories, each port shared by its users."""

from functools import reduce
from operator import or_

from amaranth import Cat, Module, Mux, Signal, Value
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In
from amaranth.utils import exact_log2

from .ports import (INTERLEAVED, SCRATCHPAD_PORTS, SLAB_READS, scratchpad_entries,
                    scratchpad_ports)

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

    With ``config.gemm.k_per_cycle = s > 1`` ACT (each bank) and WGT are ``s``
    interleaved memories (word ``x`` in memory ``x % s``), all read at one row
    by every read: the GEMM unit's ``act_slab_read`` and ``wgt_slab_read``
    (:data:`SLAB_READS`) share the ports of ``act_read`` and ``wgt_read`` and
    take the aligned group of ``s`` words, every other reader its word through
    an ``s``:1 multiplexer on the low address bits it registered with ``en``.
    A write goes to the memory its low bits select.

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
            lanes = self._config.gemm.k_per_cycle if name in INTERLEAVED else 1
            banks = []
            for bank, (first, end) in enumerate(zip(bounds, bounds[1:])):
                stores = []
                for lane in range(lanes):
                    store = memory.Memory(shape=shape, depth=(end - first) // lanes, init=[])
                    store_name = name if len(bounds) == 2 else f"{name}{bank}"
                    m.submodules[store_name if lanes == 1 else f"{store_name}_{lane}"] = store
                    stores.append(store)
                banks.append(stores)
            for port_name, (memory_name, direction) in SCRATCHPAD_PORTS.items():
                if memory_name != name or port_name in SLAB_READS:
                    continue
                slab_names = [slab for slab, shared in SLAB_READS.items()
                              if shared == port_name and slab in self._users]
                requests = list(getattr(self, port_name)) if port_name in self._users else []
                slabs = [request for slab in slab_names for request in getattr(self, slab)]
                if requests or slabs:
                    self._connect(m, banks, requests, slabs, direction)
        return m

    @staticmethod
    def _connect(m, banks, requests, slabs, direction):
        """One port of each memory of ``banks`` (the banks of a scratchpad in address
        order, each its interleaved memories), shared by ``requests`` (word users) and
        ``slabs`` (users of the aligned group of words); the top address bit selects the
        bank of two, the low ones the memory within it."""
        users = requests + slabs
        lane_bits = exact_log2(len(banks[0]))
        data = []
        for bank, stores in enumerate(banks):
            if len(banks) == 1:
                chosen = [request.en for request in users]
            else:
                chosen = [request.en & (request.addr[-1] == bank) for request in users]
            address = _enabled(users, chosen, "addr")
            write_data = _enabled(users, chosen, "data") if direction == "write" else None
            lanes = []
            for lane, store in enumerate(stores):
                enable = Cat(chosen).any()
                if direction == "read":
                    port = store.read_port()
                    lanes.append(port.data)
                else:
                    port = store.write_port()
                    m.d.comb += port.data.eq(write_data)
                    if lane_bits:
                        enable &= address[:lane_bits] == lane
                m.d.comb += [port.addr.eq(address[lane_bits:]), port.en.eq(enable)]
            data.append(lanes)
        if direction == "write":
            return
        for request in users:
            bank = 0
            if len(banks) > 1:
                bank = Signal(name=f"{request.addr.name}_bank")
                with m.If(request.en):
                    m.d.sync += bank.eq(request.addr[-1])
            words = [Mux(bank, data[1][lane], data[0][lane]) if len(banks) > 1
                     else data[0][lane] for lane in range(len(data[0]))]
            if request in slabs:
                m.d.comb += request.data.eq(Cat(*words))
            elif lane_bits:
                lane = Signal(lane_bits, name=f"{request.addr.name}_lane")
                with m.If(request.en):
                    m.d.sync += lane.eq(request.addr[:lane_bits])
                m.d.comb += request.data.eq(
                    Cat(*words).word_select(lane, len(Value.cast(words[0]))))
            else:
                m.d.comb += request.data.eq(words[0])


def _enabled(requests, chosen, name):
    """Member ``name`` of the request whose ``chosen`` is high (0 if none is): an OR of the
    members each ANDed with its ``chosen`` (at most one is high), two LUT levels for up to
    eight users where a chain of multiplexers would take one level per user."""
    return reduce(or_, (Value.cast(getattr(request, name)) & enabled.replicate(
        len(Value.cast(getattr(request, name)))) for request, enabled in zip(requests, chosen)))
