"""The error taxonomy: every class's place and exit status, and who raises which."""

import asyncio
import json
import sys
from types import SimpleNamespace
import zipfile

import numpy as np
import pytest

from vitforge.boards.presets import PRESETS, ShellConfig, load_shell_config
from vitforge.errors import (EXIT_INTERNAL, EXIT_MISMATCH, EXIT_TOOLCHAIN, EXIT_USAGE,
                             ConfigError, ConfigTypeError, OutputError, ProgramError,
                             SimulationError, ToolchainError, UserError, VitforgeError,
                             WatchdogError, exit_status)
from vitforge.hw.checks import check_positive_int
from vitforge.hw.gemm.config import GemmConfig
from vitforge.sim.stream import stream_through
from vitforge.sw.files import atomic_folder, write_atomic
from vitforge.sw.model.quantized_io import load_quantized
from vitforge.sw.model.timm_import import load_timm_checkpoint
from vitforge.sw.model.vit import PRESETS as VIT_PRESETS, random_vit
from vitforge.sw.model.weights import save_vit
from vitforge.sw.runtime.driver import DriverError


@pytest.mark.parametrize("cls, builtin, status", [
    (ConfigError, ValueError, EXIT_USAGE),
    (ConfigTypeError, TypeError, EXIT_USAGE),
    (OutputError, OSError, EXIT_USAGE),
    (SimulationError, RuntimeError, EXIT_MISMATCH),
    (WatchdogError, RuntimeError, EXIT_MISMATCH),
    (DriverError, RuntimeError, EXIT_MISMATCH),
    (ToolchainError, RuntimeError, EXIT_TOOLCHAIN),
    (ProgramError, ValueError, EXIT_INTERNAL),
])
def test_each_error_keeps_its_builtin_base_and_has_its_exit_status(cls, builtin, status):
    error = cls("message")
    assert isinstance(error, VitforgeError) and isinstance(error, builtin)
    assert str(error) == "message"
    assert exit_status(error) == status


def test_user_errors_are_the_bad_input_classes_and_a_program_error_is_a_bug():
    assert {cls for cls in (ConfigError, ConfigTypeError, OutputError, ProgramError,
                            SimulationError, ToolchainError) if issubclass(cls, UserError)} \
        == {ConfigError, ConfigTypeError, OutputError}
    assert issubclass(WatchdogError, SimulationError) and issubclass(DriverError, SimulationError)


@pytest.mark.parametrize("error", [KeyError("x"), ValueError("x"), TypeError("x"), OSError("x"),
                                   VitforgeError("x")])
def test_anything_else_is_an_internal_error(error):
    assert exit_status(error) == EXIT_INTERNAL


def test_a_stream_watchdog_raises_a_simulation_error():
    class SilentPins:
        """A sink that never offers a beat."""

        def set(self, path, value):
            pass

        def get(self, path):
            return 0

        async def settle(self):
            pass

        async def tick(self):
            pass

    with pytest.raises(SimulationError, match=r"^stream o gave 0 of 1 beats within 5 cycles$") \
            as raised:
        asyncio.run(stream_through(SilentPins(), [], 1, max_cycles=5))
    assert type(raised.value) is WatchdogError


def test_parameter_checks_raise_config_errors():
    with pytest.raises(ConfigTypeError, match=r"^rows must be an integer, not 2\.0$"):
        check_positive_int("rows", 2.0)
    with pytest.raises(ConfigError, match=r"^rows must be a positive integer, not 0$"):
        check_positive_int("rows", 0)
    with pytest.raises(ConfigError, match=r"^acc_width must be at most 32, not 40$"):
        GemmConfig(acc_width=40)
    with pytest.raises(ConfigTypeError, match=r"^GEMM config must be a mapping, not \[\]$"):
        GemmConfig.from_dict([])
    with pytest.raises(ConfigTypeError, match=r"^accelerator must be an AcceleratorConfig, "
                                              r"not dict$"):
        ShellConfig(accelerator={})


def test_unreadable_config_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"^config file '.*' cannot be read \(Is a directory\)$"):
        load_shell_config(tmp_path)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match=r"^config file '.*binary\.json' is not text: "):
        load_shell_config(binary)
    wrong_type = tmp_path / "wrong_type.json"
    values = PRESETS["small"].to_dict()
    values["accelerator"]["array"] = "big"
    wrong_type.write_text(json.dumps(values))
    with pytest.raises(ConfigTypeError, match=r"^array must be an integer, not 'big'$"):
        load_shell_config(wrong_type)


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "m.npz"
    save_vit(path, random_vit(VIT_PRESETS["tiny"], np.random.default_rng(0)))
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def test_malformed_int8_model_files_are_config_errors(tmp_path, weights):
    """The int8 loader's answers; the float loader's, through the command line, are cases of
    ``tests/sw/test_bad_inputs.py``."""
    np.save(tmp_path / "array.npy", np.zeros(3))
    np.savez(tmp_path / "meta.npz", **{**weights, "meta": np.array("{not json")})
    with pytest.raises(ConfigError, match=r"array\.npy is not a vitforge quantized model file"):
        load_quantized(tmp_path / "array.npy")
    with pytest.raises(ConfigError, match=r"meta\.npz has a 'meta' entry that is not JSON"):
        load_quantized(tmp_path / "meta.npz")


def test_unreadable_checkpoints_are_config_errors(tmp_path, monkeypatch):
    def load_fails(path, **options):
        raise zipfile.BadZipFile("File is not a zip file\nmore detail")

    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(load=load_fails))
    with pytest.raises(ConfigError, match=r"^.*x\.pth is not a PyTorch checkpoint of tensors "
                                          r"\(File is not a zip file\)$"):
        load_timm_checkpoint(tmp_path / "x.pth")
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(load=lambda path, **options: []))
    with pytest.raises(ConfigError, match=r"^.*x\.pth holds a list, not a state_dict$"):
        load_timm_checkpoint(tmp_path / "x.pth")


def test_unwritable_outputs_are_output_errors(tmp_path):
    with pytest.raises(OutputError, match=r"^cannot write '.*missing/out\.json' "
                                          r"\(No such file or directory\)$") as raised:
        write_atomic(tmp_path / "missing" / "out.json", "{}")
    assert isinstance(raised.value, OSError)
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match=r"^cannot write '.*file/report' \(File exists\)$"):
        with atomic_folder(tmp_path / "file" / "report"):
            pass
    with pytest.raises(OutputError, match=r"^cannot write '.*report' \(No space left on "
                                          r"device\)$"):
        with atomic_folder(tmp_path / "report"):
            raise OSError(28, "No space left on device")
    assert [path.name for path in tmp_path.iterdir()] == ["file"]
