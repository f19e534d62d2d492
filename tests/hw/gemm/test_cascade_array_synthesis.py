"""For synthesis the cascade array is DSP48E2 primitives: one per two MACs, adders inside."""

from vitforge.hw.gemm.array import PEArray
from vitforge.hw.gemm.cascade_array import CascadeArray
from vitforge.hw.verilog import to_verilog
from vitforge.sw import resources


def test_cascades_are_primitives_with_the_sums_inside_them():
    rows, cols, depth = 2, 4, 3
    cascade = to_verilog(CascadeArray(rows=rows, cols=cols, depth=depth, acc_width=27),
                         "array", synthesis=True)
    packed = to_verilog(PEArray(rows=rows, cols=cols, acc_width=27, macs_per_dsp=2), "array",
                        synthesis=True)
    # The simulation form has no primitive: simulators run the behavioural model.
    simulated = to_verilog(CascadeArray(rows=rows, cols=cols, depth=depth, acc_width=27),
                           "array")
    assert (cascade.count("DSP48E2 #("), simulated.count("DSP48E2")) == (rows * cols // 2
                                                                         * depth, 0)
    cascade_total, _ = resources.estimate_by_module(cascade, "array")
    packed_total, _ = resources.estimate_by_module(packed, "array")
    assert cascade_total.dsp == rows * cols // 2 * depth
    # One pair of fabric accumulators serves `depth` DSPs, where the packed PE
    # pair needs one per DSP (and Yosys leaves its DSP accumulator in fabric).
    cascade_per_mac = cascade_total.lut / (rows * cols * depth)
    packed_per_mac = packed_total.lut / (rows * cols)
    assert cascade_per_mac < packed_per_mac / 2, (cascade_total, packed_total)
