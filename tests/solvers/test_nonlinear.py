"""Nonlinear steady solves (optimistix) with implicit differentiation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest

from pdejax import solvers as S


def _manufactured(n, c=1.0):
    x = np.linspace(0, 1, n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    u = np.sin(np.pi * X) * np.sin(np.pi * Y) * (1 + X)
    lap = -2 * np.pi**2 * np.sin(np.pi * X) * np.sin(np.pi * Y) * (1 + X) + 2 * np.pi * np.cos(np.pi * X) * np.sin(
        np.pi * Y
    )
    return u, -lap + c * u**3


@pytest.mark.parametrize("solver", ["newton", "lm"])
def test_nonlinear_poisson_second_order(solver):
    errs = []
    for n in (9, 17, 33):
        u, f = _manufactured(n)
        num = S.nonlinear_poisson(lambda v, c: c * v**3, jnp.asarray(f), 1.0, solver=solver)
        errs.append(float(np.max(np.abs(np.asarray(num) - u))))
    orders = [math.log2(a / b) for a, b in zip(errs[:-1], errs[1:])]
    assert all(abs(o - 2) < 0.25 for o in orders), (errs, orders)


def test_implicit_gradient_matches_unrolled_and_finite_differences():
    u_ex, f = _manufactured(17, c=5.0)
    f = jnp.asarray(f)

    def loss(c, adjoint=None):
        u = S.nonlinear_poisson(lambda v, c: c * v**3 + jnp.sinh(v), f, c, adjoint=adjoint)
        return jnp.sum(u**2)

    h = 1e-5
    fd = (loss(5.0 + h) - loss(5.0 - h)) / (2 * h)
    implicit = jax.grad(loss)(5.0)
    unrolled = jax.grad(lambda c: loss(c, optx.RecursiveCheckpointAdjoint()))(5.0)
    np.testing.assert_allclose(implicit, fd, rtol=1e-6)
    np.testing.assert_allclose(implicit, unrolled, rtol=1e-8)


def test_stats_and_non_convergence_is_reported():
    u, f = _manufactured(9)
    res = lambda v, a: v**3 + v - 2.0  # noqa: E731
    sol, stats = S.solve_steady(res, jnp.zeros(3), return_stats=True)
    np.testing.assert_allclose(sol, 1.0, atol=1e-10)
    assert bool(stats.converged) and float(stats.residual) < 1e-9 and 0 < int(stats.steps) <= 50
    with pytest.raises(Exception, match="did not converge within 2 steps"):
        jax.block_until_ready(S.solve_steady(lambda v, a: jnp.exp(v) - 1e6, jnp.zeros(2), max_steps=2))
    with pytest.raises(ValueError, match="nonlinear solver"):
        S.solve_steady(res, jnp.zeros(3), solver="bisect")
