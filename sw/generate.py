"""``vitforge generate``: a folder with everything needed to build the accelerator for a board."""

from dataclasses import dataclass, field
import json
import time

from vitforge.errors import ConfigError, ConfigTypeError, ToolchainError

__all__ = ["BOARDS", "DEVICE", "HEADROOM", "Generated", "generate", "resource_report",
           "clock_evidence"]

#: Boards generate knows.
BOARDS = ("zcu102",)
#: XCZU9EG capacity.
DEVICE = {"lut": 274_080, "ff": 548_160, "dsp": 2_520, "bram36": 912}
#: Share of LUTs and BRAM a design may use and still leave room for routing.
HEADROOM = 0.8
#: The parts whose DSPs do MACs: PEs and PE pairs, and the cascade array's pairs and links.
_MAC_MODULES = (".array.pe_", ".array.dot_pair_")


@dataclass
class Generated:
    folder: object
    files: list                         # paths relative to the folder
    resources: dict = None              # resources.json's content
    seconds: dict = field(default_factory=dict)   # "verilog", "resources"
    warnings: list = field(default_factory=list)  # e.g. a clock the depth evidence does not support


def _json(value):
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def clock_evidence(depths, clock_mhz):
    """``resources.json``'s clock evidence from the slowest path of each part.

    Parameters
    ----------
    depths : dict
        ``{module: PathDepth}`` (:func:`vitforge.sw.resources.estimate_by_module`).
    clock_mhz : int
        The config's ``pl_clk0``.

    Returns
    -------
    dict
        The worst part's path, ``max_clock_mhz_estimate`` (what the delay model
        of :mod:`vitforge.sw.timing` says the design supports), the clock, and
        whether the estimate supports it.
    """
    from vitforge.sw.timing import supported_clock_mhz

    worst = max(depths, key=lambda name: depths[name].delay_ns)
    supported = supported_clock_mhz(depths.values())
    return {"worst_module": worst, **depths[worst].as_dict(),
            "max_clock_mhz_estimate": supported, "clock_mhz": clock_mhz,
            "clock_supported": supported is not None and clock_mhz <= supported,
            "model": "Zynq UltraScale+ -2: DS925 DSP48E2 and BUFG limits, assumed fabric "
                     "delays (docs/performance.md, Clock evidence)"}


def resource_report(total, parts, method, yosys, depths=None, clock_mhz=None):
    """``resources.json``: totals, device use, fit, the share of DSPs doing MACs and, with
    ``depths`` (``{module: PathDepth}``) and ``clock_mhz``, the clock evidence
    (:func:`clock_evidence`) and each part's slowest path."""
    from vitforge.boards.zcu102 import PART

    counts = total.as_dict()
    mac_dsp = sum(count * part.dsp for name, (count, part) in parts.items()
                  if any(module in name for module in _MAC_MODULES))
    utilization = {key: counts[key] / capacity for key, capacity in DEVICE.items()}
    report = {
        **counts,
        "method": method,
        "tool": f"{yosys}: synth_xilinx -family xcup",
        "device": {"part": PART, **DEVICE},
        "utilization": {key: round(value, 4) for key, value in utilization.items()},
        "fits": all(value <= 1 for value in utilization.values()),
        "routing_headroom": utilization["lut"] <= HEADROOM and utilization["bram36"] <= HEADROOM,
        "mac_dsp": mac_dsp,
        "mac_dsp_fraction": round(mac_dsp / counts["dsp"], 4) if counts["dsp"] else 0.0,
        "parts": {name: {"instances": count, **part.as_dict(),
                         **(depths[name].as_dict() if depths else {})}
                  for name, (count, part) in sorted(parts.items())},
    }
    if depths:
        report["clock"] = clock_evidence(depths, clock_mhz)
    return report


def generate(board, config, out, *, resources=True, log=None, force=False):
    """Write the Verilog, constraints, Vivado scripts, register map and estimates to ``out``.

    ``out`` is replaced whole, and only once everything is written: a failed
    generate leaves the previous folder (or none). The same inputs give
    byte-identical files.

    Parameters
    ----------
    board : str
        One of :data:`BOARDS`.
    config : ShellConfig
    out : str or Path
    resources : bool
        Run the Yosys estimate (``resources.json``, with the clock evidence of
        :func:`clock_evidence`); without Yosys the file says why there is no
        estimate and how to get one. The result's ``warnings`` say when the
        estimate's slowest path does not support ``config.clock_mhz``.
    log : callable or None
        Told what is happening (the estimate of a large preset takes minutes).
    force : bool
        Replace ``out`` even if it is a folder vitforge did not write
        (:func:`~vitforge.sw.files.check_replaceable`).

    Raises
    ------
    vitforge.errors.ConfigError, vitforge.errors.ConfigTypeError
        For an unknown board or a config that is not a :class:`ShellConfig`.
    vitforge.errors.OutputError
        If ``out`` cannot be written, or may not be replaced (checked before the work).
    """
    from vitforge.boards import vivado
    from vitforge.boards.presets import ShellConfig, config_hash
    from vitforge.hw.accel.regmap import regmap_header, regmap_json
    from vitforge.hw.verilog import to_verilog
    from vitforge.sw import resources as yosys_resources
    from vitforge.sw.files import atomic_folder, check_replaceable

    if board not in BOARDS:
        raise ConfigError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
    if not isinstance(config, ShellConfig):
        raise ConfigTypeError(f"config must be a ShellConfig, not {type(config).__name__}")
    check_replaceable(out, force)
    result = Generated(folder=out, files=[])
    # Everything is computed before the folder is written, so an error while
    # writing is about the folder only (atomic_folder reports it as such).
    contents = {}                      # relative path -> (text, file mode)
    if log:
        log(f"generating Verilog for the {config.accelerator.array}x"
            f"{config.accelerator.array} accelerator shell")
    started = time.monotonic()
    shell = config.shell()
    core = to_verilog(shell, vivado.CORE, synthesis=True)
    contents[f"rtl/{vivado.CORE}.v"] = core, 0o644
    contents[f"rtl/{vivado.WRAPPER}.v"] = vivado.wrapper_verilog(shell), 0o644
    contents["rtl/lint_waivers.vlt"] = lint_waivers(), 0o644
    contents["constraints/zcu102.xdc"] = vivado.constraints(), 0o644
    contents["create_project.tcl"] = vivado.project_tcl(config), 0o644
    contents["build.sh"] = vivado.build_script(), 0o755
    contents["regmap.json"] = regmap_json(), 0o644
    contents["regmap.h"] = regmap_header(), 0o644
    contents["config.json"] = _json({"board": board, **config.to_dict(),
                                     "config_hash": config_hash(config)}), 0o644
    result.seconds["verilog"] = time.monotonic() - started

    if resources:
        if log:
            log("estimating resources with yosys (per-module method)")
        started = time.monotonic()
        try:
            total, parts, depths = yosys_resources.estimate_by_module(core, vivado.CORE,
                                                                      depth=True)
            result.resources = resource_report(total, parts, "per-module",
                                               yosys_resources.yosys_version(), depths,
                                               config.clock_mhz)
            clock = result.resources["clock"]
            if not clock["clock_supported"]:
                result.warnings.append(
                    f"clock {config.clock_mhz} MHz is above the {clock['max_clock_mhz_estimate']}"
                    f" MHz the depth evidence supports (slowest path: {clock['logic_levels']} "
                    f"LUT levels, {clock['carry_bits']}-bit carry chain in "
                    f"{clock['worst_module']})")
        except ToolchainError as missing:
            result.resources = {"available": False, "reason": str(missing)}
            if log:
                log(f"no resource estimate: {missing}")
        result.seconds["resources"] = time.monotonic() - started
        contents["resources.json"] = _json(result.resources), 0o644

    with atomic_folder(out, force) as staging:
        for relative, (text, mode) in contents.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(mode)
            result.files.append(relative)
    return result


def lint_waivers():
    """The Verilator waivers for the generated RTL (``rtl/lint_waivers.vlt``)."""
    from importlib import resources

    return resources.files("vitforge.boards").joinpath("lint_waivers.vlt").read_text()
