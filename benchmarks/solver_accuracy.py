"""Accuracy figures of pdejax's classical solvers (float64): errors against exact solutions and measured orders.

python benchmarks/solver_accuracy.py
"""

from __future__ import annotations

import math

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from pdejax import solvers as S  # noqa: E402
from pdejax.problems import burgers_cole_hopf  # noqa: E402


def orders(errs):
    return [round(math.log2(a / b), 2) for a, b in zip(errs[:-1], errs[1:])]


def main():
    g = S.PeriodicGrid(64, 2 * np.pi)
    (x,) = g.axes()
    u0 = jnp.asarray(np.sin(x) + 0.5 * np.cos(3 * x))
    t = 1.37
    heat = S.repeat(S.heat(g, 0.3, 0.01), 137)(u0)
    exact = np.exp(-0.3 * t) * np.sin(x) + 0.5 * np.exp(-2.7 * t) * np.cos(3 * x)
    adv = S.repeat(S.advection(g, 1.7, 0.01), 137)(u0)
    print(f"heat   max error vs exact Fourier solution: {np.max(np.abs(heat - exact)):.1e}")
    print(
        f"advect max error vs exact Fourier solution: "
        f"{np.max(np.abs(adv - (np.sin(x - 1.7 * t) + 0.5 * np.cos(3 * (x - 1.7 * t))))):.1e}"
    )

    gk = S.PeriodicGrid(128, 32 * np.pi)
    (xk,) = gk.axes()
    k0 = jnp.asarray(np.cos(xk / 16) * (1 + np.sin(xk / 16)))
    ref = S.repeat(S.kuramoto_sivashinsky(gk, 4 / 1024), 1024)(k0)
    for order in (1, 2, 3, 4):
        ms = (128, 256, 512) if order == 1 else (32, 64, 128)
        errs = [
            float(jnp.max(jnp.abs(S.repeat(S.kuramoto_sivashinsky(gk, 4 / m, order=order), m)(k0) - ref))) for m in ms
        ]
        print(f"KS ETDRK{order}: errors {[f'{e:.1e}' for e in errs]} at dt = 4/{ms}, orders {orders(errs)}")

    ga = S.PeriodicGrid(256, 2.0, -1.0)
    (xa,) = ga.axes()
    a0 = jnp.asarray(0.1 * np.cos(np.pi * xa) + 0.3 * np.sin(2 * np.pi * xa))
    ref = S.repeat(S.allen_cahn(ga, 1 / 4096, 1e-3, 5.0), 4096)(a0)
    errs = [float(jnp.max(jnp.abs(S.repeat(S.allen_cahn(ga, 1 / m, 1e-3, 5.0), m)(a0) - ref))) for m in (32, 64, 128)]
    print(f"Allen-Cahn ETDRK4: errors {[f'{e:.1e}' for e in errs]}, orders {orders(errs)}")

    nu = 0.01 / np.pi
    gb = S.PeriodicGrid(4096, 2.0, -1.0)
    (xb,) = gb.axes()
    traj = S.rollout(S.burgers(gb, nu, 2e-4, dealias=None), 5000)(jnp.asarray(-np.sin(np.pi * xb)))
    worst = max(
        float(
            np.max(
                np.abs(
                    np.asarray(traj[round(tt / 2e-4) - 1])
                    - burgers_cole_hopf(np.stack([xb, np.full_like(xb, tt)], 1), nu)
                )
            )
        )
        for tt in (0.25, 0.5, 0.75, 1.0)
    )
    print(f"Burgers (N=4096, dt=2e-4) max error vs Cole-Hopf over t in (0.25, 0.5, 0.75, 1): {worst:.1e}")

    errs = []
    for n in (17, 33, 65, 129):
        xs = np.linspace(0, 1, n)
        X, Y = np.meshgrid(xs, xs, indexing="ij")
        u = np.sin(np.pi * X) * np.sin(np.pi * Y) * X
        ux = (np.pi * np.cos(np.pi * X) * X + np.sin(np.pi * X)) * np.sin(np.pi * Y)
        uy = np.pi * np.sin(np.pi * X) * np.cos(np.pi * Y) * X
        lap = (-(np.pi**2) * np.sin(np.pi * X) * X + 2 * np.pi * np.cos(np.pi * X)) * np.sin(np.pi * Y) - np.pi**2 * u
        a = 1 + X * Y**2
        f = -(a * lap + Y**2 * ux + 2 * X * Y * uy)
        errs.append(float(np.max(np.abs(np.asarray(S.darcy(jnp.asarray(a), jnp.asarray(f))) - u))))
    print(f"Darcy (a = 1 + x y^2, CG) max errors {[f'{e:.1e}' for e in errs]} at n = 17..129, orders {orders(errs)}")


if __name__ == "__main__":
    main()
