"""Command line: outputs of `solve`, resume, `list`, `reference`, and one-line errors for bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pdejax.problems as P
from pdejax.cli import main

FAST = ["--steps", "40", "--lbfgs-steps", "10", "--width", "8", "--depth", "2", "--no-progress"]


def _one_line_error(capsys, code, expected_code=2):
    out = capsys.readouterr()
    assert code == expected_code
    lines = [ln for ln in out.err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("pdejax: error:"), out.err
    assert "Traceback" not in out.err
    return lines[0]


@pytest.mark.long
def test_solve_writes_metrics_plots_checkpoint_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["solve", "poisson2d", "--param", "k=1", "--out", str(out), "--seed", "3", *FAST])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("problem", "method", "optimizer", "steps", "seed", "rel_l2", "wall_time_s", "params"):
        assert key in m
    assert m["problem"] == "poisson2d" and m["steps"] == 50 and m["seed"] == 3 and m["params"] == {"k": 1.0}
    assert 0 < m["rel_l2"] < 2 and m["optimizer"] == "adam+lbfgs" and not m["x64"]
    for name in ("solution.png", "loss.png", "checkpoint.npz", "run.json"):
        assert (out / name).stat().st_size > 0
    assert "rel_l2=" in capsys.readouterr().out
    # resume and extend: continues from step 50, not from scratch
    code = main(["solve", "poisson2d", "--resume", str(out), "--lbfgs-steps", "20", "--no-progress"])
    assert code == 0
    m2 = json.loads((out / "metrics.json").read_text())
    assert m2["steps"] == 60 and m2["seed"] == 3
    assert m2["rel_l2_history"]["step"][: len(m["rel_l2_history"]["step"])] == m["rel_l2_history"]["step"]


def test_x64_and_vector_problem(tmp_path):
    out = tmp_path / "k"
    fast = [a for a in FAST if a not in ("--lbfgs-steps", "10")]
    assert main(["solve", "kovasznay", "--x64", "--out", str(out), "--optimizer", "adam", *fast]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["x64"] and m["steps"] == 40 and set(m["rel_l2_components"]) == {"u", "v", "p"}


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in P.names():
        assert name in out
    assert "beta=10" in out and "adam+lbfgs" in out
    assert "darcy_lognormal, diffusion_sorption_operator, navier_stokes_operator; methods fno, deeponet" in out
    assert "on diffusion_sorption_operator and navier_stokes_operator also the physics-only soft, hc, hc-moe" in out


def test_reference_writes_npz(tmp_path):
    f = tmp_path / "ref.npz"
    assert main(["reference", "convection", "--param", "beta=5", "--out", str(f)]) == 0
    d = np.load(f)
    np.testing.assert_allclose(d["values"], np.sin(d["points"][:, 0] - 5 * d["points"][:, 1]), atol=1e-15)


@pytest.mark.parametrize(
    "args,match",
    [
        (["solve", "nosuch"], "unknown problem 'nosuch'; choose one of"),
        (["solve", "burgers", "--method", "magic"], "unknown method 'magic'"),
        (["solve", "burgers", "--param", "nu"], "malformed --param 'nu'"),
        (["solve", "burgers", "--param", "nu=abc"], "must be of type float"),
        (["solve", "burgers", "--param", "mu=1"], "unknown parameter"),
        (["solve", "burgers", "--param", "nu=-1"], "nu must be"),
        (["solve", "burgers", "--steps", "0"], "must be an integer in [1, 2147483647]"),
        (["solve", "burgers", "--steps", "-5"], "must be an integer in [1, 2147483647]"),
        (["solve", "burgers", "--steps", "many"], "expected a positive integer"),
        (["solve", "burgers", "--optimizer", "sgd"], "unknown optimizer 'sgd'"),
        (["solve", "burgers", "--optimizer", "adam", "--lbfgs-steps", "5"], "runs no L-BFGS"),
        (["solve", "burgers", "--lr", "nan"], "finite number"),
        (["solve", "burgers", "--resume", "/nonexistent/dir"], "no run.json"),
        (["solve", "burgers", "--method", "teng"], "periodic on every spatial axis"),
        (["solve", "poisson2d", "--method", "teng"], "no time dimension"),
        (["solve", "heat2d", "--method", "teng", "--dt", "0"], "finite number > 0"),
        (["solve", "heat2d", "--method", "teng", "--dt", "0.03"], "must divide"),
        (["solve", "heat2d", "--method", "teng", "--steps", "5"], "not used by --method teng"),
        (["solve", "heat2d", "--dt", "0.1"], "options of --method teng"),
        (["solve", "reaction_diffusion", "--method", "lpinn"], "Supported problems: burgers, burgers_teng, convection"),
        (["solve", "convection", "--method", "lpinn", "--constraints", "soft"], "not used by --method lpinn"),
        (["solve", "poisson2d", "--method", "hc", "--param", "experts=4"], "setting of --method hc-moe"),
        (["solve", "poisson2d", "--method", "hc-moe", "--param", "experts=1"], "integer >= 2"),
        (["solve", "poisson2d", "--method", "hc-moe", "--param", "experts=two"], "integer >= 2"),
        (["solve", "poisson2d", "--method", "soft", "--constraints", "hard"], "not used by --method soft"),
        (["solve", "poisson2d", "--basis", "8"], "options of --method hc and hc-moe"),
        (["solve", "poisson2d", "--method", "hc", "--basis", "0"], "must be an integer in [1, 2147483647]"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_input_gives_one_line(args, match, capsys, tmp_path):
    if "--resume" not in args and args[:1] == ["solve"]:
        args = args + ["--out", str(tmp_path / "o"), "--no-progress"]
    line = _one_line_error(capsys, main(args))
    assert match in line, line


def test_unwritable_out_dir(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = _one_line_error(capsys, main(["solve", "burgers", "--out", str(blocker / "sub"), *FAST]))
    assert "cannot write to output directory" in line


def test_nan_during_training_stops_and_keeps_checkpoint(capsys, tmp_path):
    import jax.numpy as jnp

    P.register(
        "diverging_test",
        lambda scale=1.0: P.Problem(
            name="diverging_test",
            domain=P.Interval(0.0, 1.0),
            terms={"blowup": P.Term(lambda u, x: jnp.sqrt(scale - u(x)), n_points=16)},
        ),
    )
    out = tmp_path / "nan"
    code = main(
        [
            "solve",
            "diverging_test",
            "--out",
            str(out),
            "--steps",
            "3000",
            "--lr",
            "0.01",
            "--width",
            "8",
            "--depth",
            "2",
            "--no-progress",
            "--optimizer",
            "adam",
        ]
    )
    line = _one_line_error(capsys, code, expected_code=1)
    assert "NaN/Inf" in line and "last finite checkpoint kept" in line
    assert (out / "checkpoint.npz").exists() and not (out / "metrics.json").exists()


def test_console_script_has_no_traceback(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "pdejax")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "pdejax.cli"]
    r = subprocess.run(cmd + ["solve", "burgers", "--steps", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_compare_writes_table_csv_and_plot(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            "poisson2d",
            "--methods",
            "adam,config",
            "--steps",
            "30",
            "--seeds",
            "2",
            "--width",
            "8",
            "--depth",
            "2",
            "--constraints",
            "soft",
            "--points",
            "40",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    rows = (out / "compare.csv").read_text().strip().splitlines()
    assert rows[0] == "method,seed,rel_l2,wall_time_s,steps,steps_per_s" and len(rows) == 5
    md = (out / "compare.md").read_text()
    assert "| adam |" in md and "| config |" in md and "±" in md
    assert (out / "compare.png").stat().st_size > 0
    record = json.loads((out / "compare.json").read_text())
    assert record["problem"] == "poisson2d" and len(record["runs"]) == 4
    for r in record["runs"]:
        assert set(r["final_loss"]) == {"pde", "bc"} and all(v > 0 for v in r["final_loss"].values())
        assert len(r["eval_steps"]) == len(r["eval_rel_l2"]) >= 1
        # each run's settings: --points reaches every PDE-residual term (it was once dropped by compare)
        assert r["settings"]["n_points"]["pde"] == 40 and r["settings"]["seed"] == r["seed"]
    # one line per finished run on stderr, even without progress bars
    err = capsys.readouterr().err.splitlines()
    assert sum("seed" in ln and "rel_l2=" in ln for ln in err) == 4, err
    line = _one_line_error(capsys, main(["compare", "poisson2d", "--methods", "adam,sgd", "--out", str(out)]))
    assert "unknown method 'sgd'" in line
    # ConFIG needs several loss terms: with hard constraints poisson2d keeps only its residual
    line = _one_line_error(
        capsys,
        main(["compare", "poisson2d", "--methods", "config", "--steps", "5", "--out", str(out), "--no-progress"]),
    )
    assert "balances several loss terms" in line


def test_solve_teng_writes_metrics_history_and_plots(tmp_path, monkeypatch):
    from pdejax.pinns import _teng

    monkeypatch.setitem(_teng.TENG_PRESETS, "allen_cahn_teng", dict(fit_steps=500, fit_gn_steps=40))
    out = tmp_path / "teng"
    args = ["solve", "allen_cahn_teng", "--method", "teng", "--param", "T=0.2", "--dt", "0.05"]
    code = main([*args, "--width", "8", "--depth", "2", "--points", "48", "--out", str(out), "--no-progress"])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "teng" and m["steps"] == 4 and m["x64"] is True
    assert m["settings"]["dt"] == 0.05 and m["settings"]["n_points"] == 48
    hist = m["rel_l2_history"]
    assert hist["t"][0] == 0.0 and abs(hist["t"][-1] - 0.2) < 1e-12
    # a smooth, slowly evolving field over four steps: the network follows it to well below 1e-2
    assert 0 < m["rel_l2"] < 1e-2 and all(np.isfinite(hist["rel_l2"]))
    assert (out / "solution.png").stat().st_size > 0 and (out / "error_vs_time.png").stat().st_size > 0


def test_compare_teng_against_a_pinn(tmp_path, capsys, monkeypatch):
    from pdejax.pinns import _teng

    small = dict(dt=0.05, integrator="rk4", n_points=64, width=8, depth=2, fit_steps=500, fit_gn_steps=40)
    monkeypatch.setitem(_teng.TENG_PRESETS, "allen_cahn_teng", small)
    out = tmp_path / "cmp"
    args = ["compare", "allen_cahn_teng", "--param", "T=0.2", "--methods", "adam,teng", "--steps", "30"]
    code = main([*args, "--seeds", "1", "--width", "8", "--depth", "2", "--out", str(out), "--no-progress"])
    assert code == 0
    rows = {r.split(",")[0]: r.split(",") for r in (out / "compare.csv").read_text().splitlines()[1:]}
    assert set(rows) == {"adam", "teng"}
    # four TENG steps from a Gauss-Newton initial fit vs 30 Adam steps of a PINN: orders of magnitude apart
    assert float(rows["teng"][2]) < 1e-3 * float(rows["adam"][2])
    assert "| teng |" in (out / "compare.md").read_text()


@pytest.mark.long
def test_solve_lpinn_writes_eulerian_metrics_and_resumes(tmp_path, capsys):
    # the Adam phase, then a resume that adds the L-BFGS phase: the L-BFGS program compiles once (resuming
    # inside the L-BFGS phase, which compiles it twice, is covered by the PINN resume test above and by
    # tests/pinns/test_trainer.py)
    out = tmp_path / "lp"
    args = ["solve", "convection", "--param", "beta=50", "--method", "lpinn", "--steps", "100"]
    code = main([*args, "--lbfgs-steps", "0", "--width", "16", "--depth", "2", "--out", str(out), "--no-progress"])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "lpinn" and m["steps"] == 100 and m["params"] == {"beta": 50.0, "nu": 0.0}
    assert set(m["loss_terms"]) == {"characteristic", "state"} and np.isfinite(m["rel_l2"])
    for name in ("solution.png", "loss.png", "checkpoint.npz"):
        assert (out / name).stat().st_size > 0
    assert main(["solve", "convection", "--resume", str(out), "--lbfgs-steps", "150", "--no-progress"]) == 0
    m2 = json.loads((out / "metrics.json").read_text())
    assert m2["steps"] == 250 and m2["method"] == "lpinn" and m2["settings"]["width"] == 16
    # continued from step 100 (its evaluation kept), not restarted
    assert m2["rel_l2_history"]["step"] == [100, 250] and m2["rel_l2_history"]["rel_l2"][0] == m["rel_l2"]
    # rel. L2 on the Eulerian grid against sin(x - 50 t): the short float32 run (100 Adam + 150 L-BFGS) is
    # already well below the vanilla PINN's ~0.9 at beta = 50 (benchmarks/failure_modes.py); measured 1.6e-3,
    # from 1.2 after the Adam phase
    assert 0 < m2["rel_l2"] < 5e-2


@pytest.mark.long
def test_solve_soft_hc_and_hc_moe(tmp_path, capsys):
    # the three constraint treatments of PI-HC on one problem: metrics, plots, checkpoint, experts
    small = ["--steps", "6", "--width", "8", "--depth", "2", "--points", "64", "--no-progress", "--x64"]
    hc = ["--basis", "6", "--constraint-points", "32"]
    runs = {
        "soft": ["--method", "soft"],
        "hc": ["--method", "hc", *hc],
        "hc-moe": ["--method", "hc-moe", "--param", "experts=2", *hc],
    }
    for name, extra in runs.items():
        out = tmp_path / name
        assert main(["solve", "poisson2d", "--out", str(out), *small, *extra]) == 0, name
        m = json.loads((out / "metrics.json").read_text())
        assert m["method"] == name and m["steps"] == 6 and np.isfinite(m["rel_l2"]) and m["params"] == {"k": 1.0}
        assert m["unconverged_solves"] == 0
        for f in ("solution.png", "loss.png", "checkpoint.npz"):
            assert (out / f).stat().st_size > 0
    s = {n: json.loads((tmp_path / n / "metrics.json").read_text())["settings"] for n in runs}
    assert s["soft"]["constraints"] == "soft" and "field" not in s["soft"]
    assert s["hc"]["experts"] == 1 and s["hc-moe"]["experts"] == 2 and s["hc"]["n_basis"] == 6
    assert json.loads((tmp_path / "hc-moe" / "metrics.json").read_text())["settings"]["n_constraint"] == 32
    # resume continues the hard-constraint run
    assert main(["solve", "poisson2d", "--resume", str(tmp_path / "hc-moe"), "--steps", "8", "--no-progress"]) == 0
    assert json.loads((tmp_path / "hc-moe" / "metrics.json").read_text())["steps"] == 8
