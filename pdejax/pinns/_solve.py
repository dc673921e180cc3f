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
OPTIMIZERS = FIRST_PHASE + tuple(f"{o}+lbfgs" for o in FIRST_PHASE) + ("lbfgs",)


def make_optimizer(name: str, problem: Problem, settings: dict):
    """The first-phase optimizer called ``name`` (one of :data:`FIRST_PHASE`) with the settings' learning
    rate schedule, or ``None`` for the trainer's default Adam."""
    import optax

    from ._multiloss import config, lra, mconfig, multiadam, pcgrad

    schedule = optax.exponential_decay(
        float(settings["learning_rate"]), int(settings["decay_steps"]), float(settings["decay_rate"])
    )
    if name == "adam":
        return None
    if name == "config":
        return config(schedule)
    if name == "mconfig":
        return mconfig(schedule)
    if name == "multiadam":
        # the paper's grouping: PDE residual(s) in one group, boundary/initial/data terms in the other
        kinds = [t.kind == "residual" for t in problem.terms.values()]
        res = tuple(i for i, r in enumerate(kinds) if r)
        rest = tuple(i for i, r in enumerate(kinds) if not r)
        return multiadam(schedule, groups=(res, rest) if res and rest else None)
    if name == "pcgrad":
        return pcgrad(schedule)
    if name == "lra":
        reference = tuple(i for i, t in enumerate(problem.terms.values()) if t.kind == "residual") or (0,)
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
        eval_every=max(1, (int(s["steps"]) + int(s["lbfgs_steps"])) // 10),
    )
    return TrainConfig(**{**fields, **changes})


def field_for(problem: Problem, s: dict):
    """``(field, training_problem)`` from a settings dict: :func:`make_field` with the settings' model,
    size, activation and constraints, initial weights from ``fold_in(PRNGKey(seed), 1)``."""
    return make_field(
        problem,
        s["model"],
        width=int(s["width"]),
        depth=int(s["depth"]),
        activation=s["activation"],
        constraints=s["constraints"],
        key=jax.random.fold_in(jax.random.PRNGKey(int(s["seed"])), 1),
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
