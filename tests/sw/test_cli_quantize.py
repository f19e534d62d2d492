"""``vitforge quantize`` and ``--data`` on the command line."""

import json

import numpy as np
import pytest

from vitforge.sw.model.quantized_io import load_quantized

from test_cli import run


def digits_file(path, count=40):
    from vitforge.sw.model.digits import digits_split

    (_, _), (images, labels) = digits_split()
    np.savez(path, images=images[:count].astype(np.float32), labels=labels[:count])
    return str(path)


def test_quantize_reports_every_activation_and_writes_the_model(tmp_path):
    report, out, summary_path = tmp_path / "report", tmp_path / "q.npz", tmp_path / "s.json"
    completed = run("quantize", "--model", "tiny", "--images", "100", "--report", str(report),
                    "--out", str(out), "--json", str(summary_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "top-1 agreement" in completed.stdout and "lowest SQNR" in completed.stdout
    summary = json.loads(summary_path.read_text())
    assert summary["test_images"] == 100 and summary["calibration_images"] == 200
    assert summary["int8_accuracy"] >= summary["float_accuracy"] - 0.01
    assert summary["top1_agreement"] >= 0.98 and summary["logit_cosine"] > 0.99
    errors = json.loads((report / "errors.json").read_text())
    names = [row["name"] for row in errors["activations"]]
    assert names[0] == "tokens" and names[-2:] == ["norm", "logits"]
    assert len(names) == 3 + 2 * 11                        # two blocks of eleven activations
    for row in errors["activations"]:
        assert row["sqnr_db"] > 10 and 0 <= row["clipped"] < 0.01, row
        assert row["max_error"] >= 0 and row["scale"] > 0
    assert (report / "sqnr.png").stat().st_size > 1000
    model = load_quantized(out)
    assert [block.probability_shift for block in model.blocks] == summary["probability_shifts"]


def test_quantize_on_users_data_says_where_the_images_came_from(tmp_path):
    data = digits_file(tmp_path / "digits.npz")
    summary_path = tmp_path / "s.json"
    completed = run("quantize", "--data", data, "--mean", "0.5", "--std", "0.5",
                    "--observer", "maxabs", "--json", str(summary_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["data"] == f"{data}: 8 calibration, 32 test images"
    assert summary["calibration_images"] == 8 and summary["test_images"] == 32
    assert summary["observer"] == "maxabs"
    completed = run("quantize", "--model", "deit-tiny", "--images", "1",
                    "--json", str(summary_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "random uniform images (no --data given)" in completed.stdout


@pytest.mark.verilator
def test_verify_runs_users_data_bit_exactly(tmp_path):
    data, out = digits_file(tmp_path / "digits.npz", count=20), tmp_path / "v.json"
    completed = run("verify", "--data", data, "--images", "1", "--json", str(out))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = json.loads(out.read_text())
    assert summary["bit_exact"] is True
    assert summary["data"] == f"{data}: 4 calibration, 16 test images"
    assert f"images               {data}" in completed.stdout
