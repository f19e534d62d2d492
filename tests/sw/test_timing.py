"""Clock evidence: the slowest register-to-register path of a synthesized netlist."""

import pytest

from vitforge.sw import resources
from vitforge.sw.generate import clock_evidence
from vitforge.sw.timing import DELAYS, PathDepth, longest_path, supported_clock_mhz


_DIRECTIONS = {"FDRE": {"C": "input", "CE": "input", "R": "input", "D": "input",
                        "Q": "output"},
               "LUT2": {"I0": "input", "I1": "input", "O": "output"},
               "CARRY4": {"CI": "input", "CYINIT": "input", "DI": "input", "S": "input",
                          "CO": "output", "O": "output"},
               "DSP48E2": {"A": "input", "B": "input", "P": "output"}}


def cell(kind, parameters=None, **connections):
    return {"type": kind, "parameters": parameters or {},
            "port_directions": {port: _DIRECTIONS[kind][port] for port in connections},
            "connections": connections}


def netlist(cells, netnames):
    return {"modules": {"top": {"ports": {}, "cells": cells,
                                "netnames": {name: {"bits": bits, "hide_name": 0}
                                             for name, bits in netnames.items()}}}}


def chain():
    """a -> 3 LUTs -> two cascaded CARRY4 -> b, and a short a -> LUT -> c beside it."""
    cells = {"a": cell("FDRE", D=[1], Q=[2]),
             "lut0": cell("LUT2", I0=[2], I1=["0"], O=[3]),
             "lut1": cell("LUT2", I0=[3], I1=[2], O=[4]),
             "lut2": cell("LUT2", I0=[4], I1=[3], O=[5]),
             "carry0": cell("CARRY4", CI=["0"], CYINIT=["0"], DI=[5, 5, 5, 5], S=[5, 5, 5, 5],
                            CO=[10, 11, 12, 13], O=[14, 15, 16, 17]),
             "carry1": cell("CARRY4", CI=[13], CYINIT=["0"], DI=[5, 5, 5, 5], S=[5, 5, 5, 5],
                            CO=[20, 21, 22, 23], O=[24, 25, 26, 27]),
             "b": cell("FDRE", D=[27], Q=[30]),
             "short": cell("LUT2", I0=[2], I1=[2], O=[6]),
             "c": cell("FDRE", D=[6], Q=[31])}
    return netlist(cells, {"x.a_reg": [2], "x.b_reg": [30], "y.c_reg": [31],
                           "sum": [24, 25, 26, 27]})


def test_the_slowest_path_counts_lut_levels_and_carry_bits():
    found = longest_path(chain(), "top")
    assert (found.lut_levels, found.muxf, found.carry_bits, found.carry8) == (3, 0, 8, 1)
    assert (found.start, found.end) == ("x.a_reg", "x.b_reg")
    assert found.cells == "FDRE > LUT2 x3 > CARRY4 x2 > FDRE"
    assert found.nets == ("x.a_reg", "sum")                 # the LUTs' nets have no names
    assert found.as_dict()["path_nets"] == ["x.a_reg", "sum"]
    # The slowest path into block y (one LUT); x.a_reg is in the worst path's block.
    short = (DELAYS.clock_to_out + 2 * DELAYS.net + DELAYS.lut + DELAYS.setup
             + DELAYS.uncertainty)
    assert found.others == (("y", "y.c_reg", 1, 0, round(short, 3)),)
    # clock to out, 3 routed LUTs, a routed carry entry and one cascade step (half a
    # CARRY8), the net into b, setup and uncertainty.
    expected = (DELAYS.clock_to_out + 3 * (DELAYS.net + DELAYS.lut) + DELAYS.net
                + DELAYS.carry_entry + DELAYS.carry8 / 2 + DELAYS.net + DELAYS.setup
                + DELAYS.uncertainty)
    assert found.delay_ns == pytest.approx(expected)
    assert found.dsp_mhz is None
    assert supported_clock_mhz([found]) == int(1000 / expected)


def test_a_carry_runs_upwards_only():
    """A LUT into S[3] of a CARRY4 reaches O[3], never O[0]."""
    cells = {"a": cell("FDRE", D=[1], Q=[2]),
             "lut": cell("LUT2", I0=[2], I1=[2], O=[3]),
             "carry": cell("CARRY4", CI=["0"], CYINIT=["0"], DI=["0", "0", "0", "0"],
                           S=["0", "0", "0", 3], CO=[10, 11, 12, 13], O=[14, 15, 16, 17]),
             "low": cell("FDRE", D=[14], Q=[20])}
    assert longest_path(netlist(cells, {}), "top").lut_levels == 0
    cells["high"] = cell("FDRE", D=[17], Q=[21])
    found = longest_path(netlist(cells, {"high_reg": [21]}), "top")
    assert (found.lut_levels, found.carry_bits, found.end) == (1, 4, "high_reg")
    assert found.as_dict()["other_blocks"] == []


def test_dsp48e2_limits_follow_the_register_configuration():
    def dsp(**registers):
        parameters = {name: format(value, "032b") for name, value in registers.items()}
        cells = {"dsp": cell("DSP48E2", parameters, A=[1], B=[2], P=[3])}
        return longest_path(netlist(cells, {}), "top").dsp_mhz

    assert dsp() == DELAYS.dsp_mhz == 775
    assert dsp(MREG=0) == DELAYS.dsp_no_mreg_mhz == 544
    assert dsp(PREG=0) == dsp(AREG=0, BREG=0) == DELAYS.dsp_no_pipeline_mhz == 410
    # Without any register the DSP is combinational: the path runs through it.
    registers = ("AREG", "BREG", "MREG", "PREG")
    cells = {"a": cell("FDRE", D=[1], Q=[2]),
             "dsp": cell("DSP48E2", dict.fromkeys(registers, "0"), A=[2], B=[2], P=[3]),
             "b": cell("FDRE", D=[3], Q=[4])}
    found = longest_path(netlist(cells, {"a": [2], "b": [4]}), "top")
    assert (found.cells, found.start, found.end) == ("FDRE > DSP48E2 > FDRE", "a", "b")
    assert found.delay_ns == pytest.approx(
        DELAYS.clock_to_out + 2 * DELAYS.net + 1000 / DELAYS.dsp_no_pipeline_mhz
        + DELAYS.setup + DELAYS.uncertainty)
    # The lowest DSP limit caps the clock even when the fabric is fast.
    assert supported_clock_mhz([PathDepth(delay_ns=1.0, dsp_mhz=544.0)]) == 544
    assert supported_clock_mhz([PathDepth(delay_ns=0.5)]) == DELAYS.bufg_mhz
    assert supported_clock_mhz([]) is None


XOR_AND_ADD = r"""
module top(input clk, input [35:0] d, input [31:0] a, input [31:0] b,
           output \xor.parity , output [31:0] \add.sum );
  reg [35:0] bits;
  reg [31:0] x, y;
  reg \xor.parity ;
  reg [31:0] \add.sum ;
  always @(posedge clk) begin
    bits <= d; x <= a; y <= b;
    \xor.parity  <= ^bits;        // 36 inputs: two levels of 6-input LUTs at least
    \add.sum  <= x + y;           // a 32-bit carry chain behind one level of LUTs
  end
endmodule
"""


def test_depth_of_a_synthesized_xor_tree_and_adder():
    _, adder = resources._synthesize(XOR_AND_ADD, "top", flatten=True, depth=True)
    assert (adder.lut_levels, adder.carry_bits, adder.carry8) == (1, 32, 4)
    assert adder.start in ("x", "y") and adder.end == "add.sum"
    (block, end, levels, carry_bits, ns), = [other for other in adder.others
                                             if other[0] == "xor"]
    assert (end, levels, carry_bits) == ("xor.parity", 2, 0)
    assert ns < adder.delay_ns


def test_the_per_module_estimate_gives_each_part_its_depth():
    verilog = ("module inner(input clk, input [31:0] a, output reg [31:0] q);\n"
               "  reg [31:0] r;\n  always @(posedge clk) begin r <= a; q <= r + 1; end\n"
               "endmodule\n"
               "module top(input clk, input [31:0] a, output [31:0] q0, output [31:0] q1);\n"
               "  inner u0(.clk(clk), .a(a), .q(q0));\n  inner u1(.clk(clk), .a(a), .q(q1));\n"
               "endmodule\n")
    total, parts, depths = resources.estimate_by_module(verilog, "top", depth=True)
    assert set(depths) == set(parts) == {"top", "inner"}
    assert parts["inner"][0] == 2
    assert depths["inner"].carry_bits == 32
    assert depths["top"].carry_bits == 0               # inner is a black box there


def generate_small(tmp_path, capsys, *options):
    """``vitforge generate --preset small`` in process: exit code, stdout, stderr, folder."""
    from vitforge.sw import cli

    out = tmp_path / "out"
    code = cli.main(["generate", "--preset", "small", "--out", str(out), *options])
    captured = capsys.readouterr()
    return code, captured.out, captured.err, out


def test_clock_mhz_sets_pl_clk0_and_a_bad_one_is_refused(tmp_path, capsys):
    import json

    code, printed, _, out = generate_small(tmp_path, capsys, "--clock-mhz", "200",
                                           "--no-resources")
    assert code == 0
    assert "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ {200}" in (out / "create_project.tcl").read_text()
    assert json.loads((out / "config.json").read_text())["clock_mhz"] == 200
    assert "4x4 array at 200 MHz" in printed
    code, printed, error, out = generate_small(tmp_path / "bad", capsys, "--clock-mhz", "900",
                                               "--no-resources")
    assert (code, printed) == (2, "")
    assert error == "vitforge: error: clock_mhz must be from 10 to 500, not 900\n"
    assert not out.exists()


def test_generate_warns_when_the_depth_evidence_does_not_support_the_clock(
        tmp_path, capsys, monkeypatch):
    import json

    part = resources.Resources(lut=100, lutram=0, ff=100, dsp=1, bram36=1, carry=4)
    depths = {"vitforge_accelerator": PathDepth(lut_levels=12, carry_bits=64, delay_ns=8.0,
                                                start="a", end="b", cells="FDRE > LUT6 x12"),
              "vitforge_accelerator.pe": PathDepth(lut_levels=2, delay_ns=2.0, dsp_mhz=544.0)}

    def estimate(verilog, top, *, depth=False):
        assert depth and top == "vitforge_accelerator"
        return part, {name: (1, part) for name in depths}, depths

    monkeypatch.setattr(resources, "estimate_by_module", estimate)
    code, printed, error, out = generate_small(tmp_path, capsys, "--clock-mhz", "250")
    assert code == 0
    assert ("vitforge: warning: clock 250 MHz is above the 125 MHz the depth evidence supports "
            "(slowest path: 12 LUT levels, 64-bit carry chain in vitforge_accelerator)\n") in error
    assert "slowest path         12 LUT levels, 64-bit carry chain in vitforge_accelerator: " \
           "about 125 MHz" in printed
    written = json.loads((out / "resources.json").read_text())
    assert written["clock"]["max_clock_mhz_estimate"] == 125
    assert written["clock"]["clock_supported"] is False
    assert written["clock"]["path_cells"] == "FDRE > LUT6 x12"
    assert written["parts"]["vitforge_accelerator.pe"]["logic_levels"] == 2
    assert written["parts"]["vitforge_accelerator.pe"]["dsp_limit_mhz"] == 544.0
    assert written["parts"]["vitforge_accelerator"]["carry8"] == 8
    # 125 MHz is supported, and the worst part is the slowest, not the one with a DSP.
    evidence = clock_evidence(depths, 125)
    assert evidence["clock_supported"] is True
    assert (evidence["worst_module"], evidence["max_clock_mhz_estimate"]) == (
        "vitforge_accelerator", 125)


def test_a_synthesized_part_is_cached_by_content_and_a_corrupt_entry_is_redone(
        tmp_path, monkeypatch):
    monkeypatch.setenv("VITFORGE_CACHE", str(tmp_path))
    first = resources.synthesized_part(XOR_AND_ADD, "top", [], depth=True)
    (entry,) = (tmp_path / "yosys").iterdir()

    def no_synthesis(*args, **kwargs):
        raise AssertionError("synthesized again although cached")

    with monkeypatch.context() as patch:
        patch.setattr(resources, "_synthesize", no_synthesis)
        assert resources.synthesized_part(XOR_AND_ADD, "top", [], depth=True) == first
        with pytest.raises(AssertionError, match="synthesized again"):     # other content
            resources.synthesized_part(XOR_AND_ADD + "\n", "top", [], depth=True)
    entry.write_text('{"resources": ')                     # truncated: synthesized again
    assert resources.synthesized_part(XOR_AND_ADD, "top", [], depth=True) == first
    assert entry.read_text().startswith('{"resources": {')
