"""TENG: the natural-gradient step against an independent least-squares projection, Heun's order, bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import pdejax.problems as P
from pdejax.pinns import Field, TengConfig, spatial_rhs, teng, teng_field
from pdejax.problems import Interval, Problem, Term, initial_term, partial, periodic_term

NU = 0.3


def heat1d(T: float = 0.4, nt: int = 5) -> Problem:
    """u_t = NU u_xx on [0, 2 pi) periodic, u0 = sin x + 0.5 cos 2x: u = e^{-NU t} sin x + 0.5 e^{-4 NU t} cos 2x."""

    def exact(x, t):
        return np.exp(-NU * t) * np.sin(x) + 0.5 * np.exp(-4 * NU * t) * np.cos(2 * x)

    return Problem(
        name="heat1d",
        domain=Interval(0.0, 2 * np.pi, time=(0.0, T)),
        terms={
            "pde": Term(lambda u, p: partial(u, p, 1) - NU * partial(u, p, 0, 0), "interior", 256),
            "ic": initial_term(lambda xs: jnp.sin(xs[0]) + 0.5 * jnp.cos(2 * xs[0]), 64),
            "periodic": periodic_term(0, 2 * np.pi, derivatives=1, n_points=32),
        },
        reference_fn=lambda p: exact(p[:, 0], p[:, 1]),
        eval_shape=(64, nt),
    )


def linear_field(problem: Problem) -> Field:
    """u(x) = w . (cos x, sin x, cos 2x, sin 2x) + b: the heat flow stays in this space, so every projection is
    exact and TENG reduces to the time integrator applied to the coefficients."""
    backbone = eqx.nn.Linear(4, 1, key=jax.random.PRNGKey(0))
    return Field(backbone, (0.0,), (2 * np.pi,), periodic=(0,), harmonics=2)


def test_spatial_rhs_is_the_pde_operator():
    # heat2d: N[u] = nu Lap u, checked on a function with a known Laplacian
    p = P.get("heat2d")
    rhs = spatial_rhs(p)
    u = lambda x: jnp.sin(x[0]) * jnp.cos(2 * x[1])  # noqa: E731
    x = jnp.array([0.3, 1.1])
    assert float(rhs(u, x, 0.0)) == pytest.approx(float(-0.1 * 5 * u(x)), rel=1e-12)


@pytest.mark.parametrize("integrator,order", [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_integrator_order_on_exact_manifold(integrator, order):
    # With a field whose tangent space contains the flow, the error is the integrator's alone: halving dt
    # divides it by 2^order.
    errs = []
    for dt in (0.1, 0.05):
        prob = heat1d()
        cfg = TengConfig(dt=dt, integrator=integrator, iterations=1, n_points=32, fit_steps=0, fit_gn_steps=3)
        res = teng(prob, cfg, field=linear_field(prob), progress=False)
        errs.append(res.rel_l2)
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(rates - order) < 0.15), (errs, rates)


def test_euler_step_matches_first_order_update():
    # One TENG-Euler step on a small tanh network moves u by dt * P N[u] + O(dt^2), where P projects onto
    # the span of the parameter Jacobian; P N[u] is computed here independently by NumPy's SVD least squares.
    prob = heat1d()
    cfg = TengConfig(width=6, depth=1, n_points=48, harmonics=2, fit_steps=0, fit_gn_steps=0, iterations=3)
    field = teng_field(prob, cfg, jax.random.PRNGKey(1))
    params, static = eqx.partition(field, eqx.is_inexact_array)
    theta, unravel = ravel_pytree(params)
    X = jnp.linspace(0, 2 * np.pi, 48, endpoint=False)[:, None]
    u_at = lambda th: jax.vmap(eqx.combine(unravel(th), static))(X)  # noqa: E731
    J = np.asarray(jax.jacfwd(u_at)(theta))
    rhs = spatial_rhs(prob)
    N = np.asarray(jax.vmap(lambda x: rhs(field, x, 0.0))(X))
    PN = J @ np.linalg.lstsq(J, N, rcond=None)[0]
    from pdejax.pinns._teng import _projector, _stepper

    jac_at = lambda th, pts: jax.jacfwd(lambda t: jax.vmap(eqx.combine(unravel(t), static))(pts))(th)  # noqa: E731
    n_at = lambda th, t: jax.vmap(lambda x: rhs(eqx.combine(unravel(th), static), x, t))(X)  # noqa: E731
    uX = lambda th, pts: jax.vmap(eqx.combine(unravel(th), static))(pts)  # noqa: E731
    devs = []
    for dt in (1e-3, 1e-4):
        c = TengConfig(dt=dt, integrator="euler", iterations=3, damping=1e-14)
        step = jax.jit(_stepper(uX, n_at, _projector(uX, jac_at, X, theta.size, c, 0), X, c))
        th1, _ = step(theta, jnp.asarray(1e-14), jnp.asarray(0.0), jax.random.PRNGKey(0))
        du = np.asarray(u_at(th1) - u_at(theta)) / dt
        devs.append(np.linalg.norm(du - PN) / np.linalg.norm(PN))
    assert devs[1] < 2e-3
    assert devs[1] < 0.3 * devs[0]  # the deviation is O(dt)


def test_teng_heat2d_small_run_is_accurate():
    # A small network over a short horizon: the initial fit and the evolution stay at the 1e-3 level.
    prob = P.get("heat2d", T=0.5)
    cfg = TengConfig(
        dt=0.0625, integrator="rk4", n_points=24, width=12, depth=2, fit_steps=1500, fit_gn_steps=60, iterations=2
    )
    res = teng(prob, cfg, progress=False)
    assert res.fit_rel_l2 < 2e-3
    assert res.rel_l2 < 5e-3
    assert res.history_t[0] == 0.0 and res.history_t[-1] == pytest.approx(0.5)
    assert np.all(np.isfinite(res.prediction))


def test_bad_input():
    with pytest.raises(ValueError, match="no time dimension"):
        teng(P.get("poisson2d"), TengConfig(), progress=False)
    with pytest.raises(ValueError, match="dt must be"):
        TengConfig(dt=0.0)
    with pytest.raises(ValueError, match="dt must be"):
        TengConfig(dt=-1e-3)
    with pytest.raises(ValueError, match="integrator"):
        TengConfig(integrator="rk7")
    with pytest.raises(ValueError, match="divide"):
        teng(heat1d(), TengConfig(dt=0.03), progress=False)
    with pytest.raises(ValueError, match="periodic on every spatial axis"):
        teng(P.get("burgers"), TengConfig(dt=0.01), progress=False)


@pytest.mark.parametrize("lstsq", ["normal", "svd"])
def test_parameter_subsets_and_other_solvers_reach_the_full_projection(lstsq):
    # Random subsets of 3 of the 5 parameters per Gauss-Newton iteration (the paper's trick for large
    # Jacobians) and the Cholesky/SVD solvers converge to the same projections as the full default QR solve.
    prob = heat1d()
    base = dict(dt=0.1, integrator="rk4", n_points=32, fit_steps=0, fit_gn_steps=3)
    full = teng(prob, TengConfig(**base, iterations=1), field=linear_field(prob), progress=False)
    cfg = TengConfig(**{**base, "fit_gn_steps": 40}, iterations=12, n_params=3, fit_n_params=-1)
    sub = teng(prob, cfg, field=linear_field(prob), progress=False)
    other = teng(prob, TengConfig(**base, iterations=1, lstsq=lstsq), field=linear_field(prob), progress=False)
    assert full.rel_l2 < 1e-6
    assert abs(sub.rel_l2 - full.rel_l2) < 0.05 * full.rel_l2
    assert abs(other.rel_l2 - full.rel_l2) < 1e-3 * full.rel_l2
