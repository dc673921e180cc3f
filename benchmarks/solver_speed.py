"""Spectral solver speed: pdejax vs exponax on the same 1D Kuramoto–Sivashinsky and 2D Navier–Stokes rollouts.

Both use ETDRK4, float64, the same grid, time step, dealiasing (exponax's square filter keeps
|m| <= 2/3 (N/2) - 1 per axis; pdejax is given the same cut-off) and the same initial state. The script
checks that the two trajectories agree, then times jitted rollouts, alternating the two libraries so
both see the same machine load, and prints the median times and the ratio pdejax / exponax (lower is
better; target <= 1.0).

    pip install -e ".[bench]"        # exponax
    python benchmarks/solver_speed.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402


def _timed(fn, x, rounds):
    out = jax.block_until_ready(fn(x))  # compile + first run
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append(time.perf_counter() - t)
    return out, times


def case_ks(n_steps: int):
    import exponax as ex

    from pdejax import solvers as S

    L, N, dt = 60.0, 256, 0.1
    u0 = ex.ic.RandomTruncatedFourierSeries(1, cutoff=5)(N, key=jax.random.PRNGKey(0))  # (1, N)
    theirs = jax.jit(ex.rollout(ex.stepper.KuramotoSivashinskyConservative(1, L, N, dt, order=4), n_steps))
    frac = ((2 / 3) * (N // 2) - 1 + 0.5) / (N // 2)  # exponax's cut-off |m| <= 2/3 (N/2) - 1
    ours = jax.jit(S.rollout(S.kuramoto_sivashinsky(S.PeriodicGrid(N, L), dt, dealias=frac), n_steps))
    return f"KS 1D N={N} L={L} dt={dt} x{n_steps}", theirs, ours, u0, lambda v: v[:, 0]


def case_ns(n_steps: int):
    import exponax as ex

    from pdejax import solvers as S

    L, N, dt, nu = 1.0, 128, 0.01, 3e-4
    w0 = ex.ic.RandomTruncatedFourierSeries(2, cutoff=5, max_one=True)(N, key=jax.random.PRNGKey(1))
    stepper = ex.stepper.NavierStokesVorticity(2, L, N, dt, diffusivity=nu, drag=0.0, order=4)
    theirs = jax.jit(ex.rollout(stepper, n_steps))
    frac = ((2 / 3) * (N // 2) - 1 + 0.5) / (N // 2)
    ours_step = S.navier_stokes_vorticity(S.PeriodicGrid((N, N), (L, L)), dt, nu, dealias=frac)
    # exponax's stream function solves Lap psi = +w, so its vorticity is the negative of ours
    ours = jax.jit(lambda w: -S.rollout(ours_step, n_steps)(-w))
    return f"NS 2D {N}x{N} L={L} nu={nu} dt={dt} x{n_steps}", theirs, ours, w0, lambda v: v[:, 0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--ks-steps", type=int, default=1000)
    ap.add_argument("--ns-steps", type=int, default=200)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    results = {}
    for make, steps in ((case_ks, a.ks_steps), (case_ns, a.ns_steps)):
        name, theirs, ours, x0, strip = make(steps)
        ref = np.asarray(strip(jax.block_until_ready(theirs(x0))))
        mine = np.asarray(ours(x0[0]))
        # KS is chaotic: compare over the first 200 steps, where rounding differences are still tiny
        horizon = min(200, steps)
        diff = float(np.max(np.abs(mine[:horizon] - ref[:horizon])) / np.max(np.abs(ref[:horizon])))
        t_theirs, t_ours = [], []
        for _ in range(a.rounds):  # interleaved
            t_theirs += _timed(theirs, x0, 1)[1]
            t_ours += _timed(ours, x0[0], 1)[1]
        mt, mo = statistics.median(t_theirs), statistics.median(t_ours)
        results[name] = {"exponax_s": mt, "pdejax_s": mo, "ratio": mo / mt, "max_rel_diff": diff}
        print(
            f"{name}: exponax {mt * 1e3:.1f} ms, pdejax {mo * 1e3:.1f} ms, ratio pdejax/exponax = {mo / mt:.2f} "
            f"(max rel. difference of the trajectories over {horizon} steps: {diff:.1e})"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
