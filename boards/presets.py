"""Hardware presets: everything ``vitforge generate`` builds a bitstream from."""

from dataclasses import asdict, dataclass, fields
import hashlib
import json
from pathlib import Path

from vitforge.errors import ConfigError, ConfigTypeError
from vitforge.hw.accel.config import AcceleratorConfig
from vitforge.hw.axi.burst_master import check_burst_parameters
from vitforge.hw.checks import check_positive_int

__all__ = ["ShellConfig", "PRESETS", "DEFAULT_PRESET", "config_hash", "load_shell_config"]


@dataclass(frozen=True, kw_only=True)
class ShellConfig:
    """The accelerator, its AXI shell and its clock.

    Parameters
    ----------
    accelerator : AcceleratorConfig
    clock_mhz : int
        ``pl_clk0`` in the block design (the estimate of latency and FPS uses it too).
    max_burst, max_outstanding : int
        Of the AXI4 master (:class:`vitforge.hw.axi.burst_master.AxiBurstMaster`).
    address_width : int
        AXI byte-address width of the master.
    """

    accelerator: AcceleratorConfig
    clock_mhz: int = 250
    max_burst: int = 16
    max_outstanding: int = 4
    address_width: int = 40

    def __post_init__(self):
        if not isinstance(self.accelerator, AcceleratorConfig):
            raise ConfigTypeError(f"accelerator must be an AcceleratorConfig, not "
                                  f"{type(self.accelerator).__name__}")
        for field in fields(self)[1:]:
            check_positive_int(field.name, getattr(self, field.name))
        if not 10 <= self.clock_mhz <= 500:
            raise ConfigError(f"clock_mhz must be from 10 to 500, not {self.clock_mhz}")
        check_burst_parameters(self.address_width, self.max_burst, self.max_outstanding)

    def shell(self):
        """The :class:`AcceleratorShell` component."""
        from vitforge.hw.accel.shell import AcceleratorShell

        return AcceleratorShell(self.accelerator, address_width=self.address_width,
                                max_burst=self.max_burst, max_outstanding=self.max_outstanding)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values, where="config"):
        """Build from :meth:`to_dict`'s form.

        Raises
        ------
        vitforge.errors.ConfigError, vitforge.errors.ConfigTypeError
            For unknown or missing keys and values that break a rule; the
            message starts with ``where`` where it is about the mapping.
        """
        if not isinstance(values, dict) or not isinstance(values.get("accelerator"), dict):
            raise ConfigError(f"{where} must be a JSON object with an 'accelerator' object")
        for known, given, what in ((cls, values, where),
                                   (AcceleratorConfig, values["accelerator"],
                                    f"{where}['accelerator']")):
            unknown = set(given) - {field.name for field in fields(known)}
            if unknown:
                raise ConfigError(f"{what} has unknown keys: {', '.join(sorted(unknown))}")
        return cls(**{**values, "accelerator": AcceleratorConfig(**values["accelerator"])})


PRESETS = {
    # Runs the embedded digits model (and random-block tests); builds in seconds.
    "small": ShellConfig(accelerator=AcceleratorConfig(
        array=4, act_depth=4096, wgt_depth=2048, prm_depth=512, lnp_depth=64, k_max=128)),
    # 40x40 output tile, two steps of K per cycle on DSP48E2 cascades (3,200 int8 MACs per
    # cycle on 1,600 DSPs), with scratchpads for DeiT-T and DeiT-S, dense or token-pruned
    # (sized when pruned DeiT-S's plan needed 23,056 ACT words; now 20,274, as dense: its
    # selectors' layers have regions of their own), the ACT sized by liveness in two banks
    # (words 0..16,383 and 16,384..24,575) so that each head's softmax runs beside the next
    # head's GEMM; two activation read ports (the scratchpad twice in block RAM), so that ADD
    # reads a word of each operand per cycle and a softmax finds a tile's maxima during the
    # tile before it. 197 tokens fill 5 tiles of 40 rows (98.5%). Estimate (Yosys), clock
    # evidence and the choice of the array: docs/performance.md, "ZCU102 output".
    "zcu102": ShellConfig(clock_mhz=225, accelerator=AcceleratorConfig(
        array=40, act_depth=24576, wgt_depth=30720, prm_depth=4096, lnp_depth=1024,
        k_max=2048, act_read_ports=2, act_banks=2, macs_per_dsp=2, k_per_cycle=2)),
    # The same with one step of K per cycle (1,600 MACs on 1,600 DSPs, no cascades): the
    # zcu102 preset until the cascade array fitted.
    "zcu102-k1": ShellConfig(clock_mhz=200, accelerator=AcceleratorConfig(
        array=40, act_depth=20480, wgt_depth=30720, prm_depth=4096, lnp_depth=1024,
        k_max=2048, act_read_ports=1, act_banks=2)),
    # The zcu102 preset before issue 13: 32x32 PEs, the ACT sized for every region at once,
    # one ACT bank (instructions one after another but for weight loads).
    "zcu102-32x32": ShellConfig(accelerator=AcceleratorConfig(
        array=32, act_depth=51200, wgt_depth=37376, prm_depth=4096, lnp_depth=1024,
        k_max=2048, act_read_ports=1, act_banks=1)),
}
#: The preset ``generate`` builds, and whose clock ``simulate``, ``verify`` and ``demo`` assume,
#: when no ``--preset`` or ``--config`` is given.
DEFAULT_PRESET = "zcu102"


def config_hash(config):
    """A short fingerprint of ``config``: the same hash means the same hardware and clock.

    The first 12 hex digits of the SHA-256 of :meth:`ShellConfig.to_dict` as
    canonical JSON (sorted keys, no spaces). ``generate`` writes it into
    ``config.json`` and ``simulate``/``verify`` into their JSON, so a run can be
    matched with the design it simulated.

    Parameters
    ----------
    config : ShellConfig

    Returns
    -------
    str
    """
    values = config.to_dict()
    # Fields added later are left out at their defaults, so earlier hashes stay valid.
    for name, default in _LATER_FIELDS.items():
        if values["accelerator"][name] == default:
            del values["accelerator"][name]
    text = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


#: AcceleratorConfig fields newer than config hashes, and their defaults.
_LATER_FIELDS = {"macs_per_dsp": 1, "k_per_cycle": 1}


def load_shell_config(path):
    """A :class:`ShellConfig` from a JSON file (the ``config.json`` generate writes, or by hand).

    The ``board`` key of a generated ``config.json`` is allowed and not part of
    the config (the board is chosen on the command line). Its ``config_hash``
    key, where there is one, must be :func:`config_hash` of the rest.

    Raises
    ------
    vitforge.errors.ConfigError, vitforge.errors.ConfigTypeError
        If the file is missing, unreadable, not JSON or not a valid config, or
        if its ``config_hash`` does not match its contents.
    """
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except OSError as error:
        raise ConfigError(f"config file {str(path)!r} cannot be read ({error.strerror})") \
            from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {str(path)!r} is not text: {error}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"config file {str(path)!r} is not valid JSON: {error}") from None
    given = None
    if isinstance(values, dict):
        values.pop("board", None)
        given = values.pop("config_hash", None)
    config = ShellConfig.from_dict(values, where=f"config file {str(path)!r}")
    if given is not None and given != config_hash(config):
        raise ConfigError(f"config file {str(path)!r} has config_hash {given!r}, but its "
                          f"contents hash to {config_hash(config)!r}: it was edited after "
                          f"generate wrote it; regenerate it or delete config_hash")
    return config
