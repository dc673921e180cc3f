"""Your own PDE in a few lines: write the residual with pdejax's derivative helpers, get a Problem, train.

Example: 1D heat with a source, u_t = kappa u_xx + f on [0, 1] x [0, 1], u = 0 at x = 0 and x = 1,
with f chosen so that u(x, t) = exp(-t) sin(pi x) + t x (1 - x) is the exact solution.

    python examples/custom_residual.py            # ~1 minute on 2 CPU cores
    python examples/custom_residual.py --steps 300
"""

import argparse

import jax.numpy as jnp
import numpy as np

from pdejax import pinns
from pdejax.problems import Interval, Problem, Term, dirichlet_term, initial_term, partial

KAPPA = 0.1


def exact(x, t):
    return np.exp(-t) * np.sin(np.pi * x) + t * x * (1 - x)


def residual(u, p):
    """u: the field (point -> value); p = (x, t). Any derivative is partial(u, p, axes...)."""
    x, t = p[0], p[1]
    source = (
        -jnp.exp(-t) * jnp.sin(jnp.pi * x)
        + x * (1 - x)
        + KAPPA * (jnp.pi**2 * jnp.exp(-t) * jnp.sin(jnp.pi * x) + 2 * t)
    )
    return partial(u, p, 1) - KAPPA * partial(u, p, 0, 0) - source


def make_problem() -> Problem:
    return Problem(
        name="heat_with_source",
        domain=Interval(0.0, 1.0, time=(0.0, 1.0)),
        terms={
            "pde": Term(residual, "interior", n_points=1024),
            "ic": initial_term(lambda xs: jnp.sin(jnp.pi * xs[0])),
            "bc": dirichlet_term(lambda p: jnp.zeros(())),
        },
        reference_fn=lambda pts: exact(pts[:, 0], pts[:, 1]),
        eval_shape=(101, 101),
    )


def main(steps: int = 3000, lbfgs_steps: int = 300, progress: bool = True) -> float:
    problem = make_problem()
    settings = pinns.settings_for(problem, "adam+lbfgs", steps=steps, lbfgs_steps=lbfgs_steps, width=32, depth=3)
    solution = pinns.solve(problem, settings, progress=progress)
    print(f"{problem.name}: rel L2 = {solution.result.rel_l2:.2e} in {solution.result.wall_time_s:.1f} s")
    return solution.result.rel_l2


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lbfgs-steps", type=int, default=300)
    a = ap.parse_args()
    main(a.steps, a.lbfgs_steps)
