"""CLI for operator learning: pdejax data, pdejax solve burgers1d|darcy --method fno|deeponet|multionet."""

import json

import jax
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
        (["solve", "darcy", "--method", "hc"], "--method must be one of fno, deeponet, multionet, pidm$"),
        (["solve", "diffusion_sorption_operator", "--param", "experts=4"], "experts is a setting of --method hc-moe"),
        (["solve", "diffusion_sorption_operator", "--method", "hc-moe", "--param", "experts=1"], "integer >= 2"),
        (
            ["solve", "diffusion_sorption_operator", "--method", "hc", "--param", "nu=1"],
            "the --params of hc on diffusion_sorption_operator are experts, overlap",
        ),
        (["solve", "diffusion_sorption_operator", "--method", "soft", "--basis", "4"], "--basis: not options"),
        (["solve", "diffusion_sorption_operator", "--labels", "0.5"], "physics loss alone"),
        (["solve", "diffusion_sorption_operator", "--param", "overlap=2"], "overlap is a setting of --method hc-moe"),
        (
            [
                "solve",
                "diffusion_sorption_operator",
                "--method",
                "hc-moe",
                "--resolution",
                "16",
                *["--param", "experts=40"],
            ],
            "experts=40 splits 16 grid points",
        ),
        (["compare", "diffusion_sorption_operator", "--methods", "hc", "--steps", "3"], "--steps: PINN options"),
        (["compare", "burgers", "--methods", "adam", "--epochs", "3"], "--epochs: options of operator datasets"),
        (["compare", "burgers1d", "--methods", "fno,hc"], "unknown method 'hc' for burgers1d; choose from fno, "),
        (["compare", "diffusion_sorption_operator", "--methods", "soft", "--basis", "4"], "none is compared"),
        (["compare", "burgers", "--methods", "adam,config", "--constraint-points", "64"], "none is compared"),
        (
            ["compare", "diffusion_sorption_operator", "--methods", "hc", "--param", "overlap=2"],
            "--param overlap is a setting of --method hc-moe, not of hc",
        ),
        (
            ["compare", "diffusion_sorption_operator", "--methods", "hc", "--param", "nu=2"],
            "--param nu: the --params of an operator compare are experts, overlap, ramp, schwarz, passes, order, "
            "damping, ridge, grad_clip, warmup",
        ),
        (["solve", "diffusion_sorption_operator", "--method", "hc", "--param", "ramp=smooth"], "ramp is a setting of"),
        (["solve", "diffusion_sorption_operator", "--method", "soft", "--param", "damping=1"], "damping is a setting"),
        (["solve", "diffusion_sorption_operator", "--method", "hc", "--param", "damping=x"], "a positive number"),
        (["solve", "diffusion_sorption_operator", "--method", "hc", "--param", "damping=0"], "damping must be > 0"),
        (
            ["solve", "diffusion_sorption_operator", "--method", "hc-moe", "--param", "ramp=cosine"],
            "ramp must be one of linear, smooth, smoother",
        ),
        (["solve", "diffusion_sorption_operator", "--method", "hc", "--param", "schwarz=lower"], "schwarz is a"),
        (
            ["solve", "diffusion_sorption_operator", "--method", "hc-moe", "--param", "schwarz=left"],
            "schwarz must be one of none, lower, upper, both",
        ),
        (
            # overlap 0 given: a hard split (the tuned default on this dataset overlaps the blocks)
            "solve diffusion_sorption_operator --method hc-moe --param overlap=0 --param schwarz=lower".split(),
            "schwarz=lower couples overlapping experts: it needs overlap > 0",
        ),
        (
            "solve diffusion_sorption_operator --method hc-moe --param overlap=0 --param passes=2".split(),
            "passes=2 counts Schwarz passes: it needs schwarz=lower, upper or both",
        ),
        (
            ["solve", "diffusion_sorption_operator", "--method", "hc-moe", "--param", "passes=two"],
            "--param passes must be a whole number of Schwarz passes, got 'two'",
        ),
        (
            "solve diffusion_sorption_operator --method hc-moe --param overlap=1 --param schwarz=lower --param "
            "passes=0".split(),
            "passes must be >= 1, got 0",
        ),
        (
            "solve diffusion_sorption_operator --method hc-moe --param overlap=0 --param order=multiplicative".split(),
            "order=multiplicative orders Schwarz passes: it needs schwarz=lower, upper or both",
        ),
        (
            "solve diffusion_sorption_operator --method hc-moe --param overlap=1 --param schwarz=lower --param "
            "order=gauss".split(),
            "order must be one of additive, multiplicative, got 'gauss'",
        ),
        (["solve", "diffusion_sorption_operator", "--method", "hc", "--param", "order=additive"], "order is a setting"),
        (["solve", "diffusion_sorption_operator", "--method", "hc", "--param", "ridge=-1"], "ridge must be >= 0"),
        (["solve", "diffusion_sorption_operator", "--method", "hc", "--param", "ridge=big"], "a number >= 0"),
        (["solve", "diffusion_sorption_operator", "--method", "soft", "--param", "ridge=1e-6"], "ridge is a setting"),
        (["solve", "diffusion_sorption_operator", "--method", "soft", "--param", "grad_clip=-1"], "grad_clip must be"),
        (["solve", "diffusion_sorption_operator", "--method", "hc", "--param", "grad_clip=x"], r"number >= 0 \(0: no"),
        (["solve", "diffusion_sorption_operator", "--method", "hc", "--param", "warmup=1.5"], "a whole number of st"),
        (["solve", "diffusion_sorption_operator", "--method", "hc", "--param", "warmup=-3"], "warmup must be >= 0"),
        (["solve", "diffusion_sorption_operator", "--method", "fno", "--param", "warmup=3"], "--param: not options"),
    ],
)
def test_bad_operator_input_gives_one_line(args, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args + (["--out", "c"] if args[0] == "compare" else [])) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("pdejax: error:")
    assert __import__("re").search(match, err), err


def test_diffusion_sorption_pihc_defaults_are_the_measured_ones_and_given_values_win():
    # the README's best measured settings on this dataset: hc-moe blended over 3/16 of the x grid with a
    # multiplicative Schwarz pass on each block's lower edge; hc and hc-moe at ridge 1e-6; all three clipped at 0.3
    # and warmed up over a tenth of the steps (30 epochs x 256 // 8 batches: 96)
    keys = ("overlap", "schwarz", "order", "ridge", "grad_clip", "warmup")
    pick = lambda s: tuple(s[k] for k in keys)
    ds = "diffusion_sorption_operator"
    assert pick(O.operator_settings(ds, "hc-moe", epochs=30)) == (12.0, "lower", "multiplicative", 1e-6, 0.3, 96)
    assert pick(O.operator_settings(ds, "hc", epochs=30)) == (0.0, "none", "additive", 1e-6, 0.3, 96)
    soft = O.operator_settings(ds, "soft", epochs=10, batch_size=16)
    assert (soft["grad_clip"], soft["warmup"]) == (0.3, 10 * 16 // 10)
    # the overlap scales with the grid; a hard split given turns the pass (and its order) off
    assert O.operator_settings(ds, "hc-moe", resolution=32)["overlap"] == 6.0
    assert pick(O.operator_settings(ds, "hc-moe", overlap=0, epochs=30))[:3] == (0, "none", "additive")
    given = O.operator_settings(ds, "hc-moe", schwarz="upper", ridge=1e-8, grad_clip=0, warmup=0)
    assert pick(given) == (12.0, "upper", "multiplicative", 1e-8, 0, 0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):  # checked before the warmup divides by it
        O.operator_settings(ds, "hc", batch_size=0)
    # Navier-Stokes keeps the plain defaults (no gain measured there)
    assert pick(O.operator_settings("navier_stokes_operator", "hc-moe")) == (0.0, "none", "additive", 1e-8, 0.0, 0)


def test_a_dataset_file_with_the_wrong_layout_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, inputs=np.zeros((4, 8)), outputs=np.zeros((4, 8)))
    assert main(["solve", "burgers1d", "--data", str(bad), "--out", str(tmp_path / "o"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "missing coords, name, params" in err and "a pdejax dataset holds inputs, outputs, coords" in err


def test_physics_only_diffusion_sorption_operators_train_report_their_solves_and_resume(tmp_path):
    # PI-HC's own setting from the CLI: no solution data (labels 0), the physics loss alone, the constraint
    # solves' statistics on the test set in metrics.json
    out = tmp_path / "moe"
    args = ["solve", "diffusion_sorption_operator", "--method", "hc-moe", "--param", "experts=2", "--param",
            "overlap=1", "--param", "ramp=smooth", "--param", "damping=1", "--param", "schwarz=lower", "--param",
            "passes=2", "--param", "order=additive", "--param", "ridge=1e-6", "--param", "grad_clip=0.5",
            "--param", "warmup=2",
            "--n-train", "8", "--n-test", "4", "--resolution", "12", "--basis",
            "4", "--constraint-points",
            "32", "--modes", "3",
            "--out", str(out), *TINY]  # fmt: skip
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert (
        m["settings"]["experts"] == 2
        and m["settings"]["overlap"] == 1.0
        and m["settings"]["ramp"] == "smooth"
        and m["settings"]["damping"] == 1.0
        and m["settings"]["schwarz"] == "lower"
        and m["settings"]["passes"] == 2
        and m["settings"]["order"] == "additive"
        and m["settings"]["ridge"] == 1e-6
        and m["settings"]["grad_clip"] == 0.5
        and m["settings"]["warmup"] == 2
        and m["settings"]["basis"] == 4
        and m["settings"]["labels"] == 0.0
    )
    assert m["loss_terms"]["data"] == 0.0 and m["loss_terms"]["physics"] > 0
    solves = m["constraint_solves"]
    assert 1 <= solves["iterations_mean"] <= solves["iterations_max"] <= 100 and 0 <= solves["converged_fraction"] <= 1
    assert main(["solve", "diffusion_sorption_operator", "--resume", str(out), "--epochs", "5", "--no-progress"]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 5
    # the library's settings check the same rules
    with pytest.raises(ValueError, match="physics-only operator of"):
        O.operator_settings("darcy", "hc")
    with pytest.raises(ValueError, match="settings of the PI-HC methods"):
        O.operator_settings("diffusion_sorption_operator", "fno", basis=4)
    s = O.operator_settings("diffusion_sorption_operator", "soft")
    assert s["physics_weight"] == 1.0 and s["batch_size"] == 8 and s["resolution"] == 64
    # the run's settings reach the constraint layer; a run saved before ramp and damping were settings
    # builds with the values it trained with (linear, 1e-10)
    from pdejax.operators._pihc import _expert_weights

    data = O.load_dataset(out / "data.npz")
    op = O.build_pihc_operator(m["settings"], data, key=jax.random.PRNGKey(0))
    idx = np.stack(np.meshgrid(np.arange(12), np.arange(data.grid[-1]), indexing="ij"), -1).reshape(-1, 2)
    smooth = _expert_weights(idx, data.grid, (2, 1), 1.0, ramp="smooth").reshape(*data.grid, 2)
    assert op.damping == 1.0 and op.schwarz == "lower" and op.passes == 2 and np.array_equal(op._owner.data, smooth)
    assert op.order == "additive" and op.ridge == 1e-6
    mult = m["settings"] | {"order": "multiplicative"}
    assert O.build_pihc_operator(mult, data, key=jax.random.PRNGKey(0)).order == "multiplicative"
    new = ("ramp", "damping", "schwarz", "passes", "order", "ridge")
    old = {k: v for k, v in m["settings"].items() if k not in new}
    op = O.build_pihc_operator(old, data, key=jax.random.PRNGKey(0))
    assert op.damping == 1e-10 and op.schwarz == "none" and op.passes == 1
    assert op.order == "additive" and op.ridge == 1e-8
    assert not np.array_equal(op._owner.data, smooth)


def test_physics_only_navier_stokes_operator_from_the_cli(tmp_path):
    # the PI-HC paper's second setting: a 3D FNO over (x, y, t), experts in a 2 x 2 split of the square
    out = tmp_path / "ns"
    args = ["solve", "navier_stokes_operator", "--method", "hc-moe", "--n-train", "4", "--n-test", "2",
            "--resolution", "16", "--basis", "3", "--constraint-points", "64", "--modes", "2", "--out", str(out),
            *TINY]  # fmt: skip
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["settings"]["experts"] == 4 and m["constraint_solves"]["solves"] == 2 * 4
    assert 0 < m["test_rel_l2"] < 10 and (out / "solution.png").stat().st_size > 0
    data = O.load_dataset(out / "data.npz")
    assert data.inputs.shape == (6, 1, 16, 16, 11) and data.coords.shape == (16, 16, 11, 3)
    # the same data learnt from the solutions by a 3D FNO (the data-driven operator on (x, y, t))
    fno = tmp_path / "fno"
    assert main(["solve", "navier_stokes_operator", "--method", "fno", "--data", str(out / "data.npz"), "--n-train",
                 "4", "--n-test", "2", "--modes", "2", "--out", str(fno), *TINY]) == 0  # fmt: skip
    m = json.loads((fno / "metrics.json").read_text())
    assert m["method"] == "fno" and 0 < m["test_rel_l2"] < 10
    with pytest.raises(ValueError, match="even"):
        O.generate("navier_stokes_operator", 2, resolution=15)


def test_compare_physics_only_operators_share_each_seeds_data_and_time_their_evaluations(tmp_path):
    # PI-HC's comparison from the CLI: each seed's dataset is generated once and used by every method
    out = tmp_path / "cmp"
    args = ["compare", "diffusion_sorption_operator", "--methods", "soft,hc-moe", "--param", "experts=2", "--param",
            "overlap=1", "--n-train", "8", "--n-test", "4", "--resolution", "12", "--basis", "4",
            "--constraint-points", "32", "--modes", "3", "--epochs", "3", "--batch", "4", "--width", "8",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    runs = json.loads((out / "compare.json").read_text())["runs"]
    assert [r["method"] for r in runs] == ["soft", "hc-moe"] and all(r["steps"] == 3 for r in runs)
    assert {r["settings"]["data"] for r in runs} == {str(out / "data-seed0.npz")}
    moe = runs[1]
    assert moe["settings"]["experts"] == 2 and moe["settings"]["basis"] == 4 and "constraint_solves" in moe
    # the dataset's tuned defaults reach the CLI's runs where no --param gives them
    assert moe["settings"]["schwarz"] == "lower" and moe["settings"]["order"] == "multiplicative"
    assert runs[0]["settings"]["grad_clip"] == 0.3 and moe["settings"]["ridge"] == 1e-6
    assert runs[0]["settings"]["physics_weight"] == 1.0 and runs[0]["settings"]["labels"] == 0.0
    for r in runs:
        t = np.asarray(r["eval_times"])
        assert len(t) == len(r["eval_rel_l2"]) == len(r["eval_epochs"]) and np.all(np.diff(t) > 0)
        assert 0 < t[-1] <= r["wall_time_s"] + 1e-6 and r["steps_per_s"] == pytest.approx(3 * 2 / r["wall_time_s"])
        assert r["rel_l2"] == r["eval_rel_l2"][-1] > 0
    table = (out / "compare.md").read_text()
    assert "| epochs |" in table and "| soft |" in table and "| hc-moe |" in table
    assert (out / "compare.png").exists() and (out / "compare.csv").read_text().count("\n") == 3
