"""SOFTMAX over activation words: one row per lane, a row's elements in consecutive words."""

from amaranth import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data

from ..nonlinear.divider import SequentialDivider
from ..nonlinear.exp import EXP_LATENCY, ExpUnit
from ..numerics import (EXP_AT_ZERO_MIN_BITS, EXP_BITS, OPERAND_BITS, SOFTMAX_RECIPROCAL_BITS,
                        softmax_one)
from .config import SCRATCHPAD_ADDRESS_BITS, SIZE_BITS
from .isa import ISA, Opcode
from .ports import Unit, scratchpad_ports

__all__ = ["RowSoftmax"]

_ONE = softmax_one(OPERAND_BITS)          # int8 probabilities, scale 1/127


class RowSoftmax(Unit):
    """Executes SOFTMAX: ``softmax_rows`` of ``docs/numerics.md`` on ``array`` rows at once.

    For each tile of ``array`` rows: a pass over the row's words for the
    maxima, a pass for the sums of ``exp_q15``, one division per lane (all
    lanes in parallel, 25 cycles) and a pass that recomputes the exps, scales
    them and writes the probabilities: ``3 * length + 50`` cycles per tile
    (each pass drains the exp pipeline) and 2 more per instruction, one word
    read per cycle.

    Parameters
    ----------
    config : AcceleratorConfig
    """

    def __init__(self, config):
        super().__init__(config, scratchpad_ports(config, "act_read", "act_write"))

    def elaborate(self, platform):
        m = Module()
        lanes = self._config.array
        inst = ISA[Opcode.SOFTMAX].view(self.instruction)
        sum_width = EXP_BITS + 16                  # exps of rows up to 2**16 long
        dividend_width = OPERAND_BITS - 1 + SOFTMAX_RECIPROCAL_BITS
        quotient_width = dividend_width - EXP_AT_ZERO_MIN_BITS

        tile = Signal(SIZE_BITS)
        index = Signal(SIZE_BITS)
        reading = Signal()
        phase = Signal(2)                      # 0 maxima, 1 sums, 2 outputs
        maxima = Array(Signal(signed(OPERAND_BITS), name=f"max_{lane}") for lane in range(lanes))
        sums = Array(Signal(sum_width, name=f"sum_{lane}") for lane in range(lanes))

        m.submodules.exp = exp = ExpUnit(lanes=lanes)
        m.d.comb += [exp.enable.eq(1), exp.params.ratio.eq(inst.ratio),
                     exp.params.alpha.eq(inst.alpha), exp.params.beta.eq(inst.beta),
                     exp.params.gamma.eq(inst.gamma)]
        for lane in range(lanes):
            m.d.comb += exp.n[lane].eq(maxima[lane] - self.act_read.data[lane])

        m.d.comb += [
            self.act_read.addr.eq(inst.src + tile * inst.src_stride + index),
            self.act_read.en.eq(reading),
        ]
        # Side band: valid/first per stage after the read (1 + EXP_LATENCY + 1 output).
        depth = 2 + EXP_LATENCY
        valid = [Signal(name=f"valid_{i}") for i in range(depth)]
        first = [Signal(name=f"first_{i}") for i in range(depth)]
        address = [Signal(SCRATCHPAD_ADDRESS_BITS, name=f"address_{i}") for i in range(depth)]
        m.d.sync += [valid[0].eq(reading), first[0].eq(reading & (index == 0)),
                     address[0].eq(inst.dst + tile * inst.dst_stride + index)]
        for i in range(1, depth):
            m.d.sync += [valid[i].eq(valid[i - 1]), first[i].eq(first[i - 1]),
                         address[i].eq(address[i - 1])]
        in_flight = Signal()
        m.d.comb += in_flight.eq(Cat(*valid).any())

        # Pass 0: maxima, straight from the read data.
        with m.If((phase == 0) & valid[0]):
            for lane in range(lanes):
                value = self.act_read.data[lane]
                m.d.sync += maxima[lane].eq(Mux(first[0] | (value > maxima[lane]), value,
                                                maxima[lane]))
        # Pass 1: sums of the exps leaving the exp unit.
        exp_valid, exp_first = valid[EXP_LATENCY], first[EXP_LATENCY]
        with m.If((phase == 1) & exp_valid):
            for lane in range(lanes):
                m.d.sync += sums[lane].eq(Mux(exp_first, 0, sums[lane]) + exp.e[lane])
        # Division, all lanes at once.
        dividers = []
        for lane in range(lanes):
            divider = SequentialDivider(dividend_width=dividend_width, divisor_width=sum_width,
                                        quotient_width=quotient_width)
            m.submodules[f"divider_{lane}"] = divider
            m.d.comb += [divider.dividend.eq(_ONE << SOFTMAX_RECIPROCAL_BITS),
                         divider.divisor.eq(sums[lane])]
            dividers.append(divider)
        # Pass 2: probabilities, one register after the exp unit, then written.
        probabilities = Signal(data.ArrayLayout(signed(OPERAND_BITS), lanes))
        for lane, divider in enumerate(dividers):
            scaled = ((exp.e[lane] * divider.quotient + (1 << (SOFTMAX_RECIPROCAL_BITS - 1)))
                      >> SOFTMAX_RECIPROCAL_BITS)
            m.d.sync += probabilities[lane].eq(Mux(scaled > _ONE, _ONE, scaled))
        m.d.comb += [self.act_write.addr.eq(address[-1]), self.act_write.data.eq(probabilities),
                     self.act_write.en.eq((phase == 2) & valid[-1])]

        start_division = Signal()
        m.d.comb += [divider.start.eq(start_division) for divider in dividers]
        m.d.sync += self.done.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), tile.eq(0), index.eq(0), phase.eq(0),
                                 reading.eq(1)]
                    m.next = "PASS"
            with m.State("PASS"):
                with m.If(reading):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index + 1 == inst.length):
                        m.d.sync += [reading.eq(0), index.eq(0)]
                with m.Elif(~in_flight):
                    with m.Switch(phase):
                        with m.Case(0):
                            m.d.sync += [phase.eq(1), reading.eq(1)]
                        with m.Case(1):
                            m.d.comb += start_division.eq(1)
                            m.next = "DIVIDE"
                        with m.Case(2):
                            m.d.sync += [tile.eq(tile + 1), phase.eq(0)]
                            with m.If(tile + 1 == inst.m_tiles):
                                m.next = "FINISH"
                            with m.Else():
                                m.d.sync += reading.eq(1)
            with m.State("DIVIDE"):
                with m.If(dividers[0].done):
                    m.d.sync += [phase.eq(2), reading.eq(1)]
                    m.next = "PASS"
            with m.State("FINISH"):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                m.next = "IDLE"
        return m
