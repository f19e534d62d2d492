"""Clock evidence without Vivado: the longest register-to-register path of a Yosys netlist.

After ``synth_xilinx -family xcup`` a design is LUTs, carry cells, wide-function
multiplexers, flip-flops, distributed RAM, DSP48E2 and block RAM. This module
walks the netlist Yosys writes with ``write_json`` and finds the slowest path
between registered elements under a simple UltraScale+ -2 delay model
(:class:`DelayModel`), and reports it as LUT levels plus carry-chain length,
which is what a timing report of Vivado would show as "logic levels".

What starts and ends a path: flip-flops (``FD*``), DSP48E2 with registers and
block RAM (their internal registers), the write side of distributed RAM and shift
registers, and the ports of the synthesized module (a replicated module that
is synthesized on its own is a black box of its parent, so a path that crosses
its boundary is cut there: see ``docs/performance.md``, "Clock evidence").
What a path goes through: LUTs, ``MUXF7``/``MUXF8``/``MUXF9``, ``CARRY4``/
``CARRY8`` (a ``CO`` to ``CI`` link is the dedicated carry cascade), a DSP48E2
without any register, and the asynchronous read (address to data) of distributed
RAM and shift registers.
"""

from dataclasses import dataclass
import math
import re

__all__ = ["DelayModel", "DELAYS", "PathDepth", "longest_path", "supported_clock_mhz"]


@dataclass(frozen=True)
class DelayModel:
    """Delays in ns and limits in MHz of a Zynq UltraScale+ -2 (VCCINT 0.85 V) part.

    The block limits are DS925 (Zynq UltraScale+ MPSoC Data Sheet: DC and AC
    Switching Characteristics), -2 column at 0.85 V: BUFG 775 MHz ("Clock
    Buffers and Networks"); DSP48E2 775 MHz with all registers,
    544 MHz without MREG, 410 MHz without pipeline registers ("DSP48 Slice
    Switching Characteristics"); a DSP48E2 without registers is taken to need
    the 410 MHz figure's 2.44 ns from input to output. DS925 publishes no LUT,
    carry or routing delays for UltraScale+ (they come from Vivado's timing
    model), so the fabric delays are planning assumptions, stated here and in
    ``docs/performance.md``: 6 routed LUT levels between two flip-flops fit in
    a 4 ns (250 MHz) period.
    """

    clock_to_out: float = 0.10      # FF clock to Q
    setup: float = 0.05             # FF D setup
    uncertainty: float = 0.15       # clock skew, jitter and uncertainty
    net: float = 0.40               # one routed net between two cells
    lut: float = 0.125              # a LUT, any input to output
    muxf: float = 0.10              # MUXF7/8/9 (dedicated path from the LUTs beside it)
    carry_entry: float = 0.25       # S or DI into a carry cell, to its CO or O
    carry8: float = 0.05            # CI to CO of each further CARRY8 of a chain
    lutram_clock_to_out: float = 0.80   # distributed RAM or SRL: clock to data out
    bram_clock_to_out: float = 1.20     # RAMB18E2/36E2 without output register
    dsp_clock_to_out: float = 0.40      # DSP48E2 P register to P
    dsp_setup: float = 0.40             # fabric into a DSP48E2 input register
    bram_setup: float = 0.40            # fabric into a block RAM address or data input
    bufg_mhz: float = 775.0
    dsp_mhz: float = 775.0              # all registers used
    dsp_no_mreg_mhz: float = 544.0      # two-register multiply without MREG
    dsp_no_pipeline_mhz: float = 410.0  # without pipeline registers (MREG, ADREG)


#: The model :func:`longest_path` uses unless told otherwise.
DELAYS = DelayModel()


@dataclass(frozen=True)
class PathDepth:
    """The slowest register-to-register path of one synthesized module.

    ``lut_levels`` LUTs, ``muxf`` wide-function multiplexers and a carry
    chain of ``carry_bits`` bits (``carry8`` CARRY8 cells once Vivado packs
    Yosys' CARRY4 pairs) between ``start`` and ``end`` (the names of the
    nets the path starts and ends at), ``delay_ns`` long under the model.
    ``dsp_mhz`` is the lowest DSP48E2 limit of the module for its register
    configuration (``None`` without DSPs). ``nets`` names the design's nets
    along the path, which tells where a register would cut it.
    """

    lut_levels: int = 0
    muxf: int = 0
    carry_bits: int = 0
    delay_ns: float = 0.0
    start: str = ""
    end: str = ""
    dsp_mhz: float = None
    cells: str = ""                 # the cell types along the path, runs counted
    nets: tuple = ()                # the named nets along the path, start first
    others: tuple = ()      # (block, end, lut levels, carry bits, ns) of other blocks


    @property
    def carry8(self):
        return math.ceil(self.carry_bits / 8)

    def as_dict(self):
        return {"logic_levels": self.lut_levels, "muxf": self.muxf,
                "carry_bits": self.carry_bits, "carry8": self.carry8,
                "path_ns": round(self.delay_ns, 3), "path_from": self.start,
                "path_to": self.end, "path_cells": self.cells, "path_nets": list(self.nets),
                "dsp_limit_mhz": self.dsp_mhz,
                "other_blocks": [{"block": block, "path_to": end, "logic_levels": levels,
                                  "carry_bits": bits, "path_ns": ns}
                                 for block, end, levels, bits, ns in self.others]}


_FF = ("FDRE", "FDSE", "FDCE", "FDPE")
_MUXF = ("MUXF7", "MUXF8", "MUXF9")
_CARRY_BITS = {"CARRY4": 4, "CARRY8": 8}


def _kind(cell_type):
    if cell_type.startswith("LUT") and cell_type[3:].isdigit():
        return "lut"
    if cell_type in _MUXF:
        return "muxf"
    if cell_type in _CARRY_BITS:
        return "carry"
    if cell_type.startswith(("RAM32M", "RAM64M")) or (
            cell_type.startswith("RAM") and "X1" in cell_type) or cell_type.startswith("SRL"):
        return "lutram"
    if cell_type.startswith("DSP48"):
        return "dsp"
    if cell_type.startswith(("RAMB", "FIFO", "URAM")):
        return "bram"
    return "register" if cell_type in _FF else "boundary"


def _is_read_address(port):
    """Ports of distributed RAM and SRLs that reach the data output without a clock."""
    return port.startswith(("A", "DPRA"))


def _dsp_registers(parameters):
    """Whether a DSP48E2 registers its A or B input, its product (MREG) and its P output."""
    def on(name):
        value = str(parameters.get(name, "1"))
        return int(value, 2 if set(value) <= {"0", "1"} else 10) > 0

    return on("AREG") or on("BREG"), on("MREG"), on("PREG")


def _dsp_limit(parameters, delays):
    """DS925's DSP48E2 Fmax for the register configuration of one DSP."""
    inputs, product, output = _dsp_registers(parameters)
    multiplies = str(parameters.get("USE_MULT", "MULTIPLY")).strip('"') != "NONE"
    if not (output and inputs):
        return delays.dsp_no_pipeline_mhz
    if multiplies and not product:
        return delays.dsp_no_mreg_mhz
    return delays.dsp_mhz


def longest_path(netlist, top, delays=DELAYS, others=12):
    """The slowest register-to-register path of module ``top`` of a Yosys JSON netlist.

    Parameters
    ----------
    netlist : dict
        Yosys' ``write_json`` output, after ``synth_xilinx`` (flattened).
    top : str
    delays : DelayModel
    others : int
        For how many other blocks (a register's hierarchical name up to its last
        dot: ``accelerator.dma``) to list the slowest path into them too.

    Returns
    -------
    PathDepth
    """
    module = netlist["modules"][top]
    cells = module["cells"]
    names = {}                           # bit -> a net name, a visible one where there is one
    for name, net in sorted(module.get("netnames", {}).items(),
                            key=lambda item: not item[1].get("hide_name")):
        # A register driving an output port is named after the port.
        name = name.removeprefix("$iopadmap$")
        names.update((bit, name) for bit in net["bits"] if isinstance(bit, int))
    driver = {}                          # bit -> (cell, port)
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell.get("port_directions", {}).get(port) == "output":
                for bit in bits:
                    if isinstance(bit, int):
                        driver[bit] = (name, port)
    kinds = {name: _kind(cell["type"]) for name, cell in cells.items()}
    # A DSP48E2 without any register is combinational: a path goes through it in the
    # time DS925 gives its register-to-register path without pipeline registers. One
    # with registers starts or ends paths; an unregistered side costs that time too.
    dsp_stage = 1000 / delays.dsp_no_pipeline_mhz
    dsp_start, dsp_setup = {}, {}
    for name, cell in cells.items():
        if kinds[name] == "dsp":
            inputs, product, output = _dsp_registers(cell.get("parameters", {}))
            if not (inputs or product or output):
                kinds[name] = "dsp, combinational"
            dsp_start[name] = delays.dsp_clock_to_out if output else dsp_stage
            dsp_setup[name] = delays.dsp_setup if inputs else dsp_stage
    start_delay = {"register": delays.clock_to_out, "lutram": delays.lutram_clock_to_out,
                   "bram": delays.bram_clock_to_out, "dsp": delays.dsp_clock_to_out,
                   "boundary": delays.clock_to_out}

    def through(name):
        """Input ports of a cell that lead combinationally to its outputs."""
        cell, kind = cells[name], kinds[name]
        inputs = [port for port, direction in cell.get("port_directions", {}).items()
                  if direction == "input"]
        if kind in ("lut", "muxf", "carry"):
            return inputs
        if kind == "dsp, combinational":
            return [port for port in inputs if not port.startswith(("CLK", "CE", "RST"))]
        return [port for port in inputs if _is_read_address(port)] if kind == "lutram" else []

    # Arrival at a net: (delay, lut levels, muxf, carry bits, start bit); previous: the
    # input net of the cell driving it that the slowest path comes through.
    arrival, previous = {}, {}

    def source(bit):
        """Arrival at a net, and the cell and port that drive it."""
        if bit not in driver:                            # a port or a constant
            return (delays.clock_to_out, 0, 0, 0, bit), None, None
        name, port = driver[bit]
        if bit in arrival:
            return arrival[bit], name, port
        # A registered element, or a combinational loop cut here.
        start = dsp_start.get(name, start_delay.get(kinds[name], delays.clock_to_out))
        return (start, 0, 0, 0, bit), name, port

    def step(kind, cell, port, driven_by, out_port):
        """Delay from an input net of a combinational cell to its output."""
        if kind == "carry" and driven_by and kinds[driven_by] == "carry" \
                and out_port == "CO" and port == "CI":
            return delays.carry8 * _CARRY_BITS[cell["type"]] / 8    # dedicated cascade
        if kind == "carry":
            return delays.net + delays.carry_entry
        if kind == "muxf" and driven_by and kinds[driven_by] in ("lut", "muxf") \
                and port != "S":
            return delays.muxf                                    # LUT beside it
        if kind == "dsp, combinational":
            return delays.net + dsp_stage
        return delays.net + (delays.muxf if kind == "muxf" else delays.lut)

    def evaluate(name):
        cell, kind = cells[name], kinds[name]
        candidates = []
        for port in through(name):
            for index, bit in enumerate(cell["connections"][port]):
                if isinstance(bit, int):
                    (delay, luts, muxf, carry, start), driven_by, out_port = source(bit)
                    candidates.append((port, index, bit, (
                        delay + step(kind, cell, port, driven_by, out_port),
                        luts + (kind in ("lut", "lutram")), muxf + (kind == "muxf"),
                        carry + (_CARRY_BITS[cell["type"]] if kind == "carry" else 0),
                        start)))
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) != "output":
                continue
            for out_index, out in enumerate(bits):
                # The clocked write of distributed RAM changes its output too.
                best = (delays.lutram_clock_to_out, 0, 0, 0, out) if kind == "lutram" else None
                previous[out] = None
                for in_port, index, bit, candidate in candidates:
                    if kind == "carry" and not _carry_arc(in_port, index, out_index):
                        continue
                    if best is None or candidate[0] > best[0]:
                        best, previous[out] = candidate, bit
                arrival[out] = best or (delays.clock_to_out, 0, 0, 0, out)

    combinational = [name for name in cells
                     if kinds[name] in ("lut", "muxf", "carry", "dsp, combinational")
                     or (kinds[name] == "lutram" and through(name))]
    _in_order(combinational, cells, driver, through, evaluate)

    setup = {"register": delays.setup, "lutram": delays.setup, "bram": delays.bram_setup,
             "dsp": delays.dsp_setup, "boundary": delays.setup}
    ends = {}                          # end net name -> (path, last net, end cell)

    def reach(bit, end_cell, end_setup, end_bit):
        delay, luts, muxf, carry, start = source(bit)[0]
        path = (delay + delays.net + end_setup + delays.uncertainty, luts, muxf, carry, start)
        # One entry per register or port: its bits are one end.
        end = re.sub(r"\[\d+\]$", "", names.get(end_bit, str(end_bit)))
        if end not in ends or path[0] > ends[end][0][0]:
            ends[end] = path, bit, end_cell

    for name, cell in cells.items():
        kind = kinds[name]
        if kind in ("lut", "muxf", "carry", "dsp, combinational") \
                or cell["type"].startswith(("BUFG", "IBUF")):
            continue                         # the clock and input buffers time nothing
        passing = set(through(name))
        for port, bits in cell["connections"].items():
            if cell.get("port_directions", {}).get(port) != "input" or port in passing \
                    or port in ("C", "CLK", "WCLK", "CLKARDCLK", "CLKBWRCLK"):
                continue
            for bit in bits:
                if isinstance(bit, int):
                    reach(bit, name, dsp_setup.get(name, setup[kind]), _end_name(cell, bit))
    for bit in _output_bits(module):
        reach(bit, "port", delays.setup, bit)
    dsp = min((_dsp_limit(cell.get("parameters", {}), delays) for name, cell in cells.items()
               if kinds[name].startswith("dsp")), default=None)
    if not ends:
        return PathDepth(dsp_mhz=dsp)
    slowest = sorted(ends.items(), key=lambda item: -item[1][0][0])
    end, (path, bit, end_cell) = slowest[0]
    blocks = {_block(end): None}            # the slowest path into each other block
    for other, (other_path, _, _) in slowest:
        if _block(other) not in blocks:
            blocks[_block(other)] = (_block(other), other, other_path[1], other_path[3],
                                     round(other_path[0], 3))
    return PathDepth(lut_levels=path[1], muxf=path[2], carry_bits=path[3],
                     delay_ns=path[0], start=names.get(path[4], str(path[4])), end=end,
                     dsp_mhz=dsp,
                     cells=_describe((bit, end_cell), previous, driver, cells, path[4]),
                     nets=_named_nets(bit, previous, names),
                     others=tuple(list(blocks.values())[1:others + 1]))


def _block(name):
    """The part of the design a net belongs to: its hierarchical name up to the last dot."""
    if name.startswith("$") or "." not in name:
        return "(module)"
    return name.rsplit(".", 1)[0]


def _carry_arc(port, index, out_index):
    """Whether input ``port[index]`` of a carry cell reaches its output bit ``out_index``
    (the carry runs upwards; ``CI_TOP`` starts the upper half of a CARRY8)."""
    if port in ("S", "DI"):
        return index <= out_index
    return out_index >= 4 if port == "CI_TOP" else True


def _describe(last, previous, driver, cells, start_bit):
    """``FDRE > LUT6 > CARRY4 x8 > FDRE``: the cell types of a path, from start to end."""
    bit, names = last[0], [last[1]]
    while bit is not None and bit in previous:
        names.append(driver[bit][0])
        bit = previous[bit]
    if start_bit in driver and start_bit not in previous:
        names.append(driver[start_bit][0])
    types = [cells[name]["type"] if name in cells else name for name in reversed(names)]
    runs = []
    for kind in types:
        if runs and runs[-1][0] == kind:
            runs[-1][1] += 1
        else:
            runs.append([kind, 1])
    return " > ".join(kind if count == 1 else f"{kind} x{count}" for kind, count in runs)


def _named_nets(bit, previous, names):
    """The names of the nets a path goes through, from its start to ``bit``: those the
    design gave (Yosys' own start with ``$``), each run of one name once."""
    chain = []
    while bit is not None:
        chain.append(bit)
        bit = previous.get(bit)
    visible = []
    for bit in reversed(chain):
        name = re.sub(r"\[\d+\]$", "", names.get(bit, "$"))
        if not name.startswith("$") and (not visible or visible[-1] != name):
            visible.append(name)
    return tuple(visible)


def _end_name(cell, bit):
    """Where a path ends: a flip-flop's Q (its register's name), else the input net."""
    if cell["type"] in _FF:
        return cell["connections"]["Q"][0]
    return bit


def _output_bits(module):
    return [bit for port in module.get("ports", {}).values() if port["direction"] == "output"
            for bit in port["bits"] if isinstance(bit, int)]


def _in_order(combinational, cells, driver, through, evaluate):
    """Call ``evaluate`` on every combinational cell after the cells that drive it.

    Iterative depth-first order (deep carry chains would overflow Python's stack); an
    edge back into a cell being visited (a combinational loop) is ignored.
    """
    wanted = set(combinational)
    state = {}                                   # name -> "open" or "done"
    for root in combinational:
        if root in state:
            continue
        stack = [(root, iter(_fanin(root, cells, driver, through, wanted)))]
        state[root] = "open"
        while stack:
            name, pending = stack[-1]
            child = next(pending, None)
            if child is None:
                stack.pop()
                evaluate(name)
                state[name] = "done"
            elif child not in state:
                state[child] = "open"
                stack.append((child, iter(_fanin(child, cells, driver, through, wanted))))


def _fanin(name, cells, driver, through, wanted):
    connections = cells[name]["connections"]
    return [driver[bit][0] for port in through(name) for bit in connections[port]
            if isinstance(bit, int) and bit in driver and driver[bit][0] in wanted]


def supported_clock_mhz(depths, delays=DELAYS):
    """The clock the paths ``depths`` (PathDepth values) support, in whole MHz.

    The slowest path, the lowest DSP48E2 limit and the global clock buffer's
    limit; ``None`` without any path.
    """
    limits = [1000 / depth.delay_ns for depth in depths if depth.delay_ns > 0]
    limits += [depth.dsp_mhz for depth in depths if depth.dsp_mhz is not None]
    if not limits:
        return None
    return math.floor(min(limits + [delays.bufg_mhz]))
