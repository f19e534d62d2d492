"""``vitforge generate``: the files, their agreement with each other and with the RTL, errors."""

from dataclasses import replace
import hashlib
import json
import re

import pytest

from vitforge.boards import vivado
from vitforge.boards.presets import PRESETS, ShellConfig, config_hash, load_shell_config
from vitforge.errors import ConfigError
from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.sim.axi_lite import read_register, write_register
from vitforge.sim.pins import run_in_amaranth
from vitforge.sw import resources
from vitforge.sw.files import FOLDER_MARKER
from vitforge.sw.generate import generate, resource_report

EXPECTED_FILES = {"rtl/vitforge_accelerator.v", "rtl/vitforge_zcu102.v", "rtl/lint_waivers.vlt",
                  "constraints/zcu102.xdc", "create_project.tcl", "build.sh", "regmap.json",
                  "regmap.h", "config.json", FOLDER_MARKER}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generate") / "small"
    generate("zcu102", PRESETS["small"], folder, resources=False)
    return folder


def read_all(folder):
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_every_file_is_written_and_regenerating_gives_the_same_bytes(small, tmp_path):
    first = read_all(small)
    assert set(first) == EXPECTED_FILES
    again = tmp_path / "again"
    generate("zcu102", PRESETS["small"], again, resources=False)
    assert read_all(again) == first
    assert (small / "build.sh").stat().st_mode & 0o111


def test_config_register_map_and_ports_agree(small):
    assert load_shell_config(small / "config.json") == PRESETS["small"]
    described = {r["name"]: r["offset"] for r in json.loads((small / "regmap.json").read_text())
                 ["registers"]}
    defines = re.findall(r"#define VITFORGE_(\w+) 0x([0-9A-F]+)u", (small / "regmap.h").read_text())
    assert described == {name: int(offset, 16) for name, offset in defines}
    core = (small / "rtl/vitforge_accelerator.v").read_text()
    header = re.search(r"^module vitforge_accelerator\((.*?)\);", core, re.M | re.S)[1]
    core_ports = {port.strip() for port in header.split(",")}
    wrapper = (small / "rtl/vitforge_zcu102.v").read_text()
    connected = set(re.findall(r"^\s+\.(\w+)\(", wrapper, re.M))
    assert connected == core_ports
    tcl = (small / "create_project.tcl").read_text()
    for needed in ("-part xczu9eg-ffvb1156-2-e", "xilinx.com:zcu102:part0", "zynq_ultra_ps_e",
                   "M_AXI_HPM0_FPD /accel/s_axil", "/accel/m_axi /zynq_ps/S_AXI_HP0_FPD",
                   "PL0_REF_CTRL__FREQMHZ {250}", "pl_ps_irq0", "write_bitstream",
                   "vitforge.hwh", "-reference vitforge_zcu102"):
        assert needed in tcl, needed
    xdc = (small / "constraints/zcu102.xdc").read_text()
    assert "set_property PACKAGE_PIN AG14 [get_ports {led[0]}]" in xdc
    assert "set_property IOSTANDARD LVCMOS33 [get_ports {led[1]}]" in xdc


def test_register_map_file_matches_the_rtl(small):
    """Every register of regmap.json answers OKAY at its offset; HW_* read back config.json."""
    config = load_shell_config(small / "config.json")
    registers = json.loads((small / "regmap.json").read_text())["registers"]
    seen = {}

    async def session(pins):
        for register in registers:
            seen[register["name"]] = await read_register(pins, register["offset"],
                                                         prefix="s_axil_")
        seen["PROGRAM_ADDR after write"] = (
            await write_register(pins, described["PROGRAM_ADDR"], 77, prefix="s_axil_"),
            await read_register(pins, described["PROGRAM_ADDR"], prefix="s_axil_"))
        unused = max(described.values()) + 4
        seen["unused"] = await read_register(pins, unused, prefix="s_axil_")

    described = {register["name"]: register["offset"] for register in registers}
    run_in_amaranth(config.shell(), session)
    assert all(seen[name][0] == 0 for name in described), seen
    for name, value in config.accelerator.to_dict().items():
        assert seen[f"HW_{name.upper()}"] == (0, value)
    assert seen["PROGRAM_ADDR after write"] == (0, (0, 77))
    assert seen["unused"] == (2, 0)                         # SLVERR


@pytest.mark.verilator
def test_generated_rtl_passes_verilator_lint_with_the_waivers(small):
    import subprocess

    from vitforge.sim.runner import find_toolchain

    toolchain = find_toolchain()
    completed = subprocess.run(
        [toolchain.verilator, "--lint-only", "-Wall", "--top-module", vivado.WRAPPER,
         "rtl/lint_waivers.vlt", "rtl/vitforge_accelerator.v", "rtl/vitforge_zcu102.v"],
        cwd=small, capture_output=True, text=True, env=toolchain.environment(), check=False)
    assert completed.returncode == 0, completed.stderr
    assert "%Warning" not in completed.stderr, completed.stderr


def test_waivers_cover_only_the_generated_core(small):
    """The templated wrapper gets no waiver: the lint test above holds it to -Wall as is."""
    waivers = (small / "rtl/lint_waivers.vlt").read_text()
    files = set(re.findall(r'-file "\*(\S+)"', waivers))
    assert files == {"vitforge_accelerator.v"}


def test_a_cascade_config_generates_dsp48e2_primitives(tmp_path):
    # k_per_cycle 2 on a 4x4 array: 4 rows x 2 column pairs x 2 links, instantiated for Vivado.
    cascade = replace(PRESETS["small"], accelerator=replace(
        PRESETS["small"].accelerator, macs_per_dsp=2, k_per_cycle=2))
    generate("zcu102", cascade, tmp_path / "out", resources=False)
    core = (tmp_path / "out/rtl/vitforge_accelerator.v").read_text()
    assert core.count("DSP48E2 #(") == 4 * 2 * 2
    assert json.loads((tmp_path / "out/config.json").read_text())["accelerator"][
        "k_per_cycle"] == 2


def test_a_failed_generate_leaves_the_previous_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous")
    (out / FOLDER_MARKER).write_text("")             # an earlier generate's folder

    def broken(config):
        raise RuntimeError("disk full")

    monkeypatch.setattr(vivado, "project_tcl", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        generate("zcu102", PRESETS["small"], out, resources=False)
    assert [path.name for path in tmp_path.iterdir()] == ["out"]
    assert sorted(path.name for path in out.iterdir()) == [FOLDER_MARKER, "keep.txt"]


def test_without_yosys_the_estimate_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(resources.shutil, "which", lambda name: None)
    result = generate("zcu102", PRESETS["small"], tmp_path / "out")
    written = json.loads((tmp_path / "out/resources.json").read_text())
    assert written == result.resources
    assert written["available"] is False
    assert written["reason"].startswith("yosys not found; install it with: apt-get install "
                                        "yosys")


def test_resource_report_counts_fit_headroom_and_mac_dsps():
    pe = resources.Resources(lut=60, lutram=0, ff=80, dsp=1, bram36=0, carry=0)
    rest = resources.Resources(lut=230_000, lutram=10, ff=1000, dsp=64, bram36=100, carry=0)
    total = resources.Resources(lut=230_000 + 60 * 256, lutram=10, ff=1000 + 80 * 256,
                                dsp=64 + 256, bram36=100, carry=0)
    report = resource_report(total, {"top": (1, rest),
                                     "top.accelerator.gemm.array.pe_0_0": (256, pe)},
                             "per-module", "Yosys 0.23")
    assert report["dsp"] == 320 and report["mac_dsp"] == 256
    assert report["mac_dsp_fraction"] == 0.8
    assert report["fits"] is True
    assert report["routing_headroom"] is False          # 89.5% of the LUTs
    assert report["utilization"]["lut"] == round(245_360 / 274_080, 4)


def test_identical_modules_are_synthesized_once():
    verilog = "".join(
        f"module \\top.pe_{index} (a, y);\n  input a;\n  output y;\n"
        f"  reg \\$auto$verilog_backend.cc:1:dump_module${index}  = 0;\n  assign y = ~a;\nendmodule\n"
        for index in range(3))
    verilog += ("module top(a, y);\n  input [2:0] a;\n  output [2:0] y;\n"
                + "".join(f"  \\top.pe_{index}  pe_{index} (.a(a[{index}]), .y(y[{index}]));\n"
                          for index in range(3)) + "endmodule\n")
    merged, instances = resources.merge_identical_modules(verilog)
    assert instances == {"\\top.pe_0 ": 3, "top": 1}
    assert merged.count("module ") == 2
    assert merged.count("\\top.pe_0  pe_") == 3


def test_shell_config_rules():
    with pytest.raises(ValueError, match=r"^act_read_ports must be 1 or 2, not 3$"):
        AcceleratorConfig(act_read_ports=3)
    with pytest.raises(ValueError, match=r"^array must be at most 64 \(the widest array "
                                         r"vitforge builds\), not 512$"):
        AcceleratorConfig(array=512)
    with pytest.raises(TypeError, match=r"^accelerator must be an AcceleratorConfig, not dict$"):
        ShellConfig(accelerator={})
    with pytest.raises(ValueError, match=r"^clock_mhz must be from 10 to 500, not 900$"):
        ShellConfig(accelerator=AcceleratorConfig(), clock_mhz=900)
    with pytest.raises(ValueError, match=r"^max_burst must be a power of two from 1 to 256, "
                                         r"not 24$"):
        ShellConfig(accelerator=AcceleratorConfig(), max_burst=24)


def test_the_config_hash_names_the_hardware_and_the_clock():
    small = PRESETS["small"]
    assert re.fullmatch(r"[0-9a-f]{12}", config_hash(small))
    assert config_hash(ShellConfig.from_dict(small.to_dict())) == config_hash(small)
    assert len({config_hash(small), config_hash(PRESETS["zcu102"]),
                config_hash(replace(small, clock_mhz=200)),
                config_hash(replace(small, accelerator=replace(small.accelerator,
                                                                act_depth=8192))),
                config_hash(replace(small, accelerator=replace(small.accelerator,
                                                                macs_per_dsp=2)))}) == 5


@pytest.mark.parametrize("absent", [("macs_per_dsp", "k_per_cycle"), ("k_per_cycle",)])
def test_a_config_json_from_before_later_fields_still_loads(tmp_path, absent):
    # generate wrote no macs_per_dsp before issue 13, nor k_per_cycle before the DSP
    # cascades, and hashed the config without either at its default value: such a file
    # must still load.
    values = PRESETS["small"].to_dict()
    hashed = json.loads(json.dumps(values))
    for name in ("macs_per_dsp", "k_per_cycle"):
        del hashed["accelerator"][name]
    for name in absent:
        del values["accelerator"][name]
    canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
    values["config_hash"] = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    old = tmp_path / "config.json"
    old.write_text(json.dumps(values))
    assert load_shell_config(old) == PRESETS["small"]


def test_config_json_carries_the_hash_and_a_mismatch_is_refused(small, tmp_path):
    values = json.loads((small / "config.json").read_text())
    assert values["config_hash"] == config_hash(PRESETS["small"])
    values["clock_mhz"] = 200
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(values))
    with pytest.raises(ConfigError, match=rf"^config file '{edited}' has config_hash "
                                          rf"'{config_hash(PRESETS['small'])}', but its contents "
                                          rf"hash to '\w{{12}}': it was edited after generate"):
        load_shell_config(edited)
    del values["config_hash"]
    edited.write_text(json.dumps(values))
    assert load_shell_config(edited) == replace(PRESETS["small"], clock_mhz=200)
