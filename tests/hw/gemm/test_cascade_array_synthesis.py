"""For synthesis the cascade array is DSP48E2 primitives: one per two MACs, adders inside."""

from collections import Counter

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


def test_the_cascade_cells_are_synthesized_once_and_count_as_mac_dsps():
    # Identical cells stay identical modules, and the report counts their DSPs as MACs.
    from vitforge.hw.gemm.config import GemmConfig
    from vitforge.hw.gemm.core import GemmCore
    from vitforge.sw.generate import resource_report

    config = GemmConfig(rows=2, cols=6, k_max=16, a_depth=64, b_depth=64, c_depth=64,
                        param_depth=8, macs_per_dsp=2, k_per_cycle=2)
    total, parts = resources.estimate_by_module(to_verilog(GemmCore(config), "core",
                                                           synthesis=True), "core")
    instances = Counter()
    for name, (count, _) in parts.items():
        if ".array." in name:
            instances[name.rsplit(".", 1)[-1].rstrip("0123456789_")] += count
    # Two rows of three pairs, each two links.
    assert instances == {"dot_pair": 4 + 2, "link": 6 + 6}
    report = resource_report(total, parts, "per-module", "yosys")
    assert (report["dsp"] - report["mac_dsp"], report["mac_dsp"]) == (total.dsp - 12, 12)
