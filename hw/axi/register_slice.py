"""A register slice for a valid/ready stream: every output a flip-flop, full throughput."""

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """Cuts the combinational paths of a stream in both directions (a skid buffer).

    ``output.valid``, ``output.payload`` and ``input.ready`` come straight
    from flip-flops, so neither side's logic reaches into the other's in one
    cycle. Latency: one cycle from ``input`` to ``output``. Throughput: one
    transfer per cycle; when ``output`` stalls, the one payload already
    accepted waits in a second register (the skid) and ``input.ready`` falls
    a cycle later. Order and payloads are kept exactly.

    Parameters
    ----------
    payload_shape : shape-like
        The stream's payload.

    Attributes
    ----------
    input : ``In(stream.Signature(payload_shape))``
    output : ``Out(stream.Signature(payload_shape))``
    """

    def __init__(self, payload_shape):
        self._payload_shape = payload_shape
        super().__init__({"input": In(stream.Signature(payload_shape)),
                          "output": Out(stream.Signature(payload_shape))})

    def elaborate(self, platform):
        m = Module()
        source, sink = self.input, self.output
        skid = Signal(self._payload_shape)
        skid_valid = Signal()
        m.d.comb += source.ready.eq(~skid_valid)
        with m.If(~sink.valid | sink.ready):
            # The output register is free: fill it from the skid first, else from the input.
            m.d.sync += [sink.valid.eq(skid_valid | source.valid),
                         sink.payload.eq(Mux(skid_valid, skid, source.payload)),
                         skid_valid.eq(0)]
        with m.Elif(source.valid & source.ready):
            m.d.sync += [skid.eq(source.payload), skid_valid.eq(1)]
        return m
