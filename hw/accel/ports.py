"""The execution-unit interface and the port signatures the accelerator's parts share."""

from amaranth import Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..gemm.core import COUNTER_BITS
from ..gemm.requantize import RequantParams
from ..nonlinear.layernorm import ChannelParams
from .config import DRAM_WORD_BYTES, MEMORY_ADDRESS_BITS, SCRATCHPAD_ADDRESS_BITS, SIZE_BITS
from .isa import COUNTER_CLASSES, INSTRUCTION_BITS, SIDE_CLASSES

__all__ = ["control_members", "Unit", "act_word", "read_request", "write_request", "memory_port",
           "scratchpad_entries", "scratchpad_ports", "SCRATCHPAD_PORTS", "SLAB_READS",
           "INTERLEAVED", "forward", "LIVE_UPDATE",
           "MEMORY_DATA_BITS", "MEMORY_ADDRESS_BITS", "tile_addresses", "running_address",
           "pass_word", "registering"]

#: External memory: 128-bit words, word addresses.
MEMORY_DATA_BITS = 8 * DRAM_WORD_BYTES

#: Scratchpad ports a unit may have, by name: the scratchpad and the direction.
#: ``y_read`` is the activation scratchpad's second read port
#: (``AcceleratorConfig.act_read_ports == 2``; ``y_slab_read`` its groups of words); IDX
#: (the A row of each WGT word of sparse weights) has ``wgt_depth`` entries of
#: ``config.gemm.index_bits`` unsigned.
SCRATCHPAD_PORTS = {
    "act_read": ("act", "read"), "y_read": ("act", "read"), "act_write": ("act", "write"),
    "act_slab_read": ("act", "read"), "y_slab_read": ("act", "read"),
    "wgt_read": ("wgt", "read"), "wgt_write": ("wgt", "write"), "wgt_slab_read": ("wgt", "read"),
    "prm_read": ("prm", "read"), "prm_write": ("prm", "write"),
    "lnp_read": ("lnp", "read"), "lnp_write": ("lnp", "write"),
    "idx_read": ("idx", "read"), "idx_write": ("idx", "write"),
}


#: The scratchpads that are ``config.gemm.k_per_cycle`` interleaved memories (word ``x`` in
#: memory ``x % k_per_cycle``), so that the GEMM reads an aligned group of words at once.
INTERLEAVED = ("act", "wgt")
#: Ports that return the aligned group of ``k_per_cycle`` words holding ``addr`` (the GEMM
#: unit's, when ``k_per_cycle > 1``), and the port whose memory port they share.
SLAB_READS = {"act_slab_read": "act_read", "y_slab_read": "y_read",
              "wgt_slab_read": "wgt_read"}


#: A unit's writes to the live token registers (``docs/isa.md``, Live token count): the
#: new T, A and ceil(T / array), taken in the cycle ``en`` is high.
LIVE_UPDATE = wiring.Signature({"en": Out(1), "tokens": Out(SIZE_BITS), "alive": Out(SIZE_BITS),
                                "tiles": Out(SIZE_BITS)})


def act_word(config):
    """An activation (or weight) scratchpad word: ``array`` int8 lanes."""
    return data.ArrayLayout(signed(8), config.array)


def registering(m):
    """A ``stage`` function for the ISA's rules (``load_may_run_beside``,
    ``live_values``): it puts each value through a register of ``m``, ints as they are."""
    def register(term):
        if isinstance(term, int):
            return term
        value = Value.cast(term)
        staged = Signal(value.shape())
        m.d.sync += staged.eq(value)
        return staged
    return register


def tile_addresses(m, fields, *, load, advance):
    """Registers holding a row-parallel instruction's tile bases, ``src + t * src_stride`` and
    ``dst + t * dst_stride`` after the ``t``-th ``advance`` since ``load``: a tile's
    addresses without a multiplier.

    ``fields`` (a view with ``src``, ``src_stride``, ``dst`` and ``dst_stride``) is taken
    in the cycle ``load`` is high, the strides added in each cycle ``advance`` is (modulo
    the scratchpad address width).
    """
    bases = []
    for name in ("src", "dst"):
        base = Signal(SCRATCHPAD_ADDRESS_BITS, name=f"{name}_tile")
        with m.If(load):
            m.d.sync += base.eq(getattr(fields, name))
        with m.Elif(advance):
            m.d.sync += base.eq(base + getattr(fields, f"{name}_stride"))
        bases.append(base)
    return tuple(bases)


def running_address(m, name, *, step, loads, size=1):
    """A register holding the word address a pass reads at, so that no adder stands between
    a unit's counter and a scratchpad's address multiplexers.

    ``loads`` is a list of ``(condition, value)``: the first whose condition is high gives
    the next address; else it steps by ``size`` (an int or a value) in each cycle ``step``
    is high (modulo the scratchpad address width).
    """
    address = Signal(SCRATCHPAD_ADDRESS_BITS, name=name)
    following = address + size
    taken = step
    for condition, value in reversed(loads):
        following = Mux(condition, value, following)
        taken = taken | condition
    with m.If(taken):
        m.d.sync += address.eq(following)
    return address


def pass_word(m, fields, src_tile, *, load, advance, restart, step, size=1):
    """The word a row-parallel unit's passes read (``src_tile + index``, as a
    :func:`running_address`): ``fields.src`` in the cycle ``load`` is high, the next tile's
    first word (``src_tile + fields.src_stride``) in a cycle ``advance`` is, the tile's first
    word again when a pass ends (``restart``), and ``size`` more in each other cycle ``step``
    is. ``load`` and ``advance`` are those given to :func:`tile_addresses`."""
    return running_address(m, "word", step=step, size=size, loads=[
        (load, fields.src), (advance, src_tile + fields.src_stride), (restart, src_tile)])


def scratchpad_entries(config):
    """Scratchpad name -> (entry shape, depth)."""
    word = act_word(config)
    return {"act": (word, config.act_depth), "wgt": (word, config.wgt_depth),
            "prm": (RequantParams, config.prm_depth), "lnp": (ChannelParams, config.lnp_depth),
            "idx": (unsigned(config.gemm.index_bits), config.wgt_depth)}


def scratchpad_ports(config, *names):
    """The members of a unit's scratchpad ports ``names`` (keys of :data:`SCRATCHPAD_PORTS`)."""
    entries = scratchpad_entries(config)
    members = {}
    for name in names:
        if name not in SCRATCHPAD_PORTS:
            raise ValueError(f"scratchpad port name must be one of {sorted(SCRATCHPAD_PORTS)}, "
                             f"not {name!r}")
        memory, direction = SCRATCHPAD_PORTS[name]
        shape, depth = entries[memory]
        if name in SLAB_READS:
            shape = data.ArrayLayout(shape, config.gemm.k_per_cycle)
        request = read_request if direction == "read" else write_request
        members[name] = request(range(depth), shape)
    return members


class Unit(wiring.Component):
    """An execution unit of the accelerator: the interface every unit has.

    The controller holds an instruction on ``instruction`` while the unit
    runs and pulses ``start`` for one cycle; the unit raises ``busy`` and
    pulses ``done`` in the cycle it has finished (its last write done),
    after which it touches none of its ports. Beside these, a unit has its
    own memory ports, named after what they reach: the scratchpad ports of
    :data:`SCRATCHPAD_PORTS`, ``mem`` (external memory) or a port another
    unit has under the same name (``tbl_write``: the DMA fills the GELU table
    the element-wise unit holds). The accelerator connects them by name.

    Parameters
    ----------
    config : AcceleratorConfig
    ports : dict
        The unit's memory-port members.

    Attributes
    ----------
    memory_ports : tuple of str
        The names of the unit's memory ports.
    """

    def __init__(self, config, ports):
        self._config = config
        self.memory_ports = tuple(ports)
        super().__init__({"start": In(1), "instruction": In(INSTRUCTION_BITS), "busy": Out(1),
                          "done": Out(1), **ports})


def read_request(address_shape, shape):
    """A unit's read port on a one-cycle-latency memory: ``addr``/``en`` out, ``data`` in."""
    return Out(wiring.Signature({"addr": Out(address_shape), "en": Out(1), "data": In(shape)}))


def write_request(address_shape, shape):
    """A unit's write port: ``addr``, ``data``, ``en`` out."""
    return Out(wiring.Signature({"addr": Out(address_shape), "data": Out(shape), "en": Out(1)}))


def memory_port():
    """External memory: requests (read or write a word) and in-order read responses."""
    request = data.StructLayout({"addr": MEMORY_ADDRESS_BITS, "write": 1,
                                 "wdata": MEMORY_DATA_BITS})
    return Out(wiring.Signature({"req": Out(stream.Signature(request)),
                                 "resp": In(stream.Signature(MEMORY_DATA_BITS))}))


def forward(m, outer, inner, members):
    """Connect ports declared once: ``outer``'s ``members`` to ``inner``'s of the same name.

    For a component that wraps another and offers its ports as its own:
    ``outer``'s inputs drive ``inner``'s, ``inner``'s outputs drive ``outer``'s.
    """
    for name, member in members.items():
        if member.flow == In:
            m.d.comb += getattr(inner, name).eq(getattr(outer, name))
        else:
            m.d.comb += getattr(outer, name).eq(getattr(inner, name))


def control_members():
    """The accelerator's ports besides ``mem``, declared once.

    The :class:`~vitforge.hw.accel.controller.Controller` has all of them but
    ``program_addr``, which the :class:`~vitforge.hw.accel.fetch.InstructionFetch`
    has; components that offer the accelerator's control and status as their
    own ports (:class:`~vitforge.sim.accel.system.SimulatedSystem`) take these
    members and :func:`forward` them.

    Returns
    -------
    dict
        ``start`` and ``program_addr`` (the external word of the first
        instruction) in; ``busy``, ``done``, ``error``, ``error_pc``,
        ``cycles``, ``class_cycles``, ``side_cycles``, ``retire`` and ``retire_pc`` out (see
        :class:`~vitforge.hw.accel.controller.Controller`).
    """
    return {
        "start": In(1),
        "program_addr": In(32),
        "busy": Out(1),
        "done": Out(1),
        "error": Out(2),
        "error_pc": Out(32),
        "cycles": Out(COUNTER_BITS),
        "class_cycles": Out(data.ArrayLayout(COUNTER_BITS, len(COUNTER_CLASSES))),
        "side_cycles": Out(data.ArrayLayout(COUNTER_BITS, len(SIDE_CLASSES))),
        "retire": Out(1),
        "retire_pc": Out(32),
    }
