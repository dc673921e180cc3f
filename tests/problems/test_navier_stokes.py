"""navier_stokes2d: the residual against independent spectral computations, the reference against the PDE."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pdejax.problems as P
from pdejax.problems._navier_stokes import _NavierStokesReference, _psi0_np

NU = 0.01


def _spectral_residual(psi: np.ndarray, psi_t: np.ndarray) -> np.ndarray:
    """Vorticity-equation residual of ``psi`` on a periodic ``n x n`` grid of ``[0, 2 pi)^2`` by NumPy FFTs
    (independent of the library's solver and derivative helpers); ``psi_t`` given."""
    n = psi.shape[0]
    k = np.fft.fftfreq(n, 1.0 / n)
    kx, ky = k[:, None], k[None, :]

    def d(f, px, py):
        return np.real(np.fft.ifft2(np.fft.fft2(f) * (1j * kx) ** px * (1j * ky) ** py))

    w = -(d(psi, 2, 0) + d(psi, 0, 2))
    w_t = -(d(psi_t, 2, 0) + d(psi_t, 0, 2))
    lap_w = d(w, 2, 0) + d(w, 0, 2)
    return w_t + d(psi, 0, 1) * d(w, 1, 0) - d(psi, 1, 0) * d(w, 0, 1) - NU * lap_w


def test_residual_term_matches_an_independent_spectral_evaluation():
    pb = P.get("navier_stokes2d", nu=NU)

    def taylor_green(p):  # an exact solution (its advection term vanishes)
        return jnp.sin(p[0]) * jnp.sin(p[1]) * jnp.exp(-2 * NU * p[2])

    def frozen(p):  # psi0 held still: the residual is its advection and diffusion
        return 0.5 * jnp.sin(p[0]) * jnp.sin(p[1]) + 0.2 * jnp.cos(2 * p[0] + p[1])

    rng = np.random.default_rng(0)
    n = 32
    grid = 2 * np.pi * np.arange(n) / n
    X, Y = np.meshgrid(grid, grid, indexing="ij")
    pts = jnp.asarray(np.stack([X.ravel(), Y.ravel(), np.full(n * n, 0.3)], 1))
    res = jax.vmap(lambda p: pb.terms["pde"].residual(taylor_green, p))(pts)
    assert float(jnp.max(jnp.abs(res))) < 1e-12
    got = np.asarray(jax.vmap(lambda p: pb.terms["pde"].residual(frozen, p))(pts)).reshape(n, n)
    want = _spectral_residual(_psi0_np(X, Y), np.zeros((n, n)))
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert np.abs(want).max() > 0.1  # the advection term is really exercised
    # the other terms: initial value, gauge, periodicity vanish for psi0
    x = pb.sample(jax.random.PRNGKey(int(rng.integers(100))))
    for name in ("ic", "gauge", "periodic_x", "periodic_y"):
        assert float(pb.term_loss(frozen, name, x[name])) < 1e-24, name


def test_reference_solves_the_vorticity_equation_and_is_converged():
    pb = P.get("navier_stokes2d", nu=NU)
    n = 64
    grid = 2 * np.pi * np.arange(n) / n
    X, Y = np.meshgrid(grid, grid, indexing="ij")

    # time derivative by centred differences: the residual is their O(h^2) error alone, falling 100x
    # when h falls 10x, down to the solver's own error
    t, hs = 0.6, (2e-2, 2e-3)
    times = [t] + [t + s * h for h in hs for s in (1, -1)]
    pts = np.concatenate([np.stack([X.ravel(), Y.ravel(), np.full(n * n, s)], 1) for s in times])
    psi = dict(zip(times, pb.reference(pts).reshape(len(times), n, n)))
    r = [np.abs(_spectral_residual(psi[t], (psi[t + h] - psi[t - h]) / (2 * h))).max() for h in hs]
    assert 70 < r[0] / r[1] < 130 and r[1] < 1e-4, r
    # initial value exact; the 64^2 reference agrees with 96^2 modes and half the time step
    rng = np.random.default_rng(1)
    t = rng.choice([0.0, 0.25, 0.5, 1.0], 200)
    pts = np.stack([rng.uniform(0, 2 * np.pi, 200), rng.uniform(0, 2 * np.pi, 200), t], 1)
    pts[:20, 2] = 0.0
    np.testing.assert_allclose(pb.reference(pts[:20]), _psi0_np(pts[:20, 0], pts[:20, 1]), atol=1e-14)
    fine = _NavierStokesReference(NU, n=96, dt=1.25e-3)
    np.testing.assert_allclose(pb.reference(pts), fine(pts), atol=1e-9)
    # the gauge: psi(0, 0, t) is psi0(0, 0) at every time
    line = np.stack([np.zeros(5), np.zeros(5), np.linspace(0, 1, 5)], 1)
    np.testing.assert_allclose(pb.reference(line), _psi0_np(0.0, 0.0), atol=1e-14)
    # scattered times (cubic Hermite in time between 201 exact nodes) agree with exact times
    scattered = np.stack([pts[:40, 0], pts[:40, 1], rng.uniform(0, 1, 40)], 1)
    many = pb.reference(np.concatenate([scattered, pts[::10]]))[:40]
    exact = np.concatenate([pb.reference(scattered[i : i + 1]) for i in range(0, 40, 8)])
    np.testing.assert_allclose(many[::8], exact, atol=1e-10)


def test_navier_stokes_parameters_are_checked():
    with pytest.raises(ValueError, match="nu"):
        P.get("navier_stokes2d", nu=-1.0)
    with pytest.raises(ValueError, match="T"):
        P.get("navier_stokes2d", T=math.inf)
