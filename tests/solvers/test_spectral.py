"""Pseudo-spectral ETDRK solvers against exact solutions, convergence orders, gradients and bad input."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdejax import solvers as S
from pdejax.problems import burgers_cole_hopf


def _modes(x):
    return np.sin(x) + 0.5 * np.cos(3 * x) + 0.25 * np.sin(7 * x)


def test_heat_and_advection_match_exact_fourier_solutions():
    g = S.PeriodicGrid(64, 2 * np.pi)
    (x,) = g.axes()
    u0 = jnp.asarray(_modes(x))
    nu, c, dt, n = 0.3, 1.7, 0.01, 137
    t = n * dt
    exact_heat = (
        np.exp(-nu * t) * np.sin(x)
        + 0.5 * np.exp(-9 * nu * t) * np.cos(3 * x)
        + 0.25 * np.exp(-49 * nu * t) * np.sin(7 * x)
    )
    u = S.repeat(S.heat(g, nu, dt), n)(u0)
    np.testing.assert_allclose(u, exact_heat, atol=1e-13)
    u = S.repeat(S.advection(g, c, dt), n)(u0)
    np.testing.assert_allclose(u, _modes(x - c * t), atol=1e-12)
    # 2D heat and oblique advection
    g2 = S.PeriodicGrid((32, 48), (2 * np.pi, 4 * np.pi))
    X, Y = g2.coordinates()
    w0 = jnp.asarray(np.sin(X) * np.cos(0.5 * Y))
    np.testing.assert_allclose(S.repeat(S.heat(g2, nu, dt), n)(w0), np.exp(-1.25 * nu * t) * w0, atol=1e-13)
    adv = S.repeat(S.advection(g2, (0.4, -1.1), dt), n)(w0)
    np.testing.assert_allclose(adv, np.sin(X - 0.4 * t) * np.cos(0.5 * (Y + 1.1 * t)), atol=1e-12)


def test_coefficients_are_accurate_for_tiny_large_and_imaginary_arguments():
    # where the closed forms cancel catastrophically (|hL| << 1) and on the imaginary axis (dispersion)
    z = np.array([-1e-10, -1e-3, -0.999, -1.0, -50.0, 3.0, 1e-3j, 0.99j, 1.01j, 7j, -2 + 1j])
    e, e2, q, f1, f2, f3 = S.etdrk4_coefficients(jnp.asarray(z), 1.0)
    # reference: expm1 is exact to rounding for phi1 = (e^z - 1)/z at every z (mpmath-free)
    phi1 = np.array([np.expm1(v) / v if np.isreal(v) else (np.exp(v) - 1) / v for v in z])
    phi1_half = np.array([np.expm1(v / 2) / (v / 2) if np.isreal(v) else (np.exp(v / 2) - 1) / (v / 2) for v in z])
    np.testing.assert_allclose(e, np.exp(z), rtol=1e-14)
    np.testing.assert_allclose(q, 0.5 * phi1_half, rtol=1e-13)
    # with a constant N the ETDRK4 update f1 N + 2 f2 (N + N) + f3 N must be the exact h phi1 N
    np.testing.assert_allclose(f1 + 4 * f2 + f3, phi1, rtol=1e-13)
    # the Taylor branch and the closed-form branch agree across |z| = 1 to ~1e-15
    a, b = S.etdrk4_coefficients(jnp.asarray([0.9999999j, 1.0000001j]), 1.0)[3]
    assert abs(a - b) < 1e-6


def _ks_setup():
    g = S.PeriodicGrid(128, 32 * np.pi)
    (x,) = g.axes()
    return g, jnp.asarray(np.cos(x / 16) * (1 + np.sin(x / 16)))  # Kassam & Trefethen's initial condition


def _order(errors):
    return [math.log2(a / b) for a, b in zip(errors[:-1], errors[1:])]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_ks_temporal_convergence_order(order):
    g, u0 = _ks_setup()
    T = 4.0
    ref = S.repeat(S.kuramoto_sivashinsky(g, T / 1024, order=4), 1024)(u0)
    dts = [T / 32, T / 64, T / 128] if order > 1 else [T / 128, T / 256, T / 512]
    errs = [
        float(jnp.max(jnp.abs(S.repeat(S.kuramoto_sivashinsky(g, dt, order=order), round(T / dt))(u0) - ref)))
        for dt in dts
    ]
    assert abs(np.mean(_order(errs)) - order) < 0.3, (errs, _order(errs))


def test_allen_cahn_temporal_convergence_order_4():
    g = S.PeriodicGrid(256, 2.0, -1.0)
    (x,) = g.axes()
    u0 = jnp.asarray(0.1 * np.cos(np.pi * x) + 0.3 * np.sin(2 * np.pi * x))
    T, d, gamma = 1.0, 1e-3, 5.0
    ref = S.repeat(S.allen_cahn(g, T / 4096, d, gamma), 4096)(u0)
    errs = [float(jnp.max(jnp.abs(S.repeat(S.allen_cahn(g, T / m, d, gamma), m)(u0) - ref))) for m in (32, 64, 128)]
    assert abs(np.mean(_order(errs)) - 4) < 0.3, (errs, _order(errs))


def test_burgers_matches_cole_hopf():
    nu = 0.01 / np.pi
    g = S.PeriodicGrid(4096, 2.0, -1.0)
    (x,) = g.axes()
    u0 = jnp.asarray(-np.sin(np.pi * x))
    dt, T = 2e-4, 1.0
    traj = S.rollout(S.burgers(g, nu, dt, dealias=None), round(T / dt))(u0)
    for t in (0.25, 0.5, 1.0):
        u = np.asarray(traj[round(t / dt) - 1])
        exact = burgers_cole_hopf(np.stack([x, np.full_like(x, t)], 1), nu)
        assert np.max(np.abs(u - exact)) < 1e-7, (t, np.max(np.abs(u - exact)))


def test_kdv_soliton_travels_exactly():
    c, x0, T = 1.0, -10.0, 4.0
    g = S.PeriodicGrid(256, 60.0, -30.0)
    (x,) = g.axes()

    def soliton(t):
        return 0.5 * c / np.cosh(0.5 * np.sqrt(c) * (x - c * t - x0)) ** 2

    u = S.repeat(S.kdv(g, 1e-3, dealias=None), round(T / 1e-3))(jnp.asarray(soliton(0.0)))
    np.testing.assert_allclose(u, soliton(T), atol=1e-8)


def test_navier_stokes_exact_solutions():
    g = S.PeriodicGrid((64, 64), (2 * np.pi, 2 * np.pi))
    X, Y = g.coordinates()
    nu, dt, n = 0.05, 0.01, 200
    # Taylor-Green: vorticity proportional to the stream function, so advection vanishes identically
    w0 = jnp.asarray(2 * np.sin(X) * np.sin(Y))
    w = S.repeat(S.navier_stokes_vorticity(g, dt, nu), n)(w0)
    np.testing.assert_allclose(w, np.exp(-2 * nu * n * dt) * w0, atol=1e-12)
    # Kolmogorov forcing f = A sin(k y) from rest: a unidirectional shear flow, w = f/(nu k^2 + drag) (1 - e^{-rt})
    A, k, drag = 0.7, 4, 0.1
    r = nu * k**2 + drag
    w = S.repeat(S.navier_stokes_vorticity(g, dt, nu, drag=drag, forcing=lambda x, y: A * np.sin(k * y)), n)(
        jnp.zeros(g.n)
    )
    np.testing.assert_allclose(w, A * np.sin(k * Y) / r * (1 - np.exp(-r * n * dt)), atol=1e-12)
    # velocity of the Taylor-Green stream function psi = sin x sin y: u = psi_y, v = -psi_x
    u, v = S.velocity_from_vorticity(g, w0)
    np.testing.assert_allclose(u, np.sin(X) * np.cos(Y), atol=1e-13)
    np.testing.assert_allclose(v, -np.cos(X) * np.sin(Y), atol=1e-13)


def test_navier_stokes_nonlinear_convergence_order_4():
    g = S.PeriodicGrid((32, 32), (2 * np.pi, 2 * np.pi))
    w0 = S.truncated_fourier_series(jax.random.PRNGKey(0), g, cutoff=3) * 3.0
    T = 1.0
    ref = S.repeat(S.navier_stokes_vorticity(g, T / 1024, 0.01), 1024)(w0)
    errs = [
        float(jnp.max(jnp.abs(S.repeat(S.navier_stokes_vorticity(g, T / m, 0.01), m)(w0) - ref))) for m in (16, 32, 64)
    ]
    assert abs(np.mean(_order(errs)) - 4) < 0.3, (errs, _order(errs))


def test_rollout_vmaps_and_gradient_matches_finite_differences():
    g, u0 = _ks_setup()
    stepper = S.kuramoto_sivashinsky(g, 0.05)
    batch = jnp.stack([u0, 0.5 * u0, -u0])
    traj = jax.vmap(S.rollout(stepper, 20, include_init=True))(batch)
    assert traj.shape == (3, 21, 128)
    np.testing.assert_allclose(traj[:, 0], batch)
    np.testing.assert_allclose(traj[1, -1], S.repeat(stepper, 20)(batch[1]), atol=1e-12)

    def loss(a):
        return jnp.sum(S.rollout(stepper, 40)(a * u0)[-1] ** 2)

    h = 1e-5
    fd = (loss(1.0 + h) - loss(1.0 - h)) / (2 * h)
    np.testing.assert_allclose(jax.grad(loss)(1.0), fd, rtol=1e-6)

    # gradient with respect to a PDE coefficient (through the ETDRK coefficients)
    def loss_nu(nu):
        w = S.repeat(S.navier_stokes_vorticity(S.PeriodicGrid((16, 16), (2 * np.pi,) * 2), 0.05, nu), 10)(
            S.truncated_fourier_series(jax.random.PRNGKey(1), S.PeriodicGrid((16, 16), (2 * np.pi,) * 2), 2)
        )
        return jnp.sum(w**2)

    fd = (loss_nu(0.1 + h) - loss_nu(0.1 - h)) / (2 * h)
    np.testing.assert_allclose(jax.grad(loss_nu)(0.1), fd, rtol=1e-6)


def test_random_fields():
    g = S.PeriodicGrid(128, 1.0)
    u = S.gaussian_random_field(jax.random.PRNGKey(0), g, alpha=2.0, tau=5.0, sigma=25.0, shape=(4000,))
    k2 = g.k_squared()
    lam = np.where(k2 > 0, 625 * (k2 + 25) ** -2.0, 0)
    expected = 2 * lam[1:-1].sum() + lam[-1]  # variance = sum of eigenvalues over all (+-k) modes / volume
    assert abs(float(u.var()) / expected - 1) < 0.05
    assert abs(float(u.mean())) < 1e-12
    v = S.truncated_fourier_series(jax.random.PRNGKey(1), S.PeriodicGrid((32, 32), (1.0, 1.0)), 3, shape=(2,))
    assert v.shape == (2, 32, 32) and np.allclose(jnp.max(jnp.abs(v), axis=(1, 2)), 1.0)
    spec = np.abs(np.fft.rfft2(np.asarray(v[0])))
    assert spec[4:-4, :].max() < 1e-10 and spec[:, 4:].max() < 1e-10


def test_bad_input():
    with pytest.raises(ValueError, match="non-periodic grid"):
        S.PeriodicGrid.from_coordinates(np.linspace(0, 2 * np.pi, 65), length=2 * np.pi)
    grid = S.PeriodicGrid.from_coordinates(np.linspace(0, 2 * np.pi, 64, endpoint=False), length=2 * np.pi)
    assert grid.n == (64,) and np.isclose(grid.length[0], 2 * np.pi)
    with pytest.raises(ValueError, match="uniformly"):
        S.PeriodicGrid.from_coordinates(np.array([0.0, 0.1, 0.3, 0.4, 0.5]))
    st = S.burgers(grid, 0.01, 0.01)
    with pytest.raises(ValueError, match="drop the last sample"):
        st(jnp.zeros(65))
    with pytest.raises(ValueError, match="dt must be"):
        S.heat(grid, 0.1, -1.0)
    with pytest.raises(ValueError, match="order"):
        S.burgers(grid, 0.01, 0.01, order=5)
    with pytest.raises(ValueError, match="2D"):
        S.navier_stokes_vorticity(grid, 0.01, 0.01)
    with pytest.raises(ValueError, match="even"):
        S.PeriodicGrid(63, 1.0)
    # an explicit step far beyond the CFL limit blows up: a clear error, not silent NaNs
    (x,) = grid.axes()
    unstable = S.kuramoto_sivashinsky(S.PeriodicGrid(64, 2 * np.pi), 5.0, order=1)
    with pytest.raises(Exception, match="reduce dt"):
        jax.block_until_ready(eqx.filter_jit(S.rollout(unstable, 200))(jnp.asarray(50 * np.sin(x))))
