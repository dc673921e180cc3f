"""One operator-learning run from plain settings (what ``pdejax solve darcy --method fno`` calls)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ..pinns._hard import split_counts
from ._data import DATASETS, PHYSICS, OperatorDataset, generate, load_dataset, save_dataset
from ._fno import FNO
from ._onet import DeepONet, MultiONet
from ._pihc import ORDERS, RAMPS, SCHWARZ
from ._train import OperatorConfig, OperatorResult, predict_batched, train_operator

OPERATOR_METHODS = ("fno", "deeponet", "multionet", "soft", "hc", "hc-moe")
# physics-only operators of the PI-HC paper's setting (no solution data): an FNO trained on the physics loss
# (soft), or giving basis fields whose coefficients a constraint solve finds per sample (hc, hc-moe)
PIHC_METHODS = ("soft", "hc", "hc-moe")
PIHC_DATASETS = ("diffusion_sorption_operator", "navier_stokes_operator")

# small enough for about a minute on a laptop CPU; the FNO paper's sizes are in benchmarks/operator_accuracy.py
OPERATOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "burgers1d": dict(n_train=500, n_test=100, resolution=128, epochs=60, modes=16, width=64, depth=4),
    "darcy": dict(n_train=200, n_test=50, resolution=43, epochs=30, modes=12, width=32, depth=4),
    "darcy_lognormal": dict(n_train=200, n_test=50, resolution=32, epochs=30, modes=12, width=32, depth=4),
    # benchmarks/pihc_operator.py's sizes with a third of its 30 epochs (hc: 2.5 min on 2 CPU cores, 6.4e-2)
    "diffusion_sorption_operator": dict(n_train=256, n_test=64, resolution=64, epochs=10, modes=12, width=32, depth=4),
    # a 3D FNO over (x, y, t) on 32 x 32 x 11 points (the PI-HC code's: 64^3, 8 modes per axis, width 64)
    "navier_stokes_operator": dict(n_train=128, n_test=32, resolution=32, epochs=10, modes=8, width=24, depth=4),
}
# the PI-HC methods' defaults (damping: the constraint solves' first Levenberg-Marquardt damping; ridge: their
# Tikhonov term)
_PIHC = dict(batch_size=8, basis=16, experts=4, constraint_points=1024, overlap=0.0, ramp="linear", damping=1e-10,
             schwarz="none", passes=1, order="additive", ridge=1e-8, grad_clip=0.0,
             warmup=0)  # fmt: skip
# Per dataset and method, defaults tuned by measurement that replace _PIHC's where the user gives no value. Each
# is a function of the settings so far (dict order matters: schwarz reads overlap, order reads schwarz). On
# diffusion-sorption (README, "Clipped, warmed-up training"; 3 seeds, 30 epochs, 2 CPU cores) the PI-HC code's
# hard split (overlap 0) trains 4 experts to 0.39 rel. L2 against hc's 3.8e-2; blending over 12 of the 64 columns,
# a multiplicative Schwarz pass on each block's lower (inflow) edge, a ridge of 1e-6, and training clipped to a
# gradient norm of 0.3 with a warmup of a tenth of the steps give hc-moe 3.48e-2 +- 1.3e-3 and hc 3.51e-2 +- 2.1e-3
# (soft: 7.02e-2 +- 2.2e-3 against 7.27e-2 without). Navier-Stokes keeps _PIHC's: there the same training settings
# made no difference over 3 seeds, and no block lacks a condition that a neighbour holds.
_TENTH_OF_STEPS = ("warmup", lambda s: int(s["epochs"]) * (int(s["n_train"]) // int(s["batch_size"])) // 10)
_PIHC_TUNED: dict[str, dict[str, tuple]] = {
    "diffusion_sorption_operator": {
        "soft": (("grad_clip", lambda s: 0.3), _TENTH_OF_STEPS),
        "hc": (("ridge", lambda s: 1e-6), ("grad_clip", lambda s: 0.3), _TENTH_OF_STEPS),
        "hc-moe": (
            # 12 of 64 cells at the default grid: 3/16 of the x axis on any other
            ("overlap", lambda s: float(round(3 * int(s["resolution"]) / 16))),
            ("schwarz", lambda s: "lower" if float(s["overlap"]) > 0 else "none"),
            ("order", lambda s: "multiplicative" if s["schwarz"] != "none" else "additive"),
            ("ridge", lambda s: 1e-6),
            ("grad_clip", lambda s: 0.3),
            _TENTH_OF_STEPS,
        ),
    },
}
_ONET = dict(width=128, depth=4)  # DeepONet/MultiONet sizes unless given
SETTING_KEYS = (
    "method", "n_train", "n_test", "resolution", "epochs", "batch_size", "learning_rate", "width", "depth",
    "modes", "labels", "physics_weight", "devices", "seed", "data", "basis", "experts", "constraint_points",
    "overlap", "ramp", "damping", "schwarz", "passes", "order", "ridge", "grad_clip", "warmup",
)  # fmt: skip


def operator_settings(dataset: str, method: str = "fno", **overrides) -> dict[str, Any]:
    """Complete, validated settings of an operator run (``None`` overrides keep the defaults).

    Keys: ``method`` (fno, deeponet, multionet; on ``diffusion_sorption_operator`` and ``navier_stokes_operator``
    also the physics-only soft, hc, hc-moe), ``n_train``/``n_test`` samples, ``resolution`` (points per axis; in x
    for diffusion-sorption), ``epochs``, ``batch_size``, ``learning_rate``, ``width``/``depth`` (hidden channels and
    Fourier layers for FNO; MLP width/layers for the ONets), ``modes`` (FNO), ``labels`` (fraction of training
    samples whose outputs are used), ``physics_weight`` (PINO residual), ``devices``, ``seed``, ``data`` (a dataset
    file to read instead of generating); for hc/hc-moe ``basis`` (N basis fields), ``constraint_points`` (PDE rows
    in the solves) and, hc-moe only, ``experts`` (blocks in x; on Navier–Stokes a near-square split of (x, y), 4 = 2
    x 2 as in the PI-HC code), ``overlap`` (grid cells each block is widened by and blended over; 0: a hard
    split), ``ramp`` (the blend's shape: linear, smooth, smoother) and ``schwarz`` (none, lower, upper, both: a
    second solve in which each expert also meets its neighbours' first fields at those edges of its overlap
    region; needs overlap > 0) and ``passes`` (how many such solves, each from the fields of the one before;
    default 1) and ``order`` (``additive``: every expert from the last pass's fields; ``multiplicative``: one
    expert after another, each from the latest fields); for hc and hc-moe ``damping`` (the
    solves' first Levenberg–Marquardt damping, default 1e-10: a Gauss–Newton first step) and ``ridge`` (the
    solves' Tikhonov term ``ridge ||w||^2``); for soft, hc and hc-moe ``grad_clip`` (clip each training step's
    gradient to this global norm; default 0: no clipping) and ``warmup`` (training steps over which the learning
    rate ramps up linearly; default 0).

    Tuned defaults on ``diffusion_sorption_operator`` (used where no value is given; measured in the README): hc-moe
    blends its blocks over ``overlap`` = 3/16 of the x grid (12 of 64 cells) with a multiplicative Schwarz pass on
    each block's lower edge (``schwarz='lower'``, ``order='multiplicative'``; ``none`` and ``additive`` when
    ``overlap=0`` is given), hc and hc-moe solve with ``ridge=1e-6``, and soft, hc and hc-moe train with
    ``grad_clip=0.3`` and a ``warmup`` of a tenth of the training steps. Elsewhere the defaults above hold.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown operator dataset {dataset!r}; choose one of {sorted(DATASETS)}")
    if method not in OPERATOR_METHODS:
        raise ValueError(f"unknown operator method {method!r}; choose one of {OPERATOR_METHODS}")
    unknown = set(overrides) - set(SETTING_KEYS)
    if unknown:
        raise ValueError(f"unknown operator settings {sorted(unknown)}; known: {SETTING_KEYS}")
    pihc = method in PIHC_METHODS
    if pihc and dataset not in PIHC_DATASETS:
        raise ValueError(f"method {method!r} is a physics-only operator of {PIHC_DATASETS}, not of {dataset!r}")
    s = dict(OPERATOR_DEFAULTS[dataset], method=method, batch_size=20, learning_rate=1e-3, labels=1.0,
             physics_weight=0.0, devices=1, seed=0, data=None)  # fmt: skip
    if pihc:
        s.update(_PIHC, physics_weight=1.0, labels=0.0)
    elif method != "fno":
        s.update(_ONET)
    given = {k: v for k, v in overrides.items() if v is not None}
    extra = sorted(set(given) & set(_PIHC) - {"batch_size"})
    if extra and not pihc:
        raise ValueError(f"{extra}: settings of the PI-HC methods {PIHC_METHODS}, not of {method!r}")
    if pihc and (given.get("labels") or given.get("physics_weight") == 0):
        raise ValueError(f"{method} trains on the physics loss alone: labels and physics_weight are fixed")
    for k in ("experts", "overlap", "ramp", "schwarz", "passes", "order"):
        if k in given and method != "hc-moe":
            raise ValueError(f"{k} is a setting of hc-moe")
    if pihc and int(given.get("devices", 1)) != 1:
        raise ValueError(f"{method} trains on one device (hc-moe's experts are sharded over the devices instead)")
    s.update(given)
    for k in ("n_train", "n_test", "epochs", "batch_size", "width", "depth", "modes", "devices"):
        if int(s[k]) < 1:
            raise ValueError(f"{k} must be >= 1, got {s[k]}")
    # after the sizes are checked (the warmup divides by the batch size), before the layer's settings are
    for k, default in _PIHC_TUNED.get(dataset, {}).get(method, ()) if pihc else ():
        if k not in given:
            s[k] = default(s)
    for k in ("basis", "experts", "constraint_points", "passes"):
        if pihc and int(s[k]) < 1:
            raise ValueError(f"{k} must be >= 1, got {s[k]}")
    if pihc and not 0 <= float(s["overlap"]) <= int(s["resolution"]):
        raise ValueError(f"overlap must be in [0, resolution], got {s['overlap']}")
    if pihc and s["ramp"] not in RAMPS:
        raise ValueError(f"ramp must be one of {', '.join(RAMPS)}, got {s['ramp']!r}")
    if pihc and s["schwarz"] not in SCHWARZ:
        raise ValueError(f"schwarz must be one of {', '.join(SCHWARZ)}, got {s['schwarz']!r}")
    if pihc and s["schwarz"] != "none" and not float(s["overlap"]) > 0:
        raise ValueError(f"schwarz={s['schwarz']} couples overlapping experts: it needs overlap > 0")
    if pihc and int(s["passes"]) != 1 and s["schwarz"] == "none":
        raise ValueError(f"passes={s['passes']} counts Schwarz passes: it needs schwarz=lower, upper or both")
    if pihc and s["order"] not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {s['order']!r}")
    if pihc and s["order"] != "additive" and s["schwarz"] == "none":
        raise ValueError(f"order={s['order']} orders Schwarz passes: it needs schwarz=lower, upper or both")
    if pihc and not float(s["damping"]) > 0:
        raise ValueError(f"damping must be > 0, got {s['damping']}")
    if pihc and not float(s["ridge"]) >= 0:
        raise ValueError(f"ridge must be >= 0, got {s['ridge']}")
    if pihc and not float(s["grad_clip"]) >= 0:
        raise ValueError(f"grad_clip must be >= 0 (0: no clipping), got {s['grad_clip']}")
    if pihc and int(s["warmup"]) < 0:
        raise ValueError(f"warmup must be >= 0 steps, got {s['warmup']}")
    spatial = 2 if dataset == "navier_stokes_operator" else 1  # (x, y, t) and (x, t) grids
    if pihc and max(expert_split(int(s["experts"]), spatial)) > int(s["resolution"]):
        raise ValueError(f"experts={s['experts']} splits {s['resolution']} grid points in x: at most one per point")
    if not pihc and not 0.0 < float(s["labels"]) <= 1.0:
        raise ValueError(f"labels is the fraction of labelled training samples, in (0, 1]; got {s['labels']}")
    if float(s["physics_weight"]) < 0 or float(s["learning_rate"]) <= 0:
        raise ValueError("physics_weight must be >= 0 and learning_rate > 0")
    if float(s["physics_weight"]) > 0 and dataset not in PHYSICS:
        raise ValueError(f"a physics loss is available for {sorted(PHYSICS)}, not {dataset!r}")
    if method not in ("fno",) + PIHC_METHODS and s["modes"] != OPERATOR_DEFAULTS[dataset]["modes"]:
        raise ValueError("modes is a setting of --method fno")
    return s


def expert_split(k: int, spatial: int) -> tuple[int, ...]:
    """Pieces per grid axis for ``k`` experts on a space-time grid with ``spatial`` space axes (time last,
    kept whole): diffusion–sorption's (x, t) grid is cut in x, Navier–Stokes' (x, y, t) grid into a
    near-square split of (x, y), ``4 -> 2 x 2`` (the rule of :func:`pdejax.pinns.expert_split`)."""
    return (*split_counts(k, spatial), 1)


def _space_time_fno(data: OperatorDataset, modes: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Modes and padding of an FNO on ``data``'s (x, y, t) grid: ``modes`` in the periodic x and y, unpadded;
    4 in t (at most half the times), padded by 5 there."""
    return (modes, modes, min(4, data.grid[-1] // 2)), (0, 0, 5)


def build_pihc_operator(settings: dict, data: OperatorDataset, *, key, **layer) -> Any:
    """The untrained physics-only operator of ``settings['method']`` (soft, hc, hc-moe) on ``data``'s grid
    (also ``benchmarks/pihc_operator.py``'s): an FNO with one output (soft) or ``basis`` outputs weighted per
    sample by Levenberg-Marquardt on the PDE's rows (:class:`pdejax.operators.HardConstrainedOperator`;
    hc-moe: ``experts`` blocks, :func:`expert_split`). Diffusion–sorption: a 2D FNO on (x, t), ``modes``
    per axis, padded by 6 on both (neither is periodic). Navier–Stokes: a 3D FNO on (x, y, t), ``modes``
    in x and y and 4 in t, padded by 5 in t only (x and y are periodic); every model's field is
    ``w0 + (t / T) N`` (:class:`~pdejax.operators.InitialValueField`; the PI-HC code's form), so the
    constraint rows are the PDE's alone. ``layer``: further options of the
    constraint layer (``max_steps``, ``ridge``, ``shared``; given ones override ``settings``' overlap, ramp,
    schwarz, passes, order, ridge and damping)."""
    from ._pihc import HardConstrainedOperator, InitialValueField, diffusion_sorption_residual, navier_stokes_residual

    method, m = settings["method"], int(settings["modes"])
    cout = 1 if method == "soft" else int(settings["basis"])
    ns = data.coords.shape[-1] == 3
    modes, padding = _space_time_fno(data, m) if ns else ((m, m), 6)
    net = FNO(data.inputs.shape[1], cout, modes, settings["width"], settings["depth"], proj=64, padding=padding,
              key=key)  # fmt: skip
    if method == "soft":
        return InitialValueField(net) if ns else net
    k = int(settings["experts"]) if method == "hc-moe" else 1
    experts = expert_split(k, data.coords.shape[-1] - 1)
    n = int(settings["constraint_points"])
    if ns:  # the PDE rows alone: the field holds w0 at t = 0 by construction
        residual = navier_stokes_residual(data.grid[0], data.grid[-1], initial=False)
    else:
        residual = diffusion_sorption_residual(*data.grid)
    moe = method == "hc-moe"
    # runs saved before ramp, schwarz, passes, order, ridge and damping were settings lack them: their values then
    # were these
    layer = dict(overlap=float(settings.get("overlap", 0.0)) if moe else 0.0,
                 ramp=settings.get("ramp", "linear") if moe else "linear",
                 schwarz=settings.get("schwarz", "none") if moe else "none",
                 passes=int(settings.get("passes", 1)) if moe else 1,
                 order=settings.get("order", "additive") if moe else "additive",
                 ridge=float(settings.get("ridge", 1e-8)),
                 damping=float(settings.get("damping", 1e-10))) | layer  # fmt: skip
    return HardConstrainedOperator(net, residual, experts, n_constraint=n, seed=int(settings["seed"]), initial=ns,
                                   **layer)  # fmt: skip


def build_operator(method: str, data: OperatorDataset, width: int, depth: int, modes: int, *, key) -> Any:
    """The untrained operator ``method`` for ``data``'s channels and grid.

    FNO: ``modes`` per axis, ``width`` channels, ``depth`` Fourier layers, zero padding of ~1/9 of the grid
    on non-periodic (Darcy) data; on (x, y, t) data ``modes`` in space, 4 in time, padded in time only.
    DeepONet: ``depth`` layers of ``width`` in branch and trunk, ``p = width``.
    MultiONet: ``depth`` layers of ``width``.
    """
    d = data.coords.shape[-1]
    cin, cout = data.inputs.shape[1], data.outputs.shape[1]
    if method == "fno":
        if d == 3:  # (x, y, t): periodic in space, padded in time (as the PI-HC operators)
            m, pad = _space_time_fno(data, modes)
            return FNO(cin, cout, m, width, depth, padding=pad, key=key)
        padding = 0 if data.name == "burgers1d" else max(1, data.grid[0] // 9)
        return FNO(cin, cout, (modes,) * d, width, depth, padding=padding, key=key)
    if method == "deeponet":
        return DeepONet(data.inputs[0].size, d, cout, width, depth, p=width, key=key)
    if method == "multionet":
        return MultiONet(data.inputs[0].size, d, cout, width, max(depth, 2), key=key)
    raise ValueError(f"unknown operator method {method!r}; choose one of {OPERATOR_METHODS}")


@dataclasses.dataclass
class OperatorSolution:
    """Outcome of :func:`solve_operator`: the training result, the test set and its predictions."""

    result: OperatorResult
    test: OperatorDataset
    prediction: np.ndarray
    settings: dict[str, Any]
    constraint_solves: dict[str, Any] | None = None  # hc, hc-moe: :func:`~pdejax.operators.solve_summary`


def operator_data(dataset: str, settings: dict, out_dir: Path | None, progress: bool) -> OperatorDataset:
    """The dataset of a run: ``settings['data']`` if given, else ``out_dir/data.npz`` if it exists (resume),
    else generated with :func:`generate` (and saved there)."""
    n = settings["n_train"] + settings["n_test"]
    cached = out_dir / "data.npz" if out_dir is not None else None
    if settings.get("data"):
        data = load_dataset(settings["data"])
    elif cached is not None and cached.exists():
        data = load_dataset(cached)
    else:
        data = generate(dataset, n, resolution=settings["resolution"], seed=settings["seed"], progress=progress)
        if cached is not None:
            save_dataset(cached, data)
    if data.name not in ("custom", dataset):
        raise ValueError(f"the dataset file holds {data.name!r} data, not {dataset!r}")
    if len(data) < n:
        raise ValueError(f"the dataset has {len(data)} samples; n_train + n_test = {n}")
    return data


def solve_operator(
    dataset: str, settings: dict, *, out_dir: str | Path | None = None, resume: bool = False, progress: bool = True
) -> OperatorSolution:
    """Generate or read the data, build the operator, train it (checkpoints in ``out_dir``), predict the test set."""
    out = Path(out_dir) if out_dir is not None else None
    data = operator_data(dataset, settings, out, progress)
    train, test = data.split(settings["n_train"], settings["n_test"])
    key = jax.random.PRNGKey(settings["seed"])
    pihc = settings["method"] in PIHC_METHODS
    if pihc:
        net = build_pihc_operator(settings, data, key=key)
    else:
        net = build_operator(settings["method"], data, settings["width"], settings["depth"], settings["modes"], key=key)
    # the PI-HC methods learn from the physics loss alone, in physical units (the constraint rows need them)
    n_lab = 0 if pihc else max(1, int(round(settings["labels"] * settings["n_train"])))
    cfg = OperatorConfig(
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        lr_step_epochs=max(1, settings["epochs"] // 5),
        n_labelled=n_lab,
        physics_weight=settings["physics_weight"],
        eval_every=max(1, settings["epochs"] // 10),
        checkpoint_every=max(1, settings["epochs"] // 10),
        devices=settings["devices"],
        seed=settings["seed"],
        # runs saved before these settings existed neither clipped nor warmed up
        grad_clip=float(settings.get("grad_clip", 0.0)),
        warmup=int(settings.get("warmup", 0)),
        normalise=not pihc,
    )
    physics = PHYSICS.get(dataset) if settings["physics_weight"] > 0 else None
    res = train_operator(net, train, test, cfg, physics=physics, out_dir=out, resume=resume, progress=progress)
    if settings["method"] in ("hc", "hc-moe"):
        from ._pihc import solve_summary

        # the constraint layer in physical units (the wrapper's statistics are the identity), so its fields
        # are the model's prediction, and the solves that give them are summarised on the way
        pred, summary = solve_summary(res.model.net, test.inputs, test.coords)
        return OperatorSolution(res, test, pred, settings, summary)
    pred = predict_batched(res.model, test.inputs, test.coords)
    return OperatorSolution(res, test, pred, settings)
