"""Every reference against an independent computation; every residual vanishes on its reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import iv

import pdejax.problems as P
from pdejax.problems import burgers_cole_hopf
from pdejax.problems._periodic import PeriodicSpectral1D


def _fd_residuals(problem, x, t, steps, residual):
    """Max PDE residual of the reference by centred second-order finite differences, for each step in
    ``steps``, from one call of the reference: a time-stepped reference then integrates once over all
    the stencils' times instead of once per stencil."""
    shifts = [(0.0, 0.0)] + [s for h in steps for s in ((0, h), (0, -h), (h, 0), (-h, 0))]
    pts = np.concatenate([np.stack([x + dx, t + dt], 1) for dx, dt in shifts])
    values = problem.reference(pts).reshape(len(shifts), x.size)
    u, out = values[0], []
    for i, h in enumerate(steps):
        tp, tm, xp, xm = values[1 + 4 * i : 5 + 4 * i]
        ut, ux, uxx = (tp - tm) / (2 * h), (xp - xm) / (2 * h), (xp - 2 * u + xm) / h**2
        out.append(np.abs(residual(u, ut, ux, uxx)).max())
    return out


def _check_fd_convergence(problem, x, t, residual, h=3e-3):
    # A correct reference makes the FD residual pure truncation error: O(h^2), so dividing h by
    # sqrt(10) divides it by 10 (we accept 7..13), down to a small absolute level.
    r1, r2 = _fd_residuals(problem, x, t, (h, h / math.sqrt(10)), residual)
    assert 7 < r1 / r2 < 13, (r1, r2)
    return r2


# ------------------------------------------------------------------------------------------- Burgers
def test_burgers_quadrature_converged():
    rng = np.random.default_rng(0)
    p = np.stack([rng.uniform(-1, 1, 3000), rng.uniform(0, 1, 3000)], 1)
    nu = 0.01 / math.pi
    np.testing.assert_allclose(burgers_cole_hopf(p, nu), burgers_cole_hopf(p, nu, nodes=25), atol=1e-13)


def test_burgers_max_slope_matches_basdevant():
    # Basdevant et al. (1986), Table: max |u_x| at x = 0 is 152.00516, reached at t = 1.6037/pi.
    # Centred differences with h = 1e-6 (O(h^2) error ~1e-8 relative) of the Cole-Hopf reference.
    h, t = 1e-6, 1.6037 / math.pi
    u = burgers_cole_hopf(np.array([[h, t], [-h, t]]), 0.01 / math.pi)
    slope = (u[0] - u[1]) / (2 * h)
    assert abs(-slope - 152.00516) < 2e-5


def test_burgers_initial_boundary_and_residual():
    pb = P.get("burgers")
    x = np.linspace(-1, 1, 11)
    np.testing.assert_allclose(pb.reference(np.stack([x, 0 * x], 1)), -np.sin(np.pi * x), atol=1e-15)
    t = np.linspace(0.1, 1, 10)
    np.testing.assert_allclose(pb.reference(np.stack([np.ones(10), t], 1)), 0, atol=1e-12)
    np.testing.assert_allclose(pb.reference(np.stack([-np.ones(10), t], 1)), 0, atol=1e-12)
    rng = np.random.default_rng(1)
    nu = pb.params["nu"]
    r = _check_fd_convergence(
        pb, rng.uniform(-0.9, 0.9, 30), rng.uniform(0.05, 0.25, 30), lambda u, ut, ux, uxx: ut + u * ux - nu * uxx
    )
    assert r < 1e-4


# ---------------------------------------------------------------------------------------- Allen-Cahn
def _allen_cahn(name, n, dt, start):
    return PeriodicSpectral1D(
        name,
        {"d": 1e-4, "gamma": 5.0},
        -1.0,
        2.0,
        lambda x: x**2 * np.cos(np.pi * x),
        lambda k: -1e-4 * k**2 + 5.0,
        lambda u: -5.0 * u**3,
        n=n,
        dt=dt,
        start=start,
    )


def _agree(u, v, atol):
    x = np.linspace(-1, 1, 401)
    for t in (0.05, 0.5, 1.0):
        pts = np.stack([x, np.full_like(x, t)], 1)
        np.testing.assert_allclose(u(pts), v(pts), atol=atol)


def test_allen_cahn_reference_is_converged_against_a_coarser_solve():
    # half the modes and twice the step (4 s instead of the 80 s of the finer solve below) move the solution
    # by 1.1e-9 (measured; the step alone by 1.4e-11): ETDRK4's error falls as dt^4 and the Fourier error
    # exponentially in n, so the reference's own error is far below that; a wrong coefficient or a
    # resolution that does not resolve the interfaces moves it by orders of magnitude more
    _agree(P.get("allen_cahn").reference, _allen_cahn("allen_cahn_test_coarse", 2048, 2e-4, (16384, 0.02)), 3e-9)


@pytest.mark.slow
def test_allen_cahn_reference_converged_under_refinement():
    # the paper-level check (80 s on 2 cores): twice the modes, half the step
    _agree(P.get("allen_cahn").reference, _allen_cahn("allen_cahn_test_fine", 8192, 5e-5, (65536, 0.02)), 2e-9)


def test_allen_cahn_initial_condition_and_residual():
    pb = P.get("allen_cahn")
    x = np.linspace(-1, 1, 101)
    np.testing.assert_allclose(pb.reference(np.stack([x, 0 * x], 1)), x**2 * np.cos(np.pi * x), atol=1e-15)
    rng = np.random.default_rng(2)
    r = _check_fd_convergence(
        pb,
        rng.uniform(-0.9, 0.9, 20),
        np.round(rng.uniform(0.2, 0.9, 20), 3),
        lambda u, ut, ux, uxx: ut - 1e-4 * uxx - 5 * (u - u**3),
    )
    assert r < 1e-3


# ------------------------------------------------------------------------------- reaction-diffusion
def test_reaction_diffusion_residual_and_refinement():
    pb = P.get("reaction_diffusion")
    rng = np.random.default_rng(3)
    r = _check_fd_convergence(
        pb,
        rng.uniform(0.2, 6.0, 20),
        np.round(rng.uniform(0.2, 0.9, 20), 3),
        lambda u, ut, ux, uxx: ut - 5 * uxx - 5 * u * (1 - u),
    )
    assert r < 1e-4
    finer = PeriodicSpectral1D(
        "rd_test_fine",
        {"nu": 5.0, "rho": 5.0},
        0.0,
        2 * np.pi,
        lambda x: np.exp(-0.5 * ((x - np.pi) / (np.pi / 4)) ** 2),
        lambda k: -5.0 * k**2 + 5.0,
        lambda u: -5.0 * u**2,
        n=1024,
        dt=5e-5,
    )
    pts = np.stack([np.linspace(0, 2 * np.pi, 200), np.full(200, 0.7)], 1)
    np.testing.assert_allclose(pb.reference(pts), finer(pts), atol=1e-10)


def test_reaction_without_diffusion_is_the_logistic_ode():
    # nu -> 0 decouples the points: u = u0 e^{rho t} / (u0 e^{rho t} + 1 - u0) (Krishnapriyan et al.)
    pb = P.get("reaction_diffusion", nu=1e-12, rho=3.0)
    x = np.linspace(1.0, 5.0, 50)
    t = 0.8
    u0 = np.exp(-0.5 * ((x - np.pi) / (np.pi / 4)) ** 2)
    exact = u0 * np.exp(3 * t) / (u0 * np.exp(3 * t) + 1 - u0)
    # the Gaussian's periodic extension has a small kink whose Fourier tail, undamped without
    # diffusion, limits agreement to ~1e-6
    np.testing.assert_allclose(pb.reference(np.stack([x, np.full_like(x, t)], 1)), exact, atol=1e-5)


# ------------------------------------------------------------------------- TENG's 1D settings
@pytest.mark.parametrize(
    "name,residual,fine",
    [
        (
            "allen_cahn_teng",
            lambda u, ut, ux, uxx: ut - 0.005 * uxx - (u - u**3),
            dict(symbol=lambda k: -0.005 * k**2 + 1.0, nonlinear=lambda u: -(u**3), n=2048, dt=1e-3),
        ),
        (
            "burgers_teng",
            lambda u, ut, ux, uxx: ut + u * ux - 0.01 * uxx,
            dict(symbol=lambda k: -0.01 * k**2, nonlinear=None, flux=lambda u: 0.5 * u**2, n=4096, dt=5e-4),
        ),
    ],
)
def test_teng_1d_references(name, residual, fine):
    pb = P.get(name)
    x = np.linspace(0, 2 * np.pi, 256, endpoint=False)
    u0 = 0.04 * np.cosh(3 * np.sin(x)) * np.sinh(np.sin(x))
    np.testing.assert_allclose(pb.reference(np.stack([x, 0 * x], 1)), u0, atol=1e-15)
    rng = np.random.default_rng(5)
    # the residual by finite differences is pure truncation error (O(h^2)); the front of Burgers is
    # resolved with h ~ 1e-3 (its width is ~0.04)
    r = _check_fd_convergence(pb, rng.uniform(0.3, 6.0, 6), np.round(rng.uniform(0.5, 3.9, 6), 2), residual)
    assert r < 1e-4
    finer = PeriodicSpectral1D(
        name + "_test_fine",
        dict(pb.params),
        0.0,
        2 * np.pi,
        lambda y: 0.04 * np.cosh(3 * np.sin(y)) * np.sinh(np.sin(y)),
        **fine,
    )
    pts = np.stack([np.tile(x, 3), np.repeat([1.0, 2.5, 4.0], x.size)], 1)
    np.testing.assert_allclose(pb.reference(pts), finer(pts), atol=1e-9)


# --------------------------------------------------------------------------------------------- heat
def test_heat2d_matches_bessel_series():
    # From e^{z cos a} = I0(z) + 2 sum_k I_k(z) cos(k a) with a = x - pi/2:
    # cosh(3 sin x) = I0(3) + 2 sum_m (-1)^m I_2m(3) cos(2mx),
    # sinh(sin y) = 2 sum_m (-1)^m I_2m+1(1) sin((2m+1)y); each mode decays as exp(-nu k^2 t).
    nu, t = 0.1, 1.7
    pb = P.get("heat2d", nu=nu)
    rng = np.random.default_rng(4)
    x, y = rng.uniform(0, 2 * np.pi, (2, 200))
    m = np.arange(1, 30)
    decay = np.exp(-nu * (2 * m) ** 2 * t)
    fx = iv(0, 3) + 2 * np.sum((-1.0) ** m * iv(2 * m, 3) * np.cos(np.outer(x, 2 * m)) * decay, 1)
    m = np.arange(0, 30)
    k = 2 * m + 1
    fy = 2 * np.sum((-1.0) ** m * iv(k, 1) * np.sin(np.outer(y, k)) * np.exp(-nu * k**2 * t), 1)
    ref = pb.reference(np.stack([x, y, np.full_like(x, t)], 1))
    np.testing.assert_allclose(ref, 0.04 * fx * fy, atol=1e-14)


# ------------------------------------------------- analytic solutions: every loss term vanishes on them
def _exact_fields():
    lam = 10 - math.sqrt(100 + 4 * math.pi**2)

    def kovasznay(x):
        e = jnp.exp(lam * x[0])
        return jnp.stack(
            [
                1 - e * jnp.cos(2 * jnp.pi * x[1]),
                lam / (2 * jnp.pi) * e * jnp.sin(2 * jnp.pi * x[1]),
                0.5 * (1 - jnp.exp(2 * lam * x[0])),
            ]
        )

    return {
        ("convection", (("beta", 30.0),)): lambda x: jnp.sin(x[0] - 30.0 * x[1]),
        ("convection", (("beta", 30.0), ("nu", 0.5))): lambda x: jnp.exp(-0.5 * x[1]) * jnp.sin(x[0] - 30.0 * x[1]),
        ("poisson2d", (("k", 2.0),)): lambda x: jnp.sin(2 * jnp.pi * x[0]) * jnp.sin(2 * jnp.pi * x[1]) + x[0] * x[1],
        ("helmholtz2d", ()): lambda x: jnp.sin(jnp.pi * x[0]) * jnp.sin(4 * jnp.pi * x[1]),
        ("kovasznay", ()): kovasznay,
    }


@pytest.mark.parametrize("case", list(_exact_fields()), ids=lambda c: c[0])
def test_exact_solution_zeroes_every_term_and_matches_reference(case):
    name, params = case
    u = _exact_fields()[case]
    pb = P.get(name, **dict(params))
    pts = pb.sample(jax.random.PRNGKey(0))
    losses = np.asarray(pb.losses(u, pts))
    assert losses.shape == (len(pb.terms),)
    assert np.all(losses < 1e-24), dict(zip(pb.term_names, losses))
    grid, _ = pb.eval_points()
    grid = grid[::37]
    np.testing.assert_allclose(pb.reference(grid), np.asarray(jax.vmap(u)(jnp.asarray(grid))), atol=1e-13)


def test_heat2d_terms_vanish_on_a_single_mode():
    # u = e^{-2 nu t} sin x cos y solves the heat equation and is periodic: pde and periodic terms vanish
    pb = P.get("heat2d")
    u = lambda x: jnp.exp(-0.2 * x[2]) * jnp.sin(x[0]) * jnp.cos(x[1])  # noqa: E731
    losses = dict(zip(pb.term_names, np.asarray(pb.losses(u, pb.sample(jax.random.PRNGKey(1))))))
    assert losses["pde"] < 1e-28 and losses["periodic_x"] < 1e-28 and losses["periodic_y"] < 1e-28
    assert losses["ic"] > 1e-3  # a different initial condition is penalised


# ------------------------------------------------------------------------------------------ registry
def test_registry_names_and_params():
    assert {
        "burgers",
        "allen_cahn",
        "poisson2d",
        "helmholtz2d",
        "heat2d",
        "convection",
        "reaction_diffusion",
        "kovasznay",
        "diffusion_sorption",
        "navier_stokes2d",
    } <= set(P.names())
    assert P.get("convection", beta="50").params["beta"] == 50.0
    assert P.parameters("helmholtz2d") == {"a1": 1.0, "a2": 4.0, "k": 1.0}


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("nope", {}, "unknown problem.*burgers"),
        ("convection", {"gamma": 1}, "unknown parameter.*beta"),
        ("convection", {"beta": "fast"}, "must be of type float"),
        ("burgers", {"nu": -1.0}, "nu must be"),
        ("burgers", {"nu": "nan"}, "nu must be"),
    ],
)
def test_registry_errors(name, params, match):
    with pytest.raises(ValueError, match=match):
        P.get(name, **params)
