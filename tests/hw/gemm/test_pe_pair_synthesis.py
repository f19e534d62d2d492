"""Yosys maps each packed PE pair onto one DSP48E2 (two int8 MACs per DSP)."""

import pytest

from vitforge.hw.gemm.array import PEArray
from vitforge.hw.verilog import to_verilog
from vitforge.sw import resources


@pytest.mark.parametrize("macs_per_dsp", [1, 2])
def test_the_array_takes_one_dsp_per_macs_per_dsp_macs(macs_per_dsp):
    array = PEArray(rows=2, cols=4, acc_width=27, macs_per_dsp=macs_per_dsp)
    total, parts = resources.estimate_by_module(to_verilog(array, "array"), "array")
    # Identical instances are synthesized once (the last column differs: no shift_in).
    kinds = {name.rsplit(".", 1)[-1].rstrip("0123456789_") for name in parts if name != "array"}
    instances = sum(count for name, (count, _) in parts.items() if name != "array")
    dsps = {part.dsp for name, (_, part) in parts.items() if name != "array"}
    # 2 rows x 4 columns: 8 PEs, or 2 rows x 2 column pairs; one DSP each.
    expected = "pe_pair" if macs_per_dsp == 2 else "pe"
    assert (kinds, instances, dsps) == ({expected}, 8 // macs_per_dsp, {1})
    assert total.dsp == 8 // macs_per_dsp
