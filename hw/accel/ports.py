"""Port signatures and helpers shared by the accelerator's units."""

from amaranth import Mux, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .isa import FIELDS, INSTRUCTION_BITS

__all__ = ["Unit", "act_word", "read_request", "write_request", "memory_port", "field",
           "arbitrate_reads", "arbitrate_writes", "MEMORY_DATA_BITS", "MEMORY_ADDRESS_BITS"]

#: External memory: 128-bit words, word addresses.
MEMORY_DATA_BITS = 128
MEMORY_ADDRESS_BITS = 32


def act_word(config):
    """An activation (or weight) scratchpad word: ``array`` int8 lanes."""
    return data.ArrayLayout(signed(8), config.array)


class Unit(wiring.Component):
    """An execution unit of the accelerator.

    The controller puts an instruction on ``instruction`` (held while the unit
    runs) and pulses ``start``; the unit raises ``busy`` and pulses ``done``
    when it has finished. ``ports`` are the unit's own memory ports.
    """

    def __init__(self, config, ports):
        self._config = config
        super().__init__({"start": In(1), "instruction": In(INSTRUCTION_BITS), "busy": Out(1),
                          "done": Out(1), **ports})


def read_request(address_width, shape):
    """A unit's read port on a one-cycle-latency memory: ``addr``/``en`` out, ``data`` in."""
    return Out(wiring.Signature({"addr": Out(address_width), "en": Out(1), "data": In(shape)}))


def write_request(address_width, shape):
    return Out(wiring.Signature({"addr": Out(address_width), "data": Out(shape), "en": Out(1)}))


def memory_port():
    """External memory: requests (read or write a word) and in-order read responses."""
    request = data.StructLayout({"addr": MEMORY_ADDRESS_BITS, "write": 1,
                                 "wdata": MEMORY_DATA_BITS})
    return Out(wiring.Signature({"req": Out(stream.Signature(request)),
                                 "resp": In(stream.Signature(MEMORY_DATA_BITS))}))


def field(instruction, opcode, name):
    """The bits of field ``name`` of ``opcode`` in an instruction signal."""
    offset, width = FIELDS[opcode][name]
    return instruction[offset:offset + width]


def _select(requests, name):
    value = 0
    for request in reversed(requests):
        value = Mux(request.en, getattr(request, name), value)
    return value


def arbitrate_reads(m, port, requests):
    """Drive memory read ``port`` from whichever of ``requests`` has ``en``.

    The accelerator's units take turns, so at most one request is enabled at
    a time; the read data goes back to all of them.
    """
    m.d.comb += [port.addr.eq(_select(requests, "addr")),
                 port.en.eq(_any(requests))]
    m.d.comb += [request.data.eq(port.data) for request in requests]


def arbitrate_writes(m, port, requests):
    """Drive memory write ``port`` from whichever of ``requests`` has ``en``."""
    m.d.comb += [port.addr.eq(_select(requests, "addr")),
                 port.data.eq(_select(requests, "data")),
                 port.en.eq(_any(requests))]


def _any(requests):
    value = 0
    for request in requests:
        value = value | request.en
    return value
