"""GELU and ADD: element-wise over activation words, one word per cycle."""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..numerics import MULTIPLIER_BITS, OPERAND_BITS, OPERAND_MAX, OPERAND_MIN, SHIFT_BITS
from .config import SCRATCHPAD_ADDRESS_BITS
from .gelu_lookup import GeluLookup, table_write_port
from .isa import ISA, Opcode
from .ports import Unit, act_word, scratchpad_ports

__all__ = ["Eltwise", "eltwise_cycles", "residual_stream", "RESIDUAL_STAGES"]

#: Cycles from ``start`` to ``done`` beyond the words: six of pipeline, start and done.
_OVERHEAD = 8


def eltwise_cycles(config, opcode, count):
    """Cycles from ``start`` to ``done`` of a GELU or ADD of ``count`` words: one per word,
    two per word for ADD through one activation read port."""
    per_word = 2 if opcode == Opcode.ADD and config.act_read_ports == 1 else 1
    return per_word * count + _OVERHEAD

#: Registers between a word's arrival and its result: operands, products, rounded sum,
#: shift, saturation.
_RESULT_STAGES = 5
#: Cycles from a residual word's ``issue`` (:func:`residual_stream`) to its write: the
#: cycle its operands arrive in, then the result stages.
RESIDUAL_STAGES = 1 + _RESULT_STAGES


def residual_stream(config):
    """The signature through which the GEMM unit hands the results of a GEMM with
    ``residual`` to the element-wise unit's ADD datapath (``docs/isa.md``).

    ``issue`` pulses with ``addr``, the ACT word a result goes to; in the next cycle ``r``
    holds the residual's word and ``c`` the result's. ``r_multiplier``, ``c_multiplier`` and
    ``shift`` hold while the GEMM runs. The sum is written :data:`RESIDUAL_STAGES` cycles
    after ``issue``.
    """
    word = act_word(config)
    return wiring.Signature({
        "issue": Out(1), "addr": Out(SCRATCHPAD_ADDRESS_BITS), "r": Out(word), "c": Out(word),
        "r_multiplier": Out(MULTIPLIER_BITS), "c_multiplier": Out(MULTIPLIER_BITS),
        "shift": Out(SHIFT_BITS)})


class Eltwise(Unit):
    """Executes GELU (table lookup) or ADD (rescaled residual sum), ``docs/isa.md``.

    Owns a copy of the GELU table (:class:`GeluLookup`), written by LOAD
    into TBL.

    Throughput: one word per cycle; with ``config.act_read_ports == 1``, ADD
    reads both operands through the one port and does one word per two
    cycles (a second read port doubles the activation scratchpad's block RAM,
    the largest memory of the design). Latency: six cycles from the last read to the
    last write (the read, then registers for the operands and after the
    products, the rounded sum, the shift and the saturation: no
    multiplier, adder or shifter shares a cycle with another).

    ADD's products ``x * x_multiplier`` and ``y * y_multiplier`` take one DSP
    per lane with one read port (x is scaled in the cycle it arrives, y in
    the next, on the same multiplier) and two with two.

    With two read ports the same datapath adds a GEMM's residual
    (``residual_stream``, from the :class:`GemmUnit`): while the GEMM runs,
    each result word and its residual word arrive as an ADD's y and x, one
    word per cycle, and their sum is written where the result goes. The unit
    is not started for it: the GEMM unit waits for the last write.

    Parameters
    ----------
    config : AcceleratorConfig
    """

    def __init__(self, config):
        two_ports = config.act_read_ports == 2
        reads = ("act_read", "y_read") if two_ports else ("act_read",)
        streams = {"residual_stream": In(residual_stream(config))} if two_ports else {}
        super().__init__(config, {
            **scratchpad_ports(config, *reads, "act_write"),
            "tbl_write": table_write_port(),
            **streams,
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._config.array
        add = ISA[Opcode.ADD].view(self.instruction)
        gelu = ISA[Opcode.GELU].view(self.instruction)
        is_add = add.opcode == Opcode.ADD
        count = Mux(is_add, add.count, gelu.count)
        source = Mux(is_add, add.x, gelu.src)
        destination = Mux(is_add, add.dst, gelu.dst)

        # Reads: one word per cycle; ADD with one port: word x, then word y.
        one_port = self._config.act_read_ports == 1
        index = Signal(SCRATCHPAD_ADDRESS_BITS)
        issuing = Signal()
        reading_y = Signal()                # stays 0 with two ports
        # valid[0]: a word (ADD: its last operand) arrives; valid[-1]: its result is written.
        valid = [Signal(name=f"valid_{i}") for i in range(_RESULT_STAGES + 1)]
        address = [Signal(SCRATCHPAD_ADDRESS_BITS, name=f"address_{i}")
                   for i in range(_RESULT_STAGES + 1)]
        # The words read next, x (or GELU's source) and y, as registers: an adder between
        # the instruction and the scratchpad's address multiplexers made the 40-lane
        # design's slowest path.
        x_address = Signal(SCRATCHPAD_ADDRESS_BITS)
        y_address = Signal(SCRATCHPAD_ADDRESS_BITS)
        m.d.sync += self.done.eq(0)
        with m.If(self.start & ~self.busy):
            m.d.sync += [self.busy.eq(1), issuing.eq(1), index.eq(0), reading_y.eq(0),
                         x_address.eq(source), y_address.eq(add.y)]
        element_read = issuing & (~is_add | reading_y) if one_port else issuing
        if one_port:
            with m.If(issuing & is_add):
                m.d.sync += reading_y.eq(~reading_y)
        else:
            m.d.comb += [self.y_read.addr.eq(y_address),
                         self.y_read.en.eq(issuing & is_add)]
        with m.If(element_read):
            m.d.sync += [index.eq(index + 1), x_address.eq(x_address + 1),
                         y_address.eq(y_address + 1)]
            with m.If(index + 1 == count):
                m.d.sync += issuing.eq(0)
        m.d.comb += [
            self.act_read.addr.eq(Mux(reading_y, y_address, x_address)),
            self.act_read.en.eq(issuing),
        ]
        arrived = Signal()                  # act_read.data holds a word read
        m.d.sync += [valid[0].eq(element_read), address[0].eq(destination + index),
                     arrived.eq(issuing)]
        # A GEMM's residual: its words arrive in the cycle after their issue, like a word
        # read (``streamed``); the multipliers and shift are its while ``streaming`` (from
        # the first word to the next start: the GEMM unit retires after the last write).
        streamed, streaming = Signal(), Signal()
        x_multiplier, y_multiplier, shift = add.x_multiplier, add.y_multiplier, add.shift
        if not one_port:
            stream = self.residual_stream
            m.d.sync += streamed.eq(stream.issue)
            with m.If(stream.issue):
                m.d.sync += [valid[0].eq(1), address[0].eq(stream.addr), streaming.eq(1)]
            with m.If(self.start):
                m.d.sync += streaming.eq(0)
            x_multiplier = Mux(streaming, stream.r_multiplier, x_multiplier)
            y_multiplier = Mux(streaming, stream.c_multiplier, y_multiplier)
            shift = Mux(streaming, stream.shift, shift)
        m.d.sync += [later.eq(earlier) for pair in (valid, address)
                     for earlier, later in zip(pair, pair[1:])]
        with m.If(self.busy & ~issuing & ~Cat(*valid).any()):
            m.d.sync += [self.busy.eq(0), self.done.eq(1)]

        # ADD: the operands, the products, the rounded sum, the shift and the
        # saturation, each registered. With one port, ADD's x arrives the cycle before y:
        # one multiplier per lane scales x, its product waits in x_product, then the
        # multiplier scales y. GELU: the table read, and its entry delayed to match. The
        # registers taking read data load only when it is a word read (before a memory's
        # first read it is undefined: X in a 4-state simulator).
        if one_port:
            y_arrives = Signal()            # act_read.data holds ADD's y word
            y_operand = Signal()            # ... and the operand registers hold it
            m.d.sync += [y_arrives.eq(reading_y), y_operand.eq(y_arrives)]
            coefficient = Mux(y_operand, add.y_multiplier, add.x_multiplier)
        m.submodules.gelu = lookup = GeluLookup(lanes)
        wiring.connect(m, wiring.flipped(self.tbl_write), lookup.tbl_write)
        m.d.comb += [lookup.value.eq(self.act_read.data), lookup.take.eq(arrived)]
        results = Signal(data.ArrayLayout(signed(8), lanes))
        for lane in range(lanes):
            x = self.act_read.data[lane]
            # The operands are registered before their multiplier.
            operand = Signal(signed(OPERAND_BITS), name=f"operand_{lane}")
            with m.If(arrived):
                m.d.sync += operand.eq(x)
            if not one_port:
                with m.If(streamed):
                    m.d.sync += operand.eq(stream.r[lane])
            product_shape = signed(OPERAND_BITS + MULTIPLIER_BITS)
            product = Signal(product_shape, name=f"product_{lane}")
            x_product = Signal(product_shape, name=f"x_product_{lane}")
            if one_port:
                m.d.sync += [product.eq(operand * coefficient), x_product.eq(product)]
            else:
                y_operand = Signal(signed(OPERAND_BITS), name=f"y_operand_{lane}")
                with m.If(arrived & is_add):
                    m.d.sync += y_operand.eq(self.y_read.data[lane])
                with m.If(streamed):
                    m.d.sync += y_operand.eq(stream.c[lane])
                m.d.sync += [x_product.eq(operand * x_multiplier),
                             product.eq(y_operand * y_multiplier)]
            rounding = x_product + product + ((1 << shift) >> 1)
            rounded = Signal(rounding.shape(), name=f"rounded_{lane}")
            m.d.sync += rounded.eq(rounding)
            total = Signal(rounded.shape(), name=f"shifted_{lane}")
            summed = Signal(signed(8), name=f"sum_{lane}")
            m.d.sync += [total.eq(rounded >> shift),
                         summed.eq(Mux(total > OPERAND_MAX, OPERAND_MAX,
                                       Mux(total < OPERAND_MIN, OPERAND_MIN, total)))]
            entry = lookup.entry[lane]
            for stage in range(_RESULT_STAGES - 1):
                delayed = Signal(8, name=f"entry_{lane}_{stage}")
                with m.If(valid[stage + 1]):
                    m.d.sync += delayed.eq(entry)
                entry = delayed
            m.d.comb += results[lane].eq(Mux(is_add | streaming, summed, entry))
        m.d.comb += [self.act_write.addr.eq(address[-1]), self.act_write.data.eq(results),
                     self.act_write.en.eq(valid[-1])]
        return m
