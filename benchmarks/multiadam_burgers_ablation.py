"""MultiAdam on the `burgers` preset (soft constraints): which of its settings moves the error.

Trains the preset network as ``pdejax compare burgers --methods multiadam --constraints soft`` does, with
MultiAdam variants: ``default`` (groups [PDE] and [IC + BC], weights 1/2 each, betas 0.99/0.99), ``wP`` (the
PDE group's weight P, the other's 1 - P), ``b2B`` (second-moment decay B), and ``adam`` for reference:

    python benchmarks/multiadam_burgers_ablation.py --steps 10000 --variants default,w0.9,w0.1,b20.999
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pdejax import pinns, problems
from pdejax.pinns._multiloss import multiadam
from pdejax.pinns._solve import field_for, lr_schedule, make_optimizer, residual_groups, train_config


def optimizer_for(variant: str, problem, s: dict):
    """The first-phase optimizer of ``variant`` (``None``: the trainer's Adam)."""
    schedule, groups = lr_schedule(s), residual_groups(problem)  # as make_optimizer builds the default
    if variant == "adam":
        return None
    if variant == "default":
        return make_optimizer("multiadam", problem, s)
    if variant.startswith("w"):
        w = float(variant[1:])
        return multiadam(schedule, groups=groups, group_weights=np.array([w, 1.0 - w]))
    if variant.startswith("b2"):
        return multiadam(schedule, b2=float(variant[2:]), groups=groups)
    raise ValueError(f"unknown variant {variant!r}: adam, default, w<P>, b2<B>")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default="default,w0.9,w0.1,b20.999")
    a = p.parse_args()
    problem = problems.get("burgers")
    points, _ = problem.eval_points()
    ref = problem.reference(points)
    for variant in a.variants.split(","):
        s = pinns.settings_for(problem, "multiadam", seed=a.seed, steps=a.steps, constraints="soft")
        field, train_problem = field_for(problem, s)
        opt = optimizer_for(variant, train_problem, s)
        t0 = time.perf_counter()
        result = pinns.train(train_problem, field, train_config(s), optimizer=opt, progress=False)
        pred = np.ravel(pinns.predict(result.field, points))
        err = float(np.linalg.norm(pred - np.ravel(ref)) / np.linalg.norm(ref))
        print(f"{variant}: rel. L2 {err:.3e} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
