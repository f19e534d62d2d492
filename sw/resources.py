"""FPGA resource estimates from Yosys ``synth_xilinx`` (UltraScale+)."""

from dataclasses import dataclass
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["YosysMissing", "Resources", "estimate", "parse_stat"]

_INSTALL_HINT = "apt-get install yosys (Debian's yosys 0.23 runs synth_xilinx -family xcup)"


class YosysMissing(RuntimeError):
    """No ``yosys`` executable on PATH; the message says how to install it."""


@dataclass(frozen=True)
class Resources:
    lut: int          # logic LUTs (LUT1..LUT6)
    lutram: int       # LUTs used as distributed RAM or shift registers
    ff: int
    dsp: int          # DSP48E2
    bram36: float     # RAMB36E2, with a RAMB18E2 counted as half
    carry: int        # CARRY8

    def as_dict(self):
        return {"lut": self.lut, "lutram": self.lutram, "ff": self.ff, "dsp": self.dsp,
                "bram36": self.bram36, "carry8": self.carry}


_LUTRAM_CELLS = {"RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
                 "RAM32M": 4, "RAM32M16": 8, "RAM64M": 4, "RAM64M8": 8, "RAM32X1S": 1,
                 "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM512X1S": 8, "SRL16E": 1,
                 "SRLC32E": 1}


def _count(cells, names):
    return sum(count for name, count in cells.items() if name in names)


def estimate(verilog, top):
    """Synthesize ``verilog`` (module ``top``) for UltraScale+ and count its cells.

    Raises
    ------
    YosysMissing
        If Yosys is not installed.
    RuntimeError
        If synthesis fails (the message ends with Yosys' last lines).
    """
    yosys = shutil.which("yosys")
    if yosys is None:
        raise YosysMissing(f"yosys not found; install it with: {_INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="vitforge-yosys-") as scratch:
        source = Path(scratch) / "design.v"
        source.write_text(verilog)
        script = f"read_verilog {source}; synth_xilinx -family xcup -top {top}; stat"
        completed = subprocess.run([yosys, "-q", "-p", script, "-l", f"{scratch}/log"],
                                   capture_output=True, text=True, check=False)
        log = (Path(scratch) / "log").read_text() if (Path(scratch) / "log").exists() else ""
    if completed.returncode != 0:
        tail = "\n".join((completed.stderr or log).splitlines()[-10:])
        raise RuntimeError(f"yosys synth_xilinx of {top} failed:\n{tail}")
    return parse_stat(log)


def parse_stat(log):
    """:class:`Resources` from the last ``stat`` report in a Yosys log."""
    start = log.rfind("Number of cells")
    if start < 0:
        raise ValueError("Yosys log has no 'stat' report (no 'Number of cells' line)")
    cells = {name: int(count) for name, count in
             re.findall(r"^\s+(\w+)\s+(\d+)\s*$", log[start:], re.M)}
    lut = _count(cells, {f"LUT{i}" for i in range(1, 7)})
    lutram = sum(cells.get(name, 0) * luts for name, luts in _LUTRAM_CELLS.items())
    ff = _count(cells, {"FDRE", "FDSE", "FDCE", "FDPE"})
    return Resources(lut=lut, lutram=lutram, ff=ff, dsp=cells.get("DSP48E2", 0),
                     bram36=cells.get("RAMB36E2", 0) + cells.get("RAMB18E2", 0) / 2,
                     carry=cells.get("CARRY8", 0))
