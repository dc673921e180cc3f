"""PI-HC training-step time: one global constraint solve vs K experts, side by side in one process.

Same problem, basis network (Fourier features 64x3, N = 16), training points and total PDE constraint
points; the step is value-and-grad of the PDE/IC/BC loss through the constraint layer (implicit adjoint),
the cost that dominates a training step. Prints ms per step for each and the ratio global / experts
(the issue's target: >= 2x for 4 experts). Timed blocks alternate between the two.

    python benchmarks/hc_moe_speed.py --problem diffusion_sorption --points 1024 8192 --experts 4
"""

from __future__ import annotations

import argparse
import statistics
import time


def step_fn(problem, experts: int, n_constraint: int):
    import equinox as eqx
    import jax

    from pdejax.pinns import make_hard_constraint_field

    field = make_hard_constraint_field(
        problem,
        n_basis=16,
        width=64,
        depth=3,
        experts=experts,
        n_constraint={"pde": n_constraint},
        max_steps=100,
        key=jax.random.PRNGKey(1),
    )
    x = problem.sample(jax.random.PRNGKey(0), "uniform")

    def loss(f):
        u = f.prepared()
        return sum(f.problem.term_loss(u, k, v) for k, v in x.items() if k in f.problem.terms)

    grad = eqx.filter_jit(eqx.filter_value_and_grad(loss))
    jax.block_until_ready(grad(field))  # compile
    return lambda: jax.block_until_ready(grad(field))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problem", default="diffusion_sorption")
    ap.add_argument("--points", type=int, nargs="+", default=[1024, 8192])
    ap.add_argument("--experts", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import pdejax.problems as P

    problem = P.get(args.problem)
    for n in args.points:
        fns = {1: step_fn(problem, 1, n), args.experts: step_fn(problem, args.experts, n)}
        times = {k: [] for k in fns}
        for _ in range(args.repeats):
            for k, f in fns.items():
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
        g, e = (statistics.median(times[k]) * 1e3 for k in fns)
        print(
            f"{args.problem} {n} constraint points: global {g:.1f} ms, {args.experts} experts {e:.1f} ms, "
            f"ratio {g / e:.2f}x"
        )


if __name__ == "__main__":
    main()
