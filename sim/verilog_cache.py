"""Generated Verilog, cached by design parameters and generator source."""

from dataclasses import dataclass
import hashlib
import os
from pathlib import Path
import tempfile
import time

from .runner import cache_root, warn

__all__ = ["GeneratedVerilog", "cached_verilog"]


@dataclass(frozen=True)
class GeneratedVerilog:
    text: str
    seconds: float      # generation time now; 0.0 when cached
    cached: bool


def _hw_source_digest():
    """Digest of the generator sources, so edited hardware is never served from cache: the
    hardware package, and the simulation package, whose test systems wrap it in components
    of their own (``vitforge.sim.accel.system``)."""
    import amaranth
    from vitforge import hw, sim

    digest = hashlib.sha256(amaranth.__version__.encode())
    for package in (hw, sim):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{package.__name__}/{path.relative_to(root)}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def cached_verilog(toplevel, parameters, make_component, *, log=None, what=None):
    """Verilog of ``make_component()`` as module ``toplevel``, generated once.

    Parameters
    ----------
    toplevel : str
    parameters : str
        Everything the component depends on besides the generator source
        (e.g. its config as JSON); part of the cache key.
    make_component : callable
        Builds the component when the cache does not have it.
    log : callable or None
        Told ``"generating Verilog for <what>"`` before a generation.
    """
    from vitforge.hw.verilog import to_verilog

    key = hashlib.sha256((toplevel + parameters + _hw_source_digest()).encode())
    path = cache_root(writable=False) / "verilog" / f"{toplevel}-{key.hexdigest()[:20]}.v"
    cached = _read_checked(path)
    if cached is not None:
        return GeneratedVerilog(text=cached, seconds=0.0, cached=True)
    if path.exists():
        warn(f"the cached Verilog {path} is damaged (it does not match its checksum); "
             f"generating it again")
    if log:
        log(f"generating Verilog for {what or toplevel}")
    started = time.monotonic()
    text = to_verilog(make_component(), toplevel)
    seconds = time.monotonic() - started
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False,
                                         suffix=".tmp") as out:
            out.write(f"{text}{_CHECKSUM}{hashlib.sha256(text.encode()).hexdigest()}\n")
        os.replace(out.name, path)
    except OSError:
        pass                                # a read-only cache: generated, not kept
    return GeneratedVerilog(text=text, seconds=seconds, cached=False)


#: The last line of a cached file: a Verilog comment with the SHA-256 of the text before it.
_CHECKSUM = "// vitforge-sha256: "


def _read_checked(path):
    """The text of cached Verilog ``path``, or ``None`` if it is missing or damaged."""
    try:
        content = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    text, separator, digest = content.rpartition(_CHECKSUM)
    if not separator or digest.strip() != hashlib.sha256(text.encode()).hexdigest():
        return None
    return text
