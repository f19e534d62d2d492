"""FPGA resource estimates from Yosys ``synth_xilinx`` (UltraScale+)."""

from dataclasses import asdict, dataclass, fields
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from vitforge.errors import ConfigError, ToolchainError

__all__ = ["Resources", "estimate", "estimate_by_module", "parse_stat", "yosys_command",
           "merge_identical_modules", "yosys_version", "METHODS", "cost_in_shell",
           "synthesized_part"]

#: ``per-module``: each replicated module synthesized once and counted once per
#: instance, the rest flat (:func:`estimate_by_module`); ``flat``: the whole
#: design flattened and optimised across module boundaries.
METHODS = ("per-module", "flat")

_INSTALL_HINT = ("apt-get install yosys (Debian's yosys 0.23 runs synth_xilinx -family xcup; "
                 "'make yosys' does it as root)")


@dataclass(frozen=True)
class Resources:
    lut: int          # logic LUTs (LUT1..LUT6)
    lutram: int       # LUTs used as distributed RAM or shift registers
    ff: int
    dsp: int          # DSP48E2
    bram36: float     # RAMB36E2, with a RAMB18E2 counted as half
    carry: int        # carry-chain cells (CARRY8; Yosys 0.23 writes CARRY4)

    def as_dict(self):
        return {"lut": self.lut, "lutram": self.lutram, "ff": self.ff, "dsp": self.dsp,
                "bram36": self.bram36, "carry": self.carry}


_LUTRAM_CELLS = {"RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
                 "RAM32M": 4, "RAM32M16": 8, "RAM64M": 4, "RAM64M8": 8, "RAM32X1S": 1,
                 "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM512X1S": 8, "SRL16E": 1,
                 "SRLC32E": 1}


def _count(cells, names):
    return sum(count for name, count in cells.items() if name in names)


_MODULE = re.compile(r"^module (\\\S+ |\w+)\s*\(.*?^endmodule\n", re.M | re.S)
_IDENTIFIER = re.compile(r"\\\S+ |[A-Za-z_][\w$]*")


def _modules(verilog):
    """``{name: text}`` of every module in ``verilog`` (escaped names keep their space)."""
    return {match[1]: match[0] for match in _MODULE.finditer(verilog)}


def _children(bodies, name):
    """The modules ``name`` instantiates, once per instance."""
    return [token[0] for token in _IDENTIFIER.finditer(bodies[name])
            if token[0] in bodies and token[0] != name]


def merge_identical_modules(verilog):
    """``verilog`` with every set of identical modules reduced to one definition.

    Amaranth writes one module per instance (256 PEs are 256 modules that
    differ only in name). Two modules are identical when their texts are
    equal after their own name and the names of the modules they instantiate
    are replaced by those modules' identities (so identity is decided
    bottom-up), and Yosys' globally numbered ``$auto$`` names by their order
    of appearance. Instances then name the first module of their set.

    Returns
    -------
    text : str
    instances : dict
        Instances of each remaining module in the whole design.
    """
    bodies = _modules(verilog)
    children = {name: _children(bodies, name) for name in bodies}
    identity, first_of = {}, {}

    def identify(name):
        if name not in identity:
            generated = {}

            def canonical(token):
                if token[0] == name:
                    return "<self>"
                if token[0].startswith("\\$auto$"):          # Yosys' global counter
                    return generated.setdefault(token[0], f"<auto {len(generated)}>")
                return f"<{identify(token[0])}>" if token[0] in bodies else token[0]
            identity[name] = first_of.setdefault(_IDENTIFIER.sub(canonical, bodies[name]), name)
        return identity[name]

    kept = []
    for name, body in bodies.items():
        if identify(name) == name:
            kept.append(_IDENTIFIER.sub(
                lambda token: token[0] if token[0] == name else identity.get(token[0], token[0]),
                body))
    instances = dict.fromkeys(first_of.values(), 0)

    def count(name):
        instances[identity[name]] += 1
        for child in children[name]:
            count(child)

    instantiated = {child for names in children.values() for child in names}
    for top in bodies.keys() - instantiated:
        count(top)
    return "".join(kept), instances


def estimate(verilog, top, *, method="per-module"):
    """Synthesize ``verilog`` (module ``top``) for UltraScale+ and count its cells.

    ``method`` is one of :data:`METHODS`; ``per-module`` first merges
    identical modules (:func:`merge_identical_modules`).

    Raises
    ------
    vitforge.errors.ToolchainError
        If Yosys is not installed (the message says how to install it), or
        synthesis fails (the message ends with Yosys' last lines).
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if method == "flat":
        return parse_stat(_synthesize(verilog, top, flatten=True)[0])
    return estimate_by_module(verilog, top)[0]


def cost_in_shell(parts, shell, top, log=print):
    """What the components ``parts`` (name -> component) of ``shell`` cost, each synthesized
    flat, against the per-module estimate of the whole ``shell`` (top module ``top``).

    Returns
    -------
    dict
        ``total`` (the shell), ``parts`` (each part), ``added`` (the parts summed, per
        resource) and ``share_over_rest`` (``added`` over the rest of the shell).
    """
    from vitforge.hw.verilog import to_verilog

    estimates = {name: estimate(to_verilog(component, name, synthesis=True), name,
                                method="flat") for name, component in parts.items()}
    total, _ = estimate_by_module(to_verilog(shell, top, synthesis=True), top)
    keys = ("lut", "ff", "dsp", "bram36")
    added = {key: sum(getattr(part, key) for part in estimates.values()) for key in keys}
    share = {key: round(added[key] / max(getattr(total, key) - added[key], 1), 4)
             for key in keys}
    log(f"shell {total}; {', '.join(parts)} {added}, +{share} over the rest")
    return {"total": total.as_dict(),
            "parts": {name: part.as_dict() for name, part in estimates.items()},
            "added": added, "share_over_rest": share}


def estimate_by_module(verilog, top, *, depth=False):
    """The ``per-module`` estimate, and what each part costs.

    Identical modules are merged (:func:`merge_identical_modules`); every
    module with more than one instance is synthesized once on its own (with
    the other replicated modules as black boxes) and counted once per
    instance; the rest of the design is synthesized flat around black boxes,
    so the logic that exists once keeps its cross-module optimisation.

    With ``depth``, the same synthesis of each part also gives its slowest
    register-to-register path (:func:`vitforge.sw.timing.longest_path`; a
    path is cut at the boundary of a replicated module).

    Each part's result is cached by the hash of its Verilog, the black boxes
    and the Yosys version (:func:`synthesized_part`), so a PE that another
    design already had costs no synthesis.

    Returns
    -------
    total : Resources
    parts : dict
        ``{module: (instances, Resources of one instance)}``; ``top`` stands for
        everything that is not replicated.
    depths : dict
        Only with ``depth``: ``{module: PathDepth}``, for the modules of ``parts``.
    """
    merged, instances = merge_identical_modules(verilog)
    bodies = _modules(merged)
    replicated = [name for name, count in instances.items() if count > 1]
    plain = {name: name.strip().lstrip("\\") for name in bodies}
    depths = {}
    version = yosys_version()

    def synthesize(text, name, boxes):
        resources, depths[name] = synthesized_part(text, name, boxes, depth=depth,
                                                   version=version)
        return resources

    parts = {top: (1, synthesize(merged, top, [plain[name] for name in replicated]))}
    for name in replicated:
        # Only the module and what it instantiates; replicated children are boxes.
        needed, pending = {}, [name]
        while pending:
            module = pending.pop()
            if module not in needed:
                needed[module] = bodies[module]
                pending += [child for child in _children(bodies, module)
                            if child not in replicated]
        boxes = {child for module in needed for child in _children(bodies, module)
                 if child in replicated and child != name}
        text = "".join(needed.values()) + "".join(bodies[box] for box in boxes)
        parts[plain[name]] = (instances[name], synthesize(text, plain[name],
                                                          [plain[box] for box in boxes]))
    total = Resources(**{field.name: sum(count * getattr(part, field.name)
                                         for count, part in parts.values())
                         for field in fields(Resources)})
    return (total, parts, depths) if depth else (total, parts)


def synthesized_part(verilog, top, black_boxes, *, depth=False, version=None):
    """:class:`Resources` of module ``top`` of ``verilog`` synthesized flat around
    ``black_boxes``, and with ``depth`` its :class:`~vitforge.sw.timing.PathDepth` (else
    ``None``).

    Results are kept in the build cache (``yosys/`` under ``$VITFORGE_CACHE``) under the
    SHA-256 of the Verilog, the top, the boxes, ``depth`` and the Yosys ``version``
    (:func:`yosys_version` when not given); a cache that cannot be written only costs the
    synthesis next time.
    """
    from vitforge.errors import OutputError
    from vitforge.sim.runner import cache_root

    version = version or yosys_version()
    key = hashlib.sha256(json.dumps([version, verilog, top, sorted(black_boxes), depth])
                         .encode()).hexdigest()[:24]
    try:
        path = cache_root() / "yosys" / f"{key}.json"
    except OutputError:
        path = None
    cached = _cached_part(path)
    if cached is not None:
        return cached
    log, path_depth = _synthesize(verilog, top, flatten=True, black_boxes=black_boxes,
                                  depth=depth)
    resources = parse_stat(log)
    if path is not None:
        try:
            path.parent.mkdir(exist_ok=True)
            staging = path.with_suffix(f".{os.getpid()}.tmp")
            staging.write_text(json.dumps({
                "resources": resources.as_dict(),
                "depth": None if path_depth is None else asdict(path_depth)}))
            os.replace(staging, path)
        except OSError:
            pass
    return resources, path_depth


def _cached_part(path):
    """:func:`synthesized_part`'s result from cache file ``path``, or ``None`` if there is
    none or it is unreadable (then the part is synthesized again and the file replaced)."""
    from vitforge.sw.timing import PathDepth

    try:
        cached = json.loads(path.read_text())
        depth = cached["depth"]
        return (Resources(**cached["resources"]),
                None if depth is None else PathDepth(**{
                    **depth, "nets": tuple(depth["nets"]),
                    "others": tuple(tuple(other) for other in depth["others"])}))
    except (AttributeError, OSError, ValueError, KeyError, TypeError):
        return None


def yosys_command():
    """The command that runs Yosys (``yosys`` on the ``PATH``), or ``None`` without one."""
    native = shutil.which("yosys")
    return None if native is None else [native]


def yosys_version():
    """The first line of ``yosys -V``, or ``None`` without Yosys."""
    yosys = yosys_command()
    if yosys is None:
        return None
    with tempfile.TemporaryDirectory(prefix="vitforge-yosys-") as scratch:
        output = subprocess.run([*yosys, "-V"], capture_output=True, text=True, cwd=scratch,
                                check=False).stdout
    return output.strip().splitlines()[-1] if output.strip() else None


def _synthesize(verilog, top, *, flatten, black_boxes=(), depth=False):
    """The log of ``synth_xilinx -family xcup`` and ``stat`` on ``verilog``, and with
    ``depth`` the slowest path of the netlist (:func:`vitforge.sw.timing.longest_path`),
    else ``None``."""
    yosys = yosys_command()
    if yosys is None:
        raise ToolchainError(f"yosys not found; install it with: {_INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="vitforge-yosys-") as scratch:
        (Path(scratch) / "design.v").write_text(verilog)
        boxes = "".join(f"blackbox {name}; " for name in black_boxes)
        script = (f"read_verilog design.v; {boxes}"
                  f"synth_xilinx -family xcup{' -flatten' if flatten else ''} -top {top}; "
                  f"stat -top {top}"
                  + ("; write_json netlist.json" if depth else ""))
        completed = subprocess.run([*yosys, "-q", "-p", script, "-l", "log"], cwd=scratch,
                                   capture_output=True, text=True, check=False)
        log = (Path(scratch) / "log").read_text() if (Path(scratch) / "log").exists() else ""
        if completed.returncode != 0:
            tail = "\n".join((completed.stderr or log).splitlines()[-10:])
            raise ToolchainError(f"yosys synth_xilinx of {top} failed:\n{tail}")
        path = None
        if depth:
            from vitforge.sw.timing import longest_path

            with open(Path(scratch) / "netlist.json") as netlist:
                path = longest_path(json.load(netlist), top)
    return log, path


def parse_stat(log):
    """:class:`Resources` from the last ``stat`` report in a Yosys log."""
    # Yosys 0.23 heads the list "Number of cells: N", later versions "N cells".
    heads = [match.start() for match in re.finditer(r"Number of cells|^\s+\d+ cells$", log,
                                                    re.M)]
    start = heads[-1] if heads else -1
    if start < 0:
        raise ToolchainError("Yosys log has no 'stat' report (no 'Number of cells' line)")
    # Yosys 0.23 writes "name count", later versions "count name".
    report = log[start:]
    cells = {name: int(count) for name, count in
             re.findall(r"^\s+([A-Za-z_]\w*)\s+(\d+)\s*$", report, re.M)}
    cells.update({name: int(count) for count, name in
                  re.findall(r"^\s+(\d+)\s+([A-Za-z_]\w*)\s*$", report, re.M)})
    lut = _count(cells, {f"LUT{i}" for i in range(1, 7)})
    lutram = sum(cells.get(name, 0) * luts for name, luts in _LUTRAM_CELLS.items())
    ff = _count(cells, {"FDRE", "FDSE", "FDCE", "FDPE"})
    return Resources(lut=lut, lutram=lutram, ff=ff, dsp=cells.get("DSP48E2", 0),
                     bram36=cells.get("RAMB36E2", 0) + cells.get("RAMB18E2", 0) / 2,
                     carry=cells.get("CARRY8", 0) + cells.get("CARRY4", 0))
