"""Curriculum training: a PINN trained on a sequence of problems, each stage warm-started from the last."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import numpy as np

from ..problems import Problem, get
from ._field import predict
from ._trainer import train


def ramp(target: float, stages: int, start: float = 1.0) -> list[float]:
    """``stages`` parameter values rising linearly from ``start`` to ``target`` (the last one is ``target``).

    ``ramp(50, 5)`` is ``[1.0, 13.25, 25.5, 37.75, 50.0]``.
    """
    if stages < 1:
        raise ValueError(f"stages must be >= 1, got {stages}")
    if stages == 1:
        return [float(target)]
    return [float(v) for v in np.linspace(start, target, stages)]


def curriculum_problems(name: str, param: str, values: Sequence[float], **fixed) -> list[Problem]:
    """The registered problem ``name`` with ``param`` taking each of ``values`` (other parameters ``fixed``)."""
    return [get(name, **{**fixed, param: v}) for v in values]


def curriculum(problems: Sequence[Problem], settings: dict, *, progress: bool = True):
    """Curriculum regularisation (Krishnapriyan et al., NeurIPS 2021): train a PINN on ``problems[0]``
    (an easy parameter value), then on each next problem starting from the previous weights.

    The first-phase steps and L-BFGS iterations of ``settings`` (see :func:`pdejax.pinns.settings_for`) are
    the total budget, split evenly over the stages, so a curriculum costs about what one plain run costs.
    All problems must share domain and terms (they differ in parameters only).

    Args:
        problems: the stages; the last one is the problem that is solved.
        settings: PINN settings (model, size, constraints, steps, lbfgs_steps, ...).
        progress: show a progress bar per stage.

    Returns:
        a :class:`pdejax.pinns.Solution` for ``problems[-1]`` whose ``result`` is the last stage's (its
        ``wall_time_s`` and ``steps`` cover all stages).
    """
    from ._solve import Solution, field_for, train_config

    if not problems:
        raise ValueError("a curriculum needs at least one problem")
    names = {tuple(p.terms) for p in problems}
    if len(names) != 1 or len({p.domain for p in problems}) != 1:
        raise ValueError("curriculum stages must share the domain and the loss terms")
    n = len(problems)
    steps, lbfgs = int(settings["steps"]), int(settings["lbfgs_steps"])
    backbone = None
    wall, total_steps = 0.0, 0
    for i, problem in enumerate(problems):
        field, train_problem = field_for(problem, settings)
        if backbone is not None:
            # the new stage's field (its constraints may close over the new parameters) with the old weights
            field = eqx.tree_at(lambda f: f.backbone, field, backbone)
        # an even split, with the remainder on the last (target) stage
        s_i = steps // n + (steps % n if i == n - 1 else 0)
        l_i = lbfgs // n + (lbfgs % n if i == n - 1 else 0)
        config = train_config(settings, steps=s_i, lbfgs_steps=l_i, seed=int(settings["seed"]) + i, eval_every=0)
        last = i == n - 1
        result = train(train_problem, field, config, progress=progress, reference=None if last else False)
        backbone = result.field.backbone
        wall += result.wall_time_s
        total_steps += result.steps
    result.wall_time_s, result.steps = wall, total_steps
    points, _ = problems[-1].eval_points()
    return Solution(result, points, predict(result.field, points), problems[-1].reference(points), dict(settings))
