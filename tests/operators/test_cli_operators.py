"""CLI for operator learning: pdejax data, pdejax solve burgers1d|darcy --method fno|deeponet|multionet."""

import json

import numpy as np
import pytest

from pdejax import operators as O
from pdejax.cli import OPERATOR_DATASETS, main

TINY = ["--epochs", "4", "--width", "8", "--depth", "2", "--batch", "4", "--no-progress"]


def test_cli_names_the_library_datasets():
    assert set(OPERATOR_DATASETS) == set(O.DATASETS)


def test_data_then_solve_each_method_writes_metrics_plots_and_resumes(tmp_path, capsys):
    data = tmp_path / "burgers.npz"
    assert main(["data", "burgers1d", "--n", "24", "--resolution", "32", "--out", str(data), "--no-progress"]) == 0
    assert O.load_dataset(data).inputs.shape == (24, 1, 32)
    for method in ("fno", "deeponet", "multionet"):
        out = tmp_path / method
        extra = ["--modes", "4"] if method == "fno" else []
        args = ["solve", "burgers1d", "--method", method, "--data", str(data), "--n-train", "16", "--n-test", "8"]
        assert main([*args, "--out", str(out), *TINY, *extra]) == 0, method
        m = json.loads((out / "metrics.json").read_text())
        assert m["method"] == method and m["epochs"] == 4 and 0 < m["test_rel_l2"] < 10
        assert m["settings"]["n_train"] == 16 and len(m["rel_l2_history"]["rel_l2"]) >= 1
        for f in ("solution.png", "loss.png", "checkpoint.npz", "run.json"):
            assert (out / f).stat().st_size > 0
    assert main(["solve", "burgers1d", "--resume", str(tmp_path / "fno"), "--epochs", "6", "--no-progress"]) == 0
    m = json.loads((tmp_path / "fno" / "metrics.json").read_text())
    assert m["epochs"] == 6 and m["rel_l2_history"]["epoch"][-1] == 6


def test_darcy_with_the_physics_loss_and_few_labels(tmp_path):
    out = tmp_path / "pino"
    args = ["solve", "darcy", "--resolution", "17", "--n-train", "8", "--n-test", "4", "--modes", "4"]
    assert main([*args, "--labels", "0.25", "--physics", "1", "--out", str(out), *TINY]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["settings"]["physics_weight"] == 1.0 and m["settings"]["labels"] == 0.25
    assert np.isfinite(m["loss_terms"]["physics"]) and m["loss_terms"]["physics"] > 0
    assert (out / "data.npz").exists()  # generated once, reused on resume


@pytest.mark.parametrize(
    "args, match",
    [
        (["solve", "darcy", "--method", "pinn"], "--method must be one of fno, deeponet, multionet"),
        (["solve", "burgers", "--method", "fno"], "learns an operator: use it with burgers1d or darcy"),
        (["solve", "burgers", "--epochs", "3"], "--epochs: options of operator learning"),
        (["solve", "darcy", "--steps", "3"], "--steps: not options of operator learning"),
        (["solve", "burgers1d", "--physics", "1"], "a physics loss is available for"),
        (["solve", "darcy", "--labels", "2"], r"labels is the fraction .* in \(0, 1\]"),
        (["solve", "darcy", "--method", "deeponet", "--modes", "4"], "modes is a setting of --method fno"),
        (["solve", "darcy", "--devices", "64"], "only 1 device"),
        (["data", "heat", "--n", "2", "--out", "x.npz"], "unknown dataset 'heat'"),
    ],
)
def test_bad_operator_input_gives_one_line(args, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("pdejax: error:")
    assert __import__("re").search(match, err), err


def test_a_dataset_file_with_the_wrong_layout_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, inputs=np.zeros((4, 8)), outputs=np.zeros((4, 8)))
    assert main(["solve", "burgers1d", "--data", str(bad), "--out", str(tmp_path / "o"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "missing coords, name, params" in err and "a pdejax dataset holds inputs, outputs, coords" in err
