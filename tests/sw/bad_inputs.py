"""The catalogue of bad inputs: each refused before any work, with one line and its status.

Each :class:`~bad_input_case.BadInput` is a command line (``vitforge ARGV``), the files it
reads, which it writes into an empty working folder first, and what vitforge must answer: an
exit status and the start of its one-line message. :data:`CASES` is the catalogue: the
command-line arguments of ``bad_input_arguments.py`` and the bad paths and files here.
``tests/sw/test_bad_inputs.py`` runs every case; ``docs/reliability.md`` lists them in the
table :func:`markdown_table` writes.
"""

import functools
import json
from pathlib import Path
import shlex
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bad_input_arguments import ARGUMENT_CASES, MODELS  # noqa: E402
from bad_input_case import (CLASSES, CONFIG, DATA, MODEL, NOTES, OUT, SELECTOR,  # noqa: E402
                            REPLAY, SPACE, SPACES, TMP, USER_FOLDER, Link, case)

__all__ = ["CASES", "CLASSES", "markdown_table", "class_counts"]


@functools.cache
def _weights():
    """The arrays of a random ``tiny`` model as :func:`save_vit` writes them."""
    from vitforge.sw.model.vit import PRESETS, random_vit
    from vitforge.sw.model.weights import save_vit

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.npz"
        save_vit(path, random_vit(PRESETS["tiny"], np.random.default_rng(0)))
        with np.load(path) as archive:
            return {key: archive[key] for key in archive.files}


def _model(**changes):
    """A writer of the random ``tiny`` model with entries replaced (``None``: removed)."""
    def write(path):
        arrays = {**_weights(), **changes}
        with open(path, "wb") as out:
            np.savez(out, **{key: value for key, value in arrays.items() if value is not None})
    return write


def _meta(**changes):
    """:func:`_model` with keys of its JSON ``meta`` replaced."""
    def write(path):
        meta = {**json.loads(str(_weights()["meta"])), **changes}
        _model(meta=np.array(json.dumps(meta)))(path)
    return write


def _damaged(path, cut=False):
    """The random model with a byte in its middle flipped, or cut there."""
    _model()(path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0xFF
    path.write_bytes(bytes(data[:middle] if cut else data))


def _arrays(**arrays):
    """A writer of an ``.npz`` of ``arrays``."""
    def write(path):
        with open(path, "wb") as out:
            np.savez(out, **arrays)
    return write


def _replay(config='{"array": 4}', image=np.zeros(64, np.uint8)):
    """A writer of a replay file (``vitforge.sim.replay``); by default four words of NOPs."""
    return _arrays(image=image, program_addr=0, config=config)


def _npy(path):
    """A plain ``.npy`` array, not an archive."""
    with open(path, "wb") as out:
        np.save(out, np.zeros(3))


def _safetensors(**tensors):
    """A writer of a ``.safetensors`` file of ``tensors``."""
    def write(path):
        from safetensors.numpy import save_file

        save_file(tensors, str(path))
    return write


def _images(count, dtype=np.float32, size=8):
    """``count`` random images of the ``tiny`` model's shape."""
    return np.random.default_rng(0).uniform(0, 1, (count, 1, size, size)).astype(dtype)


def _with_nan(images):
    """``images`` with one pixel NaN."""
    images = images.copy()
    images.flat[5] = np.nan
    return images


def _config(**changes):
    """The ``small`` preset's config as JSON text, with top-level or accelerator keys changed."""
    from vitforge.boards.presets import PRESETS

    values = PRESETS["small"].to_dict()
    for key, value in changes.items():
        if key in values["accelerator"]:
            values["accelerator"][key] = value
        else:
            values[key] = value
    return json.dumps(values)


def _explored(path):
    """A folder ``explore`` made for another model."""
    path.mkdir()
    (path / "explore.json").write_text(json.dumps({"model": "deit-tiny"}))


FILE_CASES = [
    # Output paths.
    case("gemm-json-missing-folder", OUT, "gemm --rows 4 --cols 4 --json missing/out.json",
         "a JSON file in a folder that does not exist",
         f"output folder must exist, not '{TMP}/missing'"),
    case("gemm-json-folder", OUT, "gemm --rows 4 --cols 4 --json out.json",
         "a JSON file that is a folder", "cannot write 'out.json' (Is a directory)",
         files=(("out.json/", None),)),
    case("nonlinear-json-missing-folder", OUT, "nonlinear --op gelu --json missing/x.json",
         "a JSON file in a folder that does not exist",
         f"output folder must exist, not '{TMP}/missing'"),
    case("block-json-file-as-folder", OUT, "block --json notes.txt/x.json",
         "a JSON file below a file", f"output folder must exist, not '{TMP}/notes.txt'",
         files=NOTES),
    case("verify-json-missing-folder", OUT, "verify --json missing/v.json",
         "a JSON file in a folder that does not exist",
         f"output folder must exist, not '{TMP}/missing'"),
    case("simulate-waves-missing-folder", OUT, "simulate --waves missing/w.vcd",
         "a VCD file in a folder that does not exist",
         f"output folder must exist, not '{TMP}/missing'"),
    case("prune-out-missing-folder", OUT, "prune --sparsity 0.5 --out missing/x.npz",
         "a model file in a folder that does not exist",
         f"output folder must exist, not '{TMP}/missing'"),
    case("prune-out-folder", OUT, "prune --sparsity 0.5 --out user",
         "a model file that is a user's folder", "cannot write 'user' (Is a directory)",
         files=USER_FOLDER),
    case("quantize-out-missing-folder", OUT, "quantize --out missing/q.npz",
         "a model file in a folder that does not exist",
         f"output folder must exist, not '{TMP}/missing'"),
    case("quantize-json-missing-folder", OUT, "quantize --json missing/q.json",
         "a JSON file in a folder that does not exist",
         f"output folder must exist, not '{TMP}/missing'"),
    case("generate-out-user-folder", OUT, "generate --preset small --no-resources --out user",
         "a folder vitforge did not write", "'user' is a folder vitforge did not write",
         files=USER_FOLDER),
    case("generate-out-file", OUT, "generate --preset small --no-resources --out notes.txt",
         "a file", "out must be a folder, not the file 'notes.txt'", files=NOTES),
    case("generate-out-below-file", OUT,
         "generate --preset small --no-resources --out notes.txt/sub",
         "a folder below a file",
         "out must be a folder that can be created, not 'notes.txt/sub' (File exists)",
         files=NOTES),
    case("generate-out-link", OUT, "generate --preset small --no-resources --out link",
         "a symbolic link to a folder", "'link' is a symbolic link; vitforge does not replace "
                                        "links", files=(("made/", None), ("link", Link("made")))),
    case("generate-out-here", OUT, "generate --preset small --no-resources --out . --force",
         "the current folder, even with --force", "'.' is the current folder or holds it",
         files=NOTES),
    case("generate-out-empty", OUT, "generate --preset small --no-resources --out ''",
         "an empty path: the current folder", "'.' is the current folder or holds it",
         files=NOTES),
    case("verify-waves-folder", OUT, "verify --waves user", "a VCD file that is a folder",
         "cannot write 'user' (Is a directory)", files=USER_FOLDER),
    case("generate-out-parent", OUT, "generate --preset small --no-resources --out .. --force",
         "a folder that holds the current one", "'..' is the current folder or holds it"),
    case("demo-out-user-folder", OUT, "demo --images 1 --out user",
         "a folder vitforge did not write", "'user' is a folder vitforge did not write",
         files=USER_FOLDER),
    case("demo-out-file", OUT, "demo --images 1 --out notes.txt", "a file",
         "out must be a folder, not the file 'notes.txt'", files=NOTES),
    case("demo-out-here", OUT, "demo --images 1 --out .", "the current folder",
         "'.' is the current folder or holds it", files=NOTES),
    case("quantize-report-user-folder", OUT, "quantize --images 1 --report user",
         "a folder vitforge did not write", "'user' is a folder vitforge did not write",
         files=USER_FOLDER),
    case("quantize-report-file", OUT, "quantize --images 1 --report notes.txt", "a file",
         "out must be a folder, not the file 'notes.txt'", files=NOTES),
    case("quantize-report-link", OUT, "quantize --images 1 --report link --force",
         "a symbolic link, even with --force",
         "'link' is a symbolic link; vitforge does not replace links",
         files=(("made/", None), ("link", Link("made")))),
    case("explore-out-file", OUT, "explore --space space.json --out notes.txt", "a file",
         "--out notes.txt exists and is not a folder", files=SPACE + NOTES),
    case("explore-out-user-folder", OUT, "explore --space space.json --out user",
         "a folder explore did not create",
         "--out user is a folder that vitforge explore did not create",
         files=SPACE + USER_FOLDER),
    case("explore-out-other-study", OUT, "explore --space space.json --out o",
         "a folder that holds another model's exploration",
         "--out o holds an exploration with another ", files=SPACE + (("o", _explored),)),
    case("farm-out-user-folder", OUT, "verify --seeds 0..1 --out user",
         "a folder vitforge did not write", "'user' is a folder vitforge did not write",
         files=USER_FOLDER),
    case("farm-out-file", OUT, "verify --seeds 0..1 --out notes.txt", "a file",
         "'notes.txt' is a file, not an output folder", files=NOTES),

    # Hardware config files.
    case("config-missing", CONFIG, "simulate --config missing.json", "no such file",
         "config file 'missing.json' does not exist"),
    case("generate-config-missing", CONFIG, "generate --config missing.json --out x",
         "no such file", "config file 'missing.json' does not exist"),
    case("config-folder", CONFIG, "generate --config folder.json --out x", "a folder",
         "config file 'folder.json' cannot be read (Is a directory)",
         files=(("folder.json/", None),)),
    case("config-binary", CONFIG, "verify --config c.json", "not text",
         "config file 'c.json' is not text: ", files=(("c.json", b"\xff\xfe\x00"),)),
    case("config-empty", CONFIG, "verify --config c.json", "an empty file",
         "config file 'c.json' is not valid JSON: ", files=(("c.json", ""),)),
    case("config-not-json", CONFIG, "generate --config c.json --out x", "not JSON",
         "config file 'c.json' is not valid JSON: ", files=(("c.json", "array = 4"),)),
    case("config-list", CONFIG, "simulate --config c.json", "a JSON list",
         "config file 'c.json' must be a JSON object with an 'accelerator' object",
         files=(("c.json", "[4, 4]"),)),
    case("config-unknown-key", CONFIG, "generate --config c.json --out x", "an unknown key",
         "config file 'c.json' has unknown keys: lanes",
         files=(("c.json", lambda path: path.write_text(_config(lanes=3))),)),
    case("config-accelerator-key", CONFIG, "simulate --config c.json",
         "an unknown accelerator key",
         "config file 'c.json'['accelerator'] has unknown keys: rows",
         files=(("c.json", '{"accelerator": {"array": 4, "rows": 4}}'),)),
    case("config-no-accelerator", CONFIG, "verify --config c.json", "no accelerator",
         "config file 'c.json' must be a JSON object with an 'accelerator' object",
         files=(("c.json", '{"clock_mhz": 100}'),)),
    case("config-null", CONFIG, "simulate --config c.json", "a null array size",
         "array must be an integer, not None",
         files=(("c.json", '{"accelerator": {"array": null}}'),)),
    case("config-float-depth", CONFIG, "generate --config c.json --out x",
         "a depth written as a float", "act_depth must be an integer, not 1000000000.0",
         files=(("c.json", '{"accelerator": {"array": 4, "act_depth": 1e9}}'),)),
    case("config-depth-unaddressable", CONFIG, "verify --config c.json",
         "a depth beyond what instructions address",
         "act_depth must be at most 1048576 (what the instruction fields reach), not "
         "99999999999",
         files=(("c.json", '{"accelerator": {"array": 4, "act_depth": 99999999999}}'),)),
    case("config-macs-per-dsp", CONFIG, "generate --config c.json --out x",
         "three MACs per DSP", "macs_per_dsp must be 1 or 2, not 3",
         files=(("c.json", '{"accelerator": {"array": 4, "macs_per_dsp": 3}}'),)),
    case("config-act-banks", CONFIG, "simulate --config c.json", "three ACT banks",
         "act_banks must be 1 or 2, not 3",
         files=(("c.json", '{"accelerator": {"array": 4, "act_banks": 3}}'),)),
    case("config-address-width", CONFIG, "generate --config c.json --out x",
         "100-bit AXI addresses", "address_width must be at most 64 (AXI4 addresses have at "
         "most 64 bits), not 100",
         files=(("c.json", '{"accelerator": {"array": 4}, "address_width": 100}'),)),
    case("config-burst-zero", CONFIG, "simulate --config c.json", "empty AXI bursts",
         "max_burst must be a positive integer, not 0",
         files=(("c.json", '{"accelerator": {"array": 4}, "max_burst": 0}'),)),
    case("config-model-does-not-fit", CONFIG, "simulate --config c.json",
         "a k_max below the model's channels",
         "model tiny does not fit the 4x4 accelerator: dim 32 exceeds k_max=16",
         files=(("c.json", lambda path: path.write_text(_config(k_max=16))),)),
    case("explore-config-missing", CONFIG,
         "explore --config missing.json --space space.json --out o", "no such file",
         "config file 'missing.json' does not exist", files=SPACE),
    case("config-wrong-type", CONFIG, "generate --config c.json --out x", "a text array size",
         "array must be an integer, not 'big'",
         files=(("c.json", lambda path: path.write_text(_config(array="big"))),)),
    case("config-array-zero", CONFIG, "generate --config c.json --out x", "no PEs",
         "array must be a positive integer, not 0",
         files=(("c.json", lambda path: path.write_text(_config(array=0))),)),
    case("config-clock", CONFIG, "simulate --config c.json", "a 1 GHz clock",
         "clock_mhz must be from 10 to 500, not 1000",
         files=(("c.json", lambda path: path.write_text(_config(clock_mhz=1000))),)),
    case("config-hash", CONFIG, "generate --config c.json --out x",
         "edited after generate wrote it", "config file 'c.json' has config_hash 'abc', but",
         files=(("c.json", lambda path: path.write_text(_config(config_hash="abc"))),)),

    # Model files (--model).
    case("model-missing-file", MODEL, "simulate --model missing.npz", "no such file",
         f"model must be one of {MODELS}, not 'missing.npz'"),
    case("model-text", MODEL, "verify --model text.npz", "a text file",
         "text.npz is not a vitforge model file (", files=(("text.npz", "not a model"),)),
    case("model-empty-file", MODEL, "quantize --model empty.npz", "an empty file",
         "empty.npz is not a vitforge model file (", files=(("empty.npz", b""),)),
    case("model-npy", MODEL, "simulate --model array.npy", "a plain .npy array",
         "array.npy is not a vitforge model file (", files=(("array.npy", _npy),)),
    case("model-broken-zip", MODEL, "verify --model broken.npz", "a zip header and nothing",
         "broken.npz is not a vitforge model file (",
         files=(("broken.npz", b"PK\x03\x04" + b"\0" * 40),)),
    case("model-truncated", MODEL, "quantize --model cut.npz", "cut in the middle",
         "cut.npz is not a vitforge model file (",
         files=(("cut.npz", lambda path: _damaged(path, cut=True)),)),
    case("model-bad-crc", MODEL, "simulate --model crc.npz", "a flipped byte",
         "crc.npz is not a vitforge model file (Bad CRC-32",
         files=(("crc.npz", _damaged),)),
    case("model-folder", MODEL, "verify --model folder.npz", "a folder",
         "folder.npz is not a vitforge model file (", files=(("folder.npz/", None),)),
    case("model-empty-archive", MODEL, "quantize --model empty.npz", "an archive of nothing",
         "empty.npz has no 'meta' entry: not a vitforge model file",
         files=(("empty.npz", _arrays()),)),
    case("model-meta-not-json", MODEL, "verify --model meta.npz", "meta that is not JSON",
         "meta.npz has a 'meta' entry that is not JSON (",
         files=(("meta.npz", _model(meta=np.array("{not json"))),)),
    case("model-meta-list", MODEL, "verify --model list.npz", "meta that is a JSON list",
         "list.npz has a 'meta' entry that is a JSON list, not an object",
         files=(("list.npz", _model(meta=np.array("[1, 2]"))),)),
    case("model-format", MODEL, "simulate --model format.npz", "another file format",
         "format.npz has format 'vitforge-int8-vit-9', expected ",
         files=(("format.npz", _meta(format="vitforge-int8-vit-9")),)),
    case("model-shape", MODEL, "quantize --model shape.npz", "a shape without its sizes",
         "shape.npz has no valid model shape in 'meta' (",
         files=(("shape.npz", _meta(shape={"dim": 32})),)),
    case("model-missing-key", MODEL, "verify --model key.npz", "a weight left out",
         "key.npz: key 'head_bias' is missing (expected shape ",
         files=(("key.npz", _model(head_bias=None)),)),
    case("model-extra-key", MODEL, "verify --model extra.npz", "an unknown weight",
         "extra.npz: unexpected key 'bonus' for a model of shape ",
         files=(("extra.npz", _model(bonus=np.zeros(2, np.float32))),)),
    case("model-wrong-shape", MODEL, "simulate --model wide.npz", "a weight of another shape",
         "wide.npz: key 'head_bias' has shape (11,), expected (10,)",
         files=(("wide.npz", _model(head_bias=np.zeros(11, np.float32))),)),
    case("model-nan", MODEL, "verify --model nan.npz", "NaN weights",
         "nan.npz: key 'head_bias' has values that are not finite",
         files=(("nan.npz", _model(head_bias=np.full(10, np.nan, np.float32))),)),
    case("model-inf", MODEL, "prune --model inf.npz --sparsity 0.5 --out x.npz",
         "infinite weights", "inf.npz: key 'head_bias' has values that are not finite",
         files=(("inf.npz", _model(head_bias=np.full(10, np.inf, np.float32))),)),
    case("model-pickle", MODEL, "verify --model pickle.npz", "a pickled object",
         "pickle.npz is not a vitforge model file (Object arrays cannot be loaded when "
         "allow_pickle=False)",
         files=(("pickle.npz", _model(extra=np.array([{}], dtype=object))),)),
    case("model-sparsity-meta", MODEL, "simulate --model hp.npz", "HP patterns of no layer",
         "hp.npz: 'sparsity' in 'meta' must map layers to pattern sizes, not [1]",
         files=(("hp.npz", _meta(sparsity=[1])),)),
    case("model-hp-pattern", MODEL, "verify --model hp.npz", "an HP pattern without sizes",
         "hp.npz: layer blocks.0.qkv: bad HP pattern (no ",
         files=(("hp.npz", _meta(sparsity={"blocks.0.qkv": {}})),)),
    case("model-safetensors-distilled", MODEL, "quantize --model d.safetensors",
         "a distilled DeiT", "state_dict is a distilled DeiT (dist_token): ",
         files=(("d.safetensors", _safetensors(dist_token=np.zeros((1, 1, 8), np.float32))),)),
    case("model-data-file", MODEL, "verify --model data.npz", "a data file given as model",
         "data.npz has no 'meta' entry: not a vitforge model file; it holds 'images': pass "
         "a data file as --data", files=(("data.npz", _arrays(images=_images(4))),)),
    case("model-safetensors-garbage", MODEL, "verify --model m.safetensors",
         "a .safetensors file of text", "m.safetensors is not a safetensors file (",
         files=(("m.safetensors", "not tensors"),)),
    case("model-safetensors-keys", MODEL, "simulate --model m.safetensors",
         "a checkpoint that is not a ViT", "state_dict has no key ",
         files=(("m.safetensors", _safetensors(weight=np.zeros(3, np.float32))),)),
    case("model-pth-without-torch", MODEL, "verify --model m.pth",
         "a PyTorch checkpoint, PyTorch not installed",
         "reading a PyTorch checkpoint needs PyTorch: pip install", status=3,
         files=(("m.pth", b"PK\x03\x04"),), hidden=("torch",)),
    case("explore-model-missing", MODEL, "explore --model missing.npz --space space.json "
         "--out o", "no such file", f"model must be one of {MODELS}, not 'missing.npz'",
         files=SPACE),
    case("prune-model-text", MODEL, "prune --model text.npz --sparsity 0.5 --out x.npz",
         "a text file", "text.npz is not a vitforge model file (",
         files=(("text.npz", "not a model"),)),

    # Token-selector files (--prune FILE).
    case("selector-missing", SELECTOR, "simulate --prune missing.npz", "no such file",
         "prune must be one of none, default or a selector .npz file, not 'missing.npz'"),
    case("selector-text", SELECTOR, "verify --prune text.npz", "a text file",
         "text.npz is not a vitforge selector file (", files=(("text.npz", "not selectors"),)),
    case("selector-data-file", SELECTOR, "verify --prune d.npz", "a data file",
         "d.npz has no 'meta' entry: not a vitforge selector file; it holds 'images'",
         files=(("d.npz", _arrays(images=_images(4))),)),
    case("selector-model-file", SELECTOR, "simulate --prune m.npz", "a model file",
         "m.npz has format 'vitforge-float-vit-2', expected ", files=(("m.npz", _model()),)),
    case("demo-selector-missing", SELECTOR, "demo --prune missing.npz --out demo",
         "no such file",
         "prune must be one of none, default or a selector .npz file, not 'missing.npz'"),
    case("selector-default-model-file", SELECTOR,
         "verify --model m.npz --prune default", "default selectors for a model file",
         "prune default has selectors only for the embedded tiny model and the presets",
         files=(("m.npz", _model()),)),

    # Data files (--data, --calibration, --mean, --std).
    case("data-missing", DATA, "verify --data missing.npz", "no such file",
         "data must be an existing .npz file, not 'missing.npz'"),
    case("calibration-missing", DATA, "quantize --data d.npz --calibration missing.npz",
         "no such file", "calibration must be an existing .npz file, not 'missing.npz'",
         files=(("d.npz", _arrays(images=_images(4))),)),
    case("data-options-alone", DATA, "simulate --calibration c.npz --mean 0.5",
         "normalisation without --data", "--calibration, --mean need --data"),
    case("data-folder", DATA, "simulate --data d.npz", "a folder",
         "data must be an existing .npz file, not 'd.npz'", files=(("d.npz/", None),)),
    case("explore-data-missing", DATA, "explore --data missing.npz --space space.json --out o",
         "no such file", "data must be an existing .npz file, not 'missing.npz'",
         files=SPACE),
    case("data-std-alone", DATA, "quantize --std 2", "normalisation without --data",
         "--std need --data"),
    case("data-broken", DATA, "quantize --data broken.npz", "a zip header and nothing",
         "broken.npz is not a data .npz file (", files=(("broken.npz", b"PK\x03\x04 cut"),)),
    case("data-model-file", DATA, "quantize --data m.npz", "a model file given as data",
         "m.npz is a vitforge model file (it has 'meta'): pass it as --model, and images as "
         "--data", files=(("m.npz", _model()),)),
    case("data-no-images", DATA, "verify --data d.npz", "labels without images",
         "d.npz has no 'images' array", files=(("d.npz", _arrays(labels=np.zeros(3, int))),)),
    case("data-extra-key", DATA, "quantize --data d.npz", "an unknown array",
         "d.npz must hold only 'images' and 'labels', not ['extra']",
         files=(("d.npz", _arrays(images=_images(3), extra=np.zeros(1))),)),
    case("data-image-size", DATA, "quantize --data d.npz", "images of another size",
         "d.npz: 'images' must have shape (n, 1, 8, 8) with n >= 1 for this model, not "
         "(3, 1, 4, 8)", files=(("d.npz", _arrays(images=_images(3)[:, :, :4])),)),
    case("data-no-image", DATA, "simulate --data d.npz", "no images at all",
         "d.npz: 'images' must have shape (n, 1, 8, 8) with n >= 1 for this model, not "
         "(0, 1, 8, 8)", files=(("d.npz", _arrays(images=_images(0))),)),
    case("data-integer-images", DATA, "quantize --data d.npz", "integer images",
         "d.npz: 'images' must be floating point, not uint8",
         files=(("d.npz", _arrays(images=_images(3).astype(np.uint8))),)),
    case("data-nan", DATA, "verify --data d.npz", "a NaN pixel",
         "d.npz: 'images' must be finite, not NaN or inf",
         files=(("d.npz", _arrays(images=_with_nan(_images(3)))),)),
    case("data-inf", DATA, "quantize --data d.npz", "an infinite pixel",
         "d.npz: 'images' must be finite, not NaN or inf",
         files=(("d.npz", _arrays(images=np.full((3, 1, 8, 8), np.inf, np.float32))),)),
    case("data-label-count", DATA, "quantize --data d.npz", "fewer labels than images",
         "d.npz: 'labels' must have shape (3,), one per image, not (2,)",
         files=(("d.npz", _arrays(images=_images(3), labels=np.zeros(2, int))),)),
    case("data-float-labels", DATA, "quantize --data d.npz", "labels that are not integers",
         "d.npz: 'labels' must be integers, not float64",
         files=(("d.npz", _arrays(images=_images(3), labels=np.zeros(3))),)),
    case("data-label-range", DATA, "verify --data d.npz", "a label beyond the classes",
         "d.npz: 'labels' must lie in [0, 10), not [0, 10]",
         files=(("d.npz", _arrays(images=_images(3), labels=np.array([0, 10, 2]))),)),
    case("data-negative-label", DATA, "verify --data d.npz", "a negative label",
         "d.npz: 'labels' must lie in [0, 10), not [-1, 2]",
         files=(("d.npz", _arrays(images=_images(3), labels=np.array([0, -1, 2]))),)),
    case("data-one-image", DATA, "quantize --data d.npz",
         "one image, none left to test after calibration",
         "d.npz must hold at least 2 images (calibration and test) without --calibration, "
         "not 1", files=(("d.npz", _arrays(images=_images(1))),)),
    case("data-mean-text", DATA, "quantize --data d.npz --mean 0.5,x", "not numbers",
         "mean must be numbers separated by commas, not '0.5,x'",
         files=(("d.npz", _arrays(images=_images(4))),)),
    case("data-mean-channels", DATA, "quantize --data d.npz --mean 1,2",
         "two values for one channel",
         "mean must be one finite number, not '1,2'",
         files=(("d.npz", _arrays(images=_images(4))),)),
    case("data-std-nan", DATA, "verify --data d.npz --std nan", "NaN",
         "std must be one finite number, not 'nan'",
         files=(("d.npz", _arrays(images=_images(4))),)),
    case("data-std-zero", DATA, "quantize --data d.npz --std 0", "a zero divisor",
         "std must be positive, not '0'", files=(("d.npz", _arrays(images=_images(4))),)),

    # Design spaces (explore --space, verify --configs).
    case("space-missing", SPACES, "explore --space missing.json --out o", "no such file",
         "space missing.json cannot be read: No such file or directory"),
    case("space-folder", SPACES, "explore --space s.json --out o", "a folder",
         "space s.json cannot be read: Is a directory", files=(("s.json/", None),)),
    case("space-binary", SPACES, "explore --space s.json --out o", "not text",
         "space s.json cannot be read: ", files=(("s.json", b"\xff\xfe\x00"),)),
    case("space-empty", SPACES, "explore --space s.json --out o", "an empty file",
         "space s.json is not valid JSON: ", files=(("s.json", ""),)),
    case("space-toml", SPACES, "explore --space s.toml --out o", "malformed TOML",
         "space s.toml is not valid TOML: ", files=(("s.toml", "array = [4, 8"),)),
    case("space-list", SPACES, "explore --space s.json --out o", "a JSON list",
         "space s.json must be a mapping of config fields to lists of values, not list",
         files=(("s.json", "[4, 8]"),)),
    case("space-unknown-key", SPACES, "explore --space s.json --out o", "an unknown field",
         "space s.json: key 'lanes' is not a config field",
         files=(("s.json", '{"lanes": [4]}'),)),
    case("space-empty-values", SPACES, "explore --space s.json --out o", "no values",
         "space s.json: array must be a non-empty list of values, not []",
         files=(("s.json", '{"array": []}'),)),
    case("space-scalar", SPACES, "explore --space s.json --out o", "a value, not a list",
         "space s.json: array must be a non-empty list of values, not 4",
         files=(("s.json", '{"array": 4}'),)),
    case("space-float", SPACES, "explore --space s.json --out o", "a fraction of a PE",
         "space s.json: array values must be integers, not 4.5",
         files=(("s.json", '{"array": [4.5]}'),)),
    case("space-bool", SPACES, "explore --space s.json --out o", "a boolean array size",
         "space s.json: array values must be integers, not True",
         files=(("s.json", '{"array": [true]}'),)),
    case("space-model-sized", SPACES, "explore --space s.json --out o",
         "\"model\" for a field that is not sized to the model",
         "space s.json: array values must be integers, not 'model'",
         files=(("s.json", '{"array": ["model"]}'),)),
    case("space-duplicate", SPACES, "explore --space s.json --out o", "a value twice",
         "space s.json: array lists a value twice: [4, 4]",
         files=(("s.json", '{"array": [4, 4]}'),)),
    case("space-too-many-points", SPACES, "explore --space s.json --out o",
         "more than 100,000 points", "space s.json has 1000000 points, more than 100000",
         files=(("s.json", json.dumps({key: list(range(1, 101)) for key in
                                       ("array", "clock_mhz", "max_burst")})),)),
    case("space-keep", SPACES, "explore --space s.json --out o", "a keep ratio above 1",
         "space s.json: keep values must be \"none\" or a list of ratios in (0, 1]",
         files=(("s.json", '{"keep": [[1.5]]}'),)),
    case("space-sparsity", SPACES, "explore --space s.json --out o", "all weights pruned",
         "space s.json: sparsity values must be numbers in [0, 1), not 1",
         files=(("s.json", '{"sparsity": [1]}'),)),
    case("farm-configs-missing", SPACES, "verify --seeds 0..1 --configs missing.json",
         "no such file", "space missing.json cannot be read: No such file or directory"),
    case("farm-configs-toml", SPACES, "verify --seeds 0..1 --configs s.toml --out f",
         "malformed TOML", "space s.toml is not valid TOML: ",
         files=(("s.toml", "array = 4 8"),)),
    case("farm-configs-invalid-point", SPACES, "verify --seeds 0..1 --configs s.json --out f",
         "a config that breaks a rule", "configs s.json: point {'array': 0}: ",
         files=(("s.json", '{"array": [0]}'),)),

    # Replay files (vitforge replay FILE).
    case("replay-no-file", REPLAY, "replay", "no file",
         "the following arguments are required: file"),
    case("replay-missing", REPLAY, "replay missing.npz", "no such file",
         "missing.npz is not a readable replay file: [Errno 2] No such file or directory"),
    case("replay-model-file", REPLAY, "replay m.npz", "a model file",
         "m.npz is not a replay file: it lacks ['config', 'image', 'program_addr']",
         files=(("m.npz", _model()),)),
    case("replay-broken", REPLAY, "replay r.npz", "a zip header and nothing",
         "r.npz is not a readable replay file: ", files=(("r.npz", b"PK\x03\x04 cut"),)),
    case("replay-config-list", REPLAY, "replay r.npz", "a config that is a JSON list",
         "r.npz: config must be a JSON object, not [4]",
         files=(("r.npz", _replay(config="[4]")),)),
    case("replay-config-invalid", REPLAY, "replay r.npz", "an array of 0 PEs",
         "array must be a positive integer, not 0",
         files=(("r.npz", _replay(config='{"array": 0}')),)),
    case("replay-image-ragged", REPLAY, "replay r.npz", "an image of 17 bytes",
         "r.npz: image must be bytes in whole 16-byte words",
         files=(("r.npz", _replay(image=np.zeros(17, np.uint8))),)),
    case("replay-no-done", REPLAY, "replay r.npz", "a program without DONE",
         "r.npz: the golden interpreter refuses the program: instruction 2: program runs "
         "past the image without DONE", files=(("r.npz", _replay()),)),
]

#: Every catalogued bad input.
CASES = ARGUMENT_CASES + FILE_CASES



def markdown_table(cases=CASES):
    """The table of ``docs/reliability.md`` listing ``cases``, one row each, as text."""
    def cell(text):
        return text.replace("|", "\\|")

    rows = ["| id | class | command | what is wrong | exit | message starts |",
            "| --- | --- | --- | --- | ---: | --- |"]
    for item in cases:
        command = shlex.join(("vitforge", *item.argv))
        rows.append(f"| `{item.id}` | {item.kind} | `{cell(command)}` | {cell(item.wrong)} | "
                    f"{item.status} | `{cell(item.message)}` |")
    return "\n".join(rows) + "\n"


def class_counts(cases=CASES):
    """``{class: number of cases}``, in :data:`CLASSES` order."""
    return {kind: sum(item.kind == kind for item in cases) for kind in CLASSES}
