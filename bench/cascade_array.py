"""The DSP48E2 cascade array against the PE arrays: fabric per MAC, and the primitive's model.

Two measurements for issue 13's array:

1. Yosys ``synth_xilinx -family xcup`` estimates (per module, synthesis form)
   of a ``rows x cols`` :class:`PEArray` with one and two MACs per DSP and of
   :class:`CascadeArray` of each depth: LUT, FF and DSP per MAC, and the LUTs
   the MACs that DeiT-S at 110 FPS needs would take.
2. With ``--unisim DIR`` (a folder holding Xilinx's ``DSP48E2.v`` simulation
   model, from a Vivado installation's ``data/verilog/src/unisims`` or
   github.com/Xilinx/XilinxUnisimLibrary), a chain of
   :class:`CascadeMultiplyAdd` links as a primitive instance and as the
   behavioural model side by side in Icarus Verilog, every link's ``P``
   compared in every cycle of random and extreme operands.

Writes ``bench/results/cascade_array.json`` and, with matplotlib,
``cascade_array.png``.

    python bench/cascade_array.py [--rows 4 --cols 8] [--unisim DIR] [--cycles 4000]
"""

import argparse
import json
from pathlib import Path
import subprocess
import sys
import tempfile

from amaranth import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from vitforge.hw.dsp48e2 import MULTIPLICAND_BITS, MULTIPLIER_BITS, P_BITS, add_cascade
from vitforge.hw.gemm.array import PEArray
from vitforge.hw.gemm.cascade_array import CascadeArray
from vitforge.hw.gemm.config import accumulator_width
from vitforge.hw.gemm.pe_pair import DSP_RUN_PRODUCTS
from vitforge.hw.verilog import to_verilog
from vitforge.sw import resources

RESULTS = Path(__file__).parent / "results"
#: Logical MACs a DeiT-S inference needs for 110 FPS at 200 MHz and 85% PE
#: utilization (4.60 G MACs per image, docs/performance.md).
GOAL_MACS = 3200
#: The accelerator's accumulator: a sum of k_max = 2048 int8 products.
ACC_WIDTH = accumulator_width(2048)


def fabric_per_mac(rows, cols):
    """Yosys estimates of each array kind at ``rows x cols`` outputs, per logical MAC."""
    kinds = [("PE, 1 MAC/DSP", PEArray(rows=rows, cols=cols, acc_width=ACC_WIDTH), 1),
             ("PE pair, 2 MACs/DSP", PEArray(rows=rows, cols=cols, acc_width=ACC_WIDTH,
                                             macs_per_dsp=2), 1)]
    kinds += [(f"cascade, depth {depth}", CascadeArray(rows=rows, cols=cols, depth=depth,
                                                       acc_width=ACC_WIDTH), depth)
              for depth in (1, 2, 4, DSP_RUN_PRODUCTS)]
    table = []
    for name, array, depth in kinds:
        print(f"  {name} ...", file=sys.stderr, flush=True)
        total, _ = resources.estimate_by_module(to_verilog(array, "array", synthesis=True),
                                                "array")
        macs = rows * cols * depth
        table.append({"array": name, "macs": macs, "lut": total.lut, "ff": total.ff,
                      "dsp": total.dsp, "lut_per_mac": total.lut / macs,
                      "ff_per_mac": total.ff / macs, "macs_per_dsp": macs / total.dsp,
                      "lut_at_goal": round(total.lut / macs * GOAL_MACS)})
    return table


class _Chain(wiring.Component):
    """``links`` cascaded :class:`CascadeMultiplyAdd` blocks with every ``P`` visible."""

    def __init__(self, links):
        super().__init__({
            "a": In(data.ArrayLayout(MULTIPLICAND_BITS, links)),
            "b": In(data.ArrayLayout(MULTIPLIER_BITS, links)),
            "p": Out(data.ArrayLayout(P_BITS, links)),
        })
        self._links = links

    def elaborate(self, platform):
        m = Module()
        for t, link in enumerate(add_cascade(m, self._links, round_constant=1 << 17)):
            m.d.comb += [link.a.eq(self.a[t]), link.b.eq(self.b[t]), self.p[t].eq(link.p)]
        return m


def _testbench(links, cycles, seed):
    """Verilog that drives both chains alike and counts cycles where a ``P`` differs."""
    a_bits, b_bits, p_bits = links * MULTIPLICAND_BITS, links * MULTIPLIER_BITS, links * P_BITS
    extremes = [(f"{{{links}{{1'b1, {MULTIPLICAND_BITS - 1}'b0}}}}",
                 f"{{{links}{{1'b1, {MULTIPLIER_BITS - 1}'b0}}}}"),
                (f"{{{links}{{1'b0, {{{MULTIPLICAND_BITS - 1}{{1'b1}}}}}}}}",
                 f"{{{links}{{1'b1, {MULTIPLIER_BITS - 1}'b0}}}}")]
    return f"""
`timescale 1ps/1ps
module glbl; reg GSR = 1'b1; initial #100 GSR = 1'b0; endmodule
module bench;
  reg clk = 0; reg rst = 0; reg [{a_bits - 1}:0] a = 0; reg [{b_bits - 1}:0] b = 0;
  wire [{p_bits - 1}:0] p_model, p_primitive;
  integer cycle, mismatches = 0, seed = {seed};
  chain_model model(.clk(clk), .rst(rst), .a(a), .b(b), .p(p_model));
  chain_primitive dsp48e2(.clk(clk), .rst(rst), .a(a), .b(b), .p(p_primitive));
  always #5000 clk = ~clk;
  initial begin
    #20000;
    for (cycle = 0; cycle < {cycles}; cycle = cycle + 1) begin
      @(negedge clk);
      if (cycle > {links + 3} && p_model !== p_primitive) begin
        mismatches = mismatches + 1;
        if (mismatches <= 5) $display("cycle %0d: model %h primitive %h", cycle, p_model,
                                      p_primitive);
      end
      case (cycle % 16)
        0: begin a = {extremes[0][0]}; b = {extremes[0][1]}; end
        1: begin a = {extremes[1][0]}; b = {extremes[1][1]}; end
        default: begin
          a = {{{", ".join(["$random(seed)"] * (a_bits // 32 + 1))}}};
          b = {{{", ".join(["$random(seed)"] * (b_bits // 32 + 1))}}};
        end
      endcase
    end
    $display("MISMATCHES %0d IN %0d CYCLES", mismatches, {cycles});
    $finish;
  end
endmodule
"""


def unisim_equivalence(unisim, *, links=4, cycles=4000, seed=1):
    """Mismatching cycles of the behavioural chain against Xilinx's DSP48E2 model."""
    model_path = Path(unisim) / "DSP48E2.v"
    if not model_path.is_file():
        raise ValueError(f"--unisim must be a folder holding Xilinx's DSP48E2.v, "
                         f"not {unisim!r} (no {model_path})")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "model.v").write_text(to_verilog(_Chain(links), "chain_model"))
        (folder / "primitive.v").write_text(to_verilog(_Chain(links), "chain_primitive",
                                                       synthesis=True))
        (folder / "bench.v").write_text(_testbench(links, cycles, seed))
        sources = [str(folder / name) for name in ("bench.v", "model.v", "primitive.v")]
        subprocess.run(["iverilog", "-g2012", "-s", "bench", "-s", "glbl", "-o",
                        str(folder / "run"), *sources, str(model_path)], check=True)
        log = subprocess.run(["vvp", str(folder / "run")], check=True, capture_output=True,
                             text=True).stdout
    print(log, file=sys.stderr)
    mismatches, checked = (int(word) for word in log.split("MISMATCHES")[1].split()[::2])
    return {"links": links, "cycles": checked, "mismatching_cycles": mismatches,
            "seed": seed, "model": "Xilinx unisims DSP48E2.v", "simulator": "Icarus Verilog"}


def plot(table, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(8, 4))
    names = [row["array"] for row in table]
    axis.barh(names, [row["lut_at_goal"] / 1000 for row in table], color="tab:blue")
    axis.axvline(0.8 * 274.08 - 112, color="tab:red", linestyle="--",
                 label="LUTs left for MACs under 80% (rest of the design: ~112k)")
    axis.set_xlabel(f"k LUT for {GOAL_MACS} MACs (Yosys estimate, scaled per MAC)")
    axis.invert_yaxis()
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--cols", type=int, default=8)
    parser.add_argument("--unisim", help="folder holding Xilinx's DSP48E2.v")
    parser.add_argument("--cycles", type=int, default=4000)
    args = parser.parse_args(argv)
    result = {"rows": args.rows, "cols": args.cols, "acc_width": ACC_WIDTH,
              "goal_macs": GOAL_MACS, "tool": "yosys 0.23 synth_xilinx -family xcup",
              "arrays": fabric_per_mac(args.rows, args.cols)}
    if args.unisim:
        result["unisim_equivalence"] = unisim_equivalence(args.unisim, cycles=args.cycles)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cascade_array.json").write_text(json.dumps(result, indent=2) + "\n")
    for row in result["arrays"]:
        print(f"{row['array']:22} {row['lut_per_mac']:6.1f} LUT/MAC {row['ff_per_mac']:6.1f} "
              f"FF/MAC {row['macs_per_dsp']:.0f} MAC/DSP  {row['lut_at_goal']:>7,} LUT at "
              f"{GOAL_MACS} MACs")
    try:
        plot(result["arrays"], RESULTS / "cascade_array.png")
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
