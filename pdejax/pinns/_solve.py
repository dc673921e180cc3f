"""One-call PINN solve of a problem: build the field from settings, train, predict on the evaluation grid."""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from ..problems import Problem
from ._field import make_field, predict
from ._presets import GENERIC, preset
from ._trainer import TrainConfig, TrainResult, train

FIRST_PHASE = ("adam", "config", "mconfig", "multiadam", "lra", "pcgrad")
# The constraint layer's defaults (PI-HC, Chalapathi et al. 2024): a small basis fitted in the least-squares
# sense to many constraint points generalises; as many points as basis functions would interpolate them
HC_DEFAULTS: dict = {
    "model": "fourier",
    "width": 64,
    "depth": 3,
    "steps": 3000,
    "n_basis": 16,
    "n_constraint": 1024,
    "max_steps": 100,
    "blend": 0.0,
}
HC_KEYS = ("n_basis", "n_constraint", "max_steps", "blend")
OPTIMIZERS = FIRST_PHASE + tuple(f"{o}+lbfgs" for o in FIRST_PHASE) + ("lbfgs",)


def lr_schedule(settings: dict):
    """The settings' learning-rate schedule: ``learning_rate * decay_rate ** (step / decay_steps)``."""
    import optax

    return optax.exponential_decay(
        float(settings["learning_rate"]), int(settings["decay_steps"]), float(settings["decay_rate"])
    )


def residual_groups(problem: Problem) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Indices of ``problem``'s loss terms split into (PDE residuals, the rest: boundary/initial/data)."""
    kinds = [t.kind == "residual" for t in problem.terms.values()]
    return tuple(i for i, r in enumerate(kinds) if r), tuple(i for i, r in enumerate(kinds) if not r)


def make_optimizer(name: str, problem: Problem, settings: dict):
    """The first-phase optimizer called ``name`` (one of :data:`FIRST_PHASE`) with the settings' learning
    rate schedule, or ``None`` for the trainer's default Adam."""
    from ._multiloss import config, lra, mconfig, multiadam, pcgrad

    schedule = lr_schedule(settings)
    if name == "adam":
        return None
    if name == "config":
        return config(schedule)
    if name == "mconfig":
        return mconfig(schedule)
    if name == "multiadam":
        # the paper's grouping: PDE residual(s) in one group, boundary/initial/data terms in the other
        res, rest = residual_groups(problem)
        return multiadam(schedule, groups=(res, rest) if res and rest else None)
    if name == "pcgrad":
        return pcgrad(schedule)
    if name == "lra":
        reference = residual_groups(problem)[0] or (0,)
        return lra(schedule, reference=reference)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


@dataclasses.dataclass
class Solution:
    """A trained PINN and its prediction on the problem's evaluation grid.

    Attributes:
        result: the :class:`TrainResult` (field, loss history, rel. L2 history, timing).
        points: evaluation grid ``(n, d)``; prediction: ``(n,)`` or ``(n, c)``; reference: same or ``None``.
        settings: the complete settings used (preset merged with overrides).
    """

    result: TrainResult
    points: np.ndarray
    prediction: np.ndarray
    reference: np.ndarray | None
    settings: dict


def settings_for(problem: Problem, optimizer: str = "adam+lbfgs", **overrides) -> dict:
    """Complete PINN settings for ``problem``: its preset, adjusted for ``optimizer``, with overrides.

    ``optimizer`` is a first-phase optimizer (``adam``, ``config``, ``mconfig``, ``multiadam``, ``lra``,
    ``pcgrad``), optionally followed by L-BFGS (``config+lbfgs``), or ``lbfgs`` alone (``steps`` then counts
    L-BFGS iterations). Overrides with value ``None`` are ignored; unknown keys raise ``ValueError``.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
    unknown = set(overrides) - set(GENERIC) - {"seed"}
    if unknown:
        raise ValueError(f"unknown PINN settings {sorted(unknown)}; valid: {sorted(GENERIC) + ['seed']}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    s = preset(problem.name)
    if optimizer in FIRST_PHASE:
        if overrides.get("lbfgs_steps"):
            raise ValueError(
                f"optimizer {optimizer!r} runs no L-BFGS steps; use {optimizer + '+lbfgs'!r} for lbfgs_steps"
            )
        s["lbfgs_steps"] = 0
    elif optimizer == "lbfgs":
        # L-BFGS alone: 'steps' counts its iterations
        s["lbfgs_steps"] = overrides.pop("steps", overrides.pop("lbfgs_steps", s["steps"]))
        s["steps"] = 0
    s.update(overrides)
    s.setdefault("seed", 0)
    s["optimizer"] = optimizer
    return s


def hc_settings(problem: Problem, optimizer: str = "adam", *, experts: int = 1, **overrides) -> dict:
    """Settings of a hard-constraint run: PI-HC (``experts=1``) or PI-HC-MoE (``experts=K``, see
    :func:`pdejax.pinns.expert_split`).

    The problem's PINN settings for ``optimizer`` (:func:`settings_for`) with :data:`HC_DEFAULTS` for the
    basis network and the training length; ``overrides`` may also set ``n_basis`` (basis functions),
    ``n_constraint`` (constraint points of each interior term, divided among the experts), ``max_steps``
    (Levenberg–Marquardt iterations) and ``blend`` (smooth expert weights, a fraction of a cell; 0: a hard
    partition as in the paper). ``None`` values are ignored.
    """
    if not (isinstance(experts, int) and experts >= 1):
        raise ValueError(f"experts must be an integer >= 1, got {experts!r}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    hc = {k: overrides.pop(k, HC_DEFAULTS[k]) for k in HC_KEYS}
    net = {k: v for k, v in HC_DEFAULTS.items() if k not in HC_KEYS}
    s = settings_for(problem, optimizer, **{**net, **overrides})
    if int(hc["n_basis"]) < 1 or int(hc["n_constraint"]) < 1 or int(hc["max_steps"]) < 1 or float(hc["blend"]) < 0:
        raise ValueError(f"need n_basis, n_constraint, max_steps >= 1 and blend >= 0, got {hc}")
    return {**s, **hc, "field": "hc", "experts": experts}


def train_config(s: dict, **changes) -> TrainConfig:
    """The :class:`TrainConfig` of a settings dict (PINN, LPINN or curriculum settings), with ``changes``.

    Rel. L2 is evaluated ten times over the run unless ``eval_every`` is changed.
    """
    fields = dict(
        steps=int(s["steps"]),
        lbfgs_steps=int(s["lbfgs_steps"]),
        lbfgs_resample_every=int(s.get("lbfgs_resample_every", 0)),
        learning_rate=float(s["learning_rate"]),
        decay_rate=float(s["decay_rate"]),
        decay_steps=int(s["decay_steps"]),
        sampler=s["sampler"],
        resample_every=int(s["resample_every"]),
        adaptive=s.get("adaptive", "none"),
        n_points=s["n_points"],
        seed=int(s["seed"]),
        devices=s.get("devices"),
        checkpoint_every=int(s.get("checkpoint_every", 1000)),
        eval_every=max(1, (int(s["steps"]) + int(s["lbfgs_steps"])) // 10),
    )
    return TrainConfig(**{**fields, **changes})


def field_for(problem: Problem, s: dict):
    """``(field, training_problem)`` from a settings dict: :func:`make_field` with the settings' model,
    size, activation and constraints (or, for :func:`hc_settings`, a hard-constraint field that enforces
    every term), initial weights from ``fold_in(PRNGKey(seed), 1)``."""
    key = jax.random.fold_in(jax.random.PRNGKey(int(s["seed"])), 1)
    if s.get("field") == "hc":
        from ._hard import _split_terms, make_hard_constraint_field

        field = make_hard_constraint_field(
            problem,
            n_basis=int(s["n_basis"]),
            width=int(s["width"]),
            depth=int(s["depth"]),
            activation=s["activation"],
            model=s["model"],
            experts=int(s["experts"]),
            n_constraint={k: int(s["n_constraint"]) for k in _split_terms(problem)},
            max_steps=int(s["max_steps"]),
            blend=float(s["blend"]),
            key=key,
        )
        return field, field.problem  # without the terms the basis enforces exactly (periodicity)
    return make_field(
        problem,
        s["model"],
        width=int(s["width"]),
        depth=int(s["depth"]),
        activation=s["activation"],
        constraints=s["constraints"],
        key=key,
    )


def solve(
    problem: Problem,
    settings: dict | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Solution:
    """Train a PINN on ``problem`` with ``settings`` (see :func:`settings_for`) and predict on its grid.

    The field's initial weights use ``PRNGKey(seed)``; the collocation points use the same seed through
    :class:`TrainConfig`. Checkpoints go to ``out_dir`` (resumable with ``resume=True``).
    """
    s = settings if settings is not None else settings_for(problem)
    field, train_problem = field_for(problem, s)
    config = train_config(s)
    points, _ = problem.eval_points()
    ref = problem.reference(points) if problem.reference_fn is not None else None
    first = s["optimizer"].split("+")[0]
    optimizer = make_optimizer(first, train_problem, s) if first != "lbfgs" else None
    result = train(
        train_problem,
        field,
        config,
        optimizer=optimizer,
        out_dir=out_dir,
        resume=resume,
        progress=progress,
        reference=None if ref is None else (points, ref),
    )
    return Solution(result, points, predict(result.field, points), ref, s)
