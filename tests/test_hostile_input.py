"""Hostile input, property-based (hypothesis): random bad CLI flags, domains and problem parameters give one
clear error line (CLI) or a ``ValueError`` (library), never a traceback, a NaN result or a partial output file.

Every CLI example contains at least one invalid element; the training/solving entry points are replaced by a
tripwire, so an input that wrongly passes validation fails the test at once instead of training.
"""

import math
import string

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pdejax.problems as P
from pdejax import cli, operators, pinns

# fixed example sequences (CI reproducible, no example database written next to the repository)
_SETTINGS = dict(derandomize=True, database=None, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
N_CLI = 520  # random bad command lines per CI run

PROBLEMS = P.names()
DATASETS = list(cli.OPERATOR_DATASETS)
POSITIVE_INT = ["--steps", "--width", "--depth", "--points", "--basis", "--constraint-points", "--checkpoint-every",
                "--devices", "--epochs", "--n-train", "--n-test", "--resolution", "--modes", "--batch", "--samples",
                "--diffusion-steps", "--sample-steps", "--num-processes"]  # fmt: skip
NONNEG_INT = ["--lbfgs-steps", "--resample-every", "--process-id"]
POSITIVE_FLOAT = ["--lr", "--dt", "--labels"]
NONNEG_FLOAT = ["--physics"]
CHOICES = {"--model": cli.MODELS, "--constraints": ("hard", "soft"), "--sampler": cli.PINN_SAMPLERS + ("ddpm", "ddim"),
           "--adaptive": ("none", "rad"), "--integrator": ("euler", "heun", "rk4"), "--backbone": ("unet", "fno"),
           "--schedule": ("cosine", "linear"), "--prediction": ("x0", "eps"),
           "--method": cli.METHODS + cli.OPERATOR_METHODS, "--optimizer": tuple(pinns.OPTIMIZERS)}  # fmt: skip
# valid, cheap flags mixed into the command lines (with a PINN problem they are all accepted)
VALID_EXTRAS = [["--steps", "5"], ["--seed", "3"], ["--width", "8"], ["--depth", "2"], ["--lr", "0.01"],
                ["--no-progress"], ["--x64"], ["--model", "mlp"], ["--sampler", "sobol"], ["--points", "64"],
                ["--resample-every", "10"]]  # fmt: skip


class _Reached(BaseException):
    """Raised by the tripwires: not an ``Exception``, so the CLI's own handler cannot swallow it."""


@pytest.fixture
def tripwire(monkeypatch):
    def trip(*args, **kwargs):
        raise _Reached("an invalid input reached the training/solving stage")

    for module, name in [(pinns, "solve"), (pinns, "solve_lpinn"), (pinns, "teng"), (operators, "solve_operator"),
                         (operators, "solve_pidm"), (operators, "generate"), (P.Problem, "reference")]:  # fmt: skip
        monkeypatch.setattr(module, name, trip)


def _valid_int(text: str, lowest: int, highest: int = 2**31 - 1) -> bool:
    # step counters are int32 in the jitted loops; seeds keep 32 bits in jax.random.PRNGKey
    try:
        return lowest <= int(text) <= highest
    except ValueError:
        return False


def _valid_float(text: str, positive: bool) -> bool:
    try:
        v = float(text)
    except ValueError:
        return False
    return math.isfinite(v) and (v > 0 if positive else v >= 0)


_junk = st.one_of(
    st.text(alphabet=string.printable.replace("\x00", ""), max_size=12),
    st.sampled_from(["", "nan", "inf", "-inf", "1e999", "-0", "0", "-1", "1.5", "0x10", "1_0e", "None", "[]", "--"]),
    st.integers(-(10**20), 0).map(str),
    st.integers(2**31 - 2, 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@st.composite
def _bad_number(draw):
    kind = draw(st.sampled_from(["pos_int", "nonneg_int", "seed", "pos_float", "nonneg_float"]))
    flag = draw(st.sampled_from({"pos_int": POSITIVE_INT, "nonneg_int": NONNEG_INT, "seed": ["--seed"],
                                 "pos_float": POSITIVE_FLOAT, "nonneg_float": NONNEG_FLOAT}[kind]))  # fmt: skip
    valid = {
        "pos_int": lambda v: _valid_int(v, 1),
        "nonneg_int": lambda v: _valid_int(v, 0),
        "seed": lambda v: _valid_int(v, 0, 2**32 - 1),
        "pos_float": lambda v: _valid_float(v, True),
        "nonneg_float": lambda v: _valid_float(v, False),
    }[kind]
    return [flag, draw(_junk.filter(lambda v: not valid(v)))]


@st.composite
def _bad_choice(draw):
    flag = draw(st.sampled_from(sorted(CHOICES)))
    return [flag, draw(_junk.filter(lambda v: v not in CHOICES[flag]))]


_identifier = st.text(alphabet=string.ascii_letters + "_", min_size=1, max_size=10)
_bad_value = st.sampled_from(["nan", "inf", "-inf", "1e308", "-1e308", "abc", "1e999", "one", "1,5", "0x"])


@st.composite
def _bad_param(draw, problem: str):
    known = list(P.parameters(problem)) if problem in PROBLEMS else []
    kind = draw(st.sampled_from(["malformed", "unknown", "value", "duplicate"] if known else ["malformed", "unknown"]))
    if kind == "malformed":
        text = draw(st.sampled_from(["", "=", "=1", "k=", "k", " = ", "==", "k =  "]))
        return ["--param", text]
    if kind == "unknown":
        key = draw(_identifier.filter(lambda k: k not in known and k != "experts"))
        return ["--param", f"{key}={draw(st.sampled_from(['1', '0.5', 'x']))}"]
    key = draw(st.sampled_from(known))
    if kind == "value":
        return ["--param", f"{key}={draw(_bad_value)}"]
    value = str(P.parameters(problem)[key])
    return ["--param", f"{key}={value}", "--param", f"{key}={value}"]


@st.composite
def _bad_combination(draw):
    """Flags that are valid alone but not together (or not on this machine)."""
    return draw(st.sampled_from([
        ["--epochs", "3"],  # operator-only flags on a PINN problem
        ["--n-train", "10"],
        ["--samples", "4"],  # pidm-only
        ["--no-baseline"],
        ["--dt", "0.1"],  # teng-only with the default method
        ["--integrator", "heun"],
        ["--basis", "8"],  # hc-only
        ["--sampler", "ddim"],  # a diffusion sampler for a PINN
        ["--devices", str(jax.device_count() + 1)],
        ["--param", "experts=4"],  # hc-moe only
        ["--coordinator", "localhost:1234"],  # without --num-processes/--process-id
        ["--num-processes", "2", "--process-id", "0"],
        ["--coordinator", "nohostport", "--num-processes", "2", "--process-id", "0"],
        ["--coordinator", "localhost:1234", "--num-processes", "2", "--process-id", "2"],
        ["--method", "teng", "--optimizer", "adam"],
        ["--method", "teng", "--steps", "10"],
        ["--method", "lpinn", "--constraints", "soft"],
        ["--method", "hc", "--devices", "1"],
        ["--optimizer", "adam", "--lbfgs-steps", "5"],  # no L-BFGS phase to spend them on
        ["--method", "fno"],  # an operator method on a PINN problem
    ]))  # fmt: skip


@st.composite
def _bad_solve(draw, tmp):
    problem = draw(st.sampled_from(PROBLEMS + DATASETS))
    kinds = ["number", "choice", "param", "problem", "option", "out", "resume"]
    # (the combinations are invalid for PINN problems; some are exactly what an operator dataset takes)
    kind = draw(st.sampled_from(kinds + ["combo"] if problem in PROBLEMS else kinds))
    if kind == "problem":
        problem = draw(_identifier.filter(lambda n: n not in PROBLEMS and n not in DATASETS))
        bad = []
    elif kind == "number":
        bad = draw(_bad_number())
    elif kind == "choice":
        bad = draw(_bad_choice())
    elif kind == "param":
        bad = draw(_bad_param(problem))
    elif kind == "combo":
        bad = draw(_bad_combination())
    elif kind == "option":
        options = [o for a in cli.build_parser()._subparsers._group_actions[0].choices["solve"]._actions
                   for o in a.option_strings]  # fmt: skip
        name = draw(_identifier.filter(lambda n: not any(o.startswith("--" + n) for o in options)))
        bad = ["--" + name]
    elif kind == "out":
        # a directory inside a regular file, or no name at all
        bad = ["--out", draw(st.sampled_from([str(tmp["file"] / draw(_identifier)), "", "  "]))]
    else:
        places = [tmp["missing"], tmp["empty"], tmp["garbage"], tmp["other"]]
        bad = ["--resume", draw(st.sampled_from([*map(str, places), ""]))]
    # a valid flag must not come after (and so override) the bad value of the same flag
    extras = [e for e in draw(st.lists(st.sampled_from(VALID_EXTRAS), max_size=3, unique_by=tuple)) if e[0] not in bad]
    flags = [x for e in extras for x in e]
    cut = draw(st.integers(0, len(extras)))
    head = [x for e in extras[:cut] for x in e]
    tail = flags[len(head) :]
    out = [] if kind in ("out", "resume") else ["--out", str(tmp["out"])]
    return ["solve", problem, *head, *bad, *tail, *out]


@st.composite
def _bad_other(draw, tmp):
    """Bad `compare`, `reference` and `data` command lines."""
    which = draw(st.sampled_from(["compare", "reference", "data"]))
    if which == "compare":
        bad = draw(st.sampled_from([
            ["--methods", draw(_identifier.filter(lambda m: m not in pinns.OPTIMIZERS + cli.METHODS))],
            ["--methods", ",,"],
            ["--methods", "adam", "--seeds", draw(st.sampled_from(["0", "-2", "x"]))],
            ["--methods", "adam", "--steps", "0"],
        ]))  # fmt: skip
        problem = draw(st.sampled_from(PROBLEMS))
        return ["compare", problem, *bad, "--out", str(tmp["out"])]
    if which == "reference":
        problem = draw(st.sampled_from(PROBLEMS))
        return ["reference", problem, *draw(_bad_param(problem)), "--out", str(tmp["out"] / "ref.npz")]
    bad = draw(st.sampled_from([
        ["--n", draw(st.sampled_from(["0", "-5", "many"]))],
        ["--n", "4", "--resolution", "0"],
        ["--n", "4", "--out", str(tmp["file"] / "x.npz")],
    ]))  # fmt: skip
    dataset = draw(st.sampled_from(DATASETS + ["darcyy", "heat"]))
    if dataset not in DATASETS:
        bad = ["--n", "4"]
    out = [] if "--out" in bad else ["--out", str(tmp["out"] / "data.npz")]
    return ["data", dataset, *bad, *out]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    (base / "file").write_text("a regular file, not a directory")
    (base / "empty").mkdir()
    (base / "garbage").mkdir()
    (base / "garbage" / "run.json").write_text("{not json")
    (base / "other").mkdir()
    (base / "other" / "run.json").write_text('{"problem": "no_such_problem", "method": "pinn"}')
    return {"file": base / "file", "missing": base / "missing", "empty": base / "empty",
            "garbage": base / "garbage", "other": base / "other", "out": base / "out"}  # fmt: skip


def _check_one_clean_error(argv, capsys, out):
    try:
        code = cli.main(argv)
    except _Reached:
        raise AssertionError(f"accepted as valid, reached training: {argv}") from None
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code != 0, (argv, captured.err)
    assert len(lines) == 1 and lines[0].startswith("pdejax: error: "), (argv, captured.err)
    assert "Traceback" not in captured.err + captured.out, argv
    # nothing written: no results, plots, checkpoints or run records
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*")), (argv, list(out.rglob("*")))


@settings(max_examples=N_CLI, **_SETTINGS)
@given(data=st.data())
def test_random_bad_solve_command_lines_give_one_line_errors(data, places, capsys, tripwire):
    argv = data.draw(_bad_solve(places))
    _check_one_clean_error(argv, capsys, places["out"])


@settings(max_examples=120, **_SETTINGS)
@given(data=st.data())
def test_random_bad_compare_reference_data_command_lines_give_one_line_errors(data, places, capsys, tripwire):
    argv = data.draw(_bad_other(places))
    _check_one_clean_error(argv, capsys, places["out"])


_bound = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, -1.0, 1e308, -1e308, 5e-324]),
    st.none(),
    st.text(max_size=3),
)


@settings(max_examples=200, **_SETTINGS)
@given(
    lo=st.lists(_bound, min_size=0, max_size=4),
    hi=st.lists(_bound, min_size=0, max_size=4),
    time=st.one_of(st.none(), st.tuples(_bound, _bound), st.lists(_bound, max_size=3)),
    n=st.integers(-3, 40),
    method=st.sampled_from(["uniform", "sobol", "lhs", "grid", ""]),
)
def test_random_domains_are_valid_or_rejected_with_valueerror(lo, hi, time, n, method):
    try:
        domain = P.Box(lo, hi, time=time)
        points = np.asarray(P.sample(domain, "interior", jax.random.PRNGKey(0), n, method))
    except ValueError:
        return
    # accepted: a proper box, and its points are finite and inside it
    assert len(lo) == len(hi) >= 1 and n >= 1
    assert points.shape == (n, domain.dim) and np.all(np.isfinite(points))
    assert np.all(np.asarray(domain.contains(points)))


@settings(max_examples=200, **_SETTINGS)
@given(
    name=st.sampled_from(PROBLEMS),
    key=st.one_of(st.none(), _identifier),
    value=st.one_of(_bad_value, st.floats(allow_nan=True, allow_infinity=True), st.none(), st.text(max_size=4)),
)
def test_random_problem_parameters_are_valid_or_rejected_with_valueerror(name, key, value):
    key = key if key is not None else list(P.parameters(name))[0]
    try:
        problem = P.get(name, **{key: value})
    except ValueError:
        return
    # accepted: a known parameter with a finite value, and the problem evaluates to finite numbers
    assert key in P.parameters(name)
    assert all(np.isfinite(v) for v in problem.params.values() if isinstance(v, float))


def test_a_nan_result_is_refused_and_nothing_is_written(tmp_path, capsys, monkeypatch):
    real = pinns.solve

    def nan_prediction(*args, **kwargs):  # a run whose prediction came out NaN (e.g. an extreme parameter)
        sol = real(*args, **kwargs)
        sol.prediction = np.full_like(sol.prediction, np.nan)
        return sol

    monkeypatch.setattr(pinns, "solve", nan_prediction)
    out = tmp_path / "run"
    argv = ["solve", "poisson2d", "--steps", "5", "--optimizer", "adam", "--width", "8", "--depth", "2",
            "--points", "64", "--no-progress", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not finite (NaN/Inf); no results written" in err[0], err
    assert not any((out / f).exists() for f in ("metrics.json", "solution.png", "loss.png"))
    assert (out / "checkpoint.npz").exists()  # training state kept for --resume
