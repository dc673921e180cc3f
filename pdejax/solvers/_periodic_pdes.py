"""Spectral steppers for standard periodic PDEs (heat, advection, Burgers, KdV, KS, Allen–Cahn, 2D Navier–Stokes)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex

from ._spectral import ETDRK, PeriodicGrid


def _dealias(grid: PeriodicGrid, fraction: float | None):
    if fraction is None:
        return lambda v: v
    if not 0 < fraction <= 1:
        raise ValueError(f"dealiasing fraction must be in (0, 1], got {fraction}")
    mask = jnp.asarray(grid.dealias_mask(fraction))
    return lambda v: jnp.where(mask, v, 0)


def _concrete(v) -> bool:
    # coefficients may be traced (differentiating through a solver with respect to them): skip checks
    return not isinstance(v, jax.core.Tracer)


def _positive(**kw):
    for k, v in kw.items():
        if _concrete(v) and not (np.isfinite(v) and v > 0):
            raise ValueError(f"{k} must be a finite number > 0, got {v}")


def _finite(**kw):
    for k, v in kw.items():
        if _concrete(v) and not np.all(np.isfinite(v)):
            raise ValueError(f"{k} must be finite, got {v}")


def heat(grid: PeriodicGrid, nu: float, dt: float) -> ETDRK:
    """``u_t = nu Lap u``: exact in time (``u_hat *= exp(-nu |k|^2 dt)``)."""
    _positive(nu=nu)
    return ETDRK(grid, -nu * grid.k_squared(), None, dt)


def advection(grid: PeriodicGrid, velocity, dt: float) -> ETDRK:
    """``u_t + c . grad u = 0`` with constant velocity ``c`` (scalar or one per axis): exact in time."""
    c = jnp.broadcast_to(jnp.asarray(velocity), (grid.ndim,))
    _finite(velocity=velocity)
    symbol = -1j * sum(c[i] * k for i, k in enumerate(grid.wavenumbers()))
    return ETDRK(grid, symbol, None, dt)


def _quadratic_flux(grid: PeriodicGrid, coefficient: float, dealias: float | None):
    """``v_hat -> FFT(-coefficient (u^2 / 2)_x)``, 2/3-dealiased: the nonlinearity of Burgers, KdV and KS."""
    (k,) = grid.wavenumbers()
    ik = jnp.asarray(1j * k)
    da = _dealias(grid, dealias)

    def nonlinear(v):
        u = grid.ifft(da(v))
        return da(-0.5 * coefficient * ik * grid.fft(u * u))

    return nonlinear


def burgers(grid: PeriodicGrid, nu: float, dt: float, order: int = 4, dealias: float | None = 2 / 3) -> ETDRK:
    """1D viscous Burgers ``u_t + (u^2/2)_x = nu u_xx`` (conservative form), 2/3-dealiased."""
    _positive(nu=nu)
    if grid.ndim != 1:
        raise ValueError(f"burgers is 1D; got a grid with {grid.ndim} axes")
    (k,) = grid.wavenumbers()
    return ETDRK(grid, -nu * k**2, _quadratic_flux(grid, 1.0, dealias), dt, order)


def kdv(
    grid: PeriodicGrid,
    dt: float,
    convection: float = 6.0,
    dispersion: float = 1.0,
    order: int = 4,
    dealias: float | None = 2 / 3,
) -> ETDRK:
    """1D Korteweg–de Vries ``u_t + convection u u_x + dispersion u_xxx = 0`` (soliton form for 6, 1)."""
    _finite(convection=convection, dispersion=dispersion)
    if grid.ndim != 1:
        raise ValueError(f"kdv is 1D; got a grid with {grid.ndim} axes")
    (k,) = grid.wavenumbers()
    nonlinear = _quadratic_flux(grid, convection, dealias)
    # u_xxx has symbol (ik)^3 = -i k^3, so -dispersion u_xxx has symbol +i dispersion k^3
    return ETDRK(grid, 1j * dispersion * k**3, nonlinear, dt, order)


def kuramoto_sivashinsky(grid: PeriodicGrid, dt: float, order: int = 4, dealias: float | None = 2 / 3) -> ETDRK:
    """1D Kuramoto–Sivashinsky ``u_t + u u_x + u_xx + u_xxxx = 0`` (Kassam & Trefethen 2005)."""
    if grid.ndim != 1:
        raise ValueError(f"kuramoto_sivashinsky is 1D; got a grid with {grid.ndim} axes")
    (k,) = grid.wavenumbers()
    return ETDRK(grid, k**2 - k**4, _quadratic_flux(grid, 1.0, dealias), dt, order)


def allen_cahn(
    grid: PeriodicGrid, dt: float, d: float = 1e-4, gamma: float = 5.0, order: int = 4, dealias: float | None = None
) -> ETDRK:
    """Allen–Cahn ``u_t = d Lap u + gamma (u - u^3)`` (any dimension); ``gamma u`` is in the linear part.

    No dealiasing by default: the cubic needs a 1/2 rule to be alias-free, and resolved runs (spectrum
    decayed to rounding at ``k_max``) do not alias anyway.
    """
    _positive(d=d)
    _finite(gamma=gamma)
    da = _dealias(grid, dealias)

    def nonlinear(v):
        u = grid.ifft(da(v))
        return da(grid.fft(-gamma * u**3))

    return ETDRK(grid, -d * grid.k_squared() + gamma, nonlinear, dt, order)


def navier_stokes_vorticity(
    grid: PeriodicGrid,
    dt: float,
    nu: float,
    drag: float = 0.0,
    forcing: Array | Callable | None = None,
    order: int = 4,
    dealias: float | None = 2 / 3,
) -> ETDRK:
    """2D incompressible Navier–Stokes in vorticity form on a periodic box:

    ``w_t + u . grad w = nu Lap w - drag w + f``, velocity ``u = (psi_y, -psi_x)`` from the stream function
    ``-Lap psi = w`` (so ``w = v_x - u_y``; axis 0 is ``x``, axis 1 is ``y``).

    Args:
        grid: a 2D periodic grid.
        dt: time step; nu: viscosity; drag: linear damping.
        forcing: vorticity forcing ``f``: an array of shape ``grid.n`` or ``f(x, y)`` on the coordinates.
        order: ETDRK order; dealias: 2/3 rule on the advection term (``None``: off).
    """
    if grid.ndim != 2:
        raise ValueError(f"navier_stokes_vorticity needs a 2D grid, got {grid.ndim} axes")
    _positive(nu=nu)
    _finite(drag=drag)
    kx, ky = grid.wavenumbers()
    k2 = grid.k_squared()
    inv_k2 = jnp.asarray(np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0))
    ikx, iky = jnp.asarray(1j * kx), jnp.asarray(1j * ky)
    da = _dealias(grid, dealias)
    f_hat = None
    if forcing is not None:
        f = forcing(*grid.coordinates()) if callable(forcing) else np.asarray(forcing)
        if np.shape(f) != tuple(grid.n):
            raise ValueError(f"forcing of shape {np.shape(f)} does not match the grid {grid.n}")
        f_hat = grid.fft(jnp.asarray(f))

    # one batched inverse FFT of (psi_y, -psi_x, w_x, w_y): the four transforms share a single call
    ops = jnp.stack([iky * inv_k2, -ikx * inv_k2, jnp.broadcast_to(ikx, k2.shape), jnp.broadcast_to(iky, k2.shape)])

    def nonlinear(w_hat: Complex[Array, "kx ky"]) -> Complex[Array, "kx ky"]:
        u, v, wx, wy = grid.ifft(ops * da(w_hat))
        out = da(-grid.fft(u * wx + v * wy))
        return out if f_hat is None else out + f_hat

    return ETDRK(grid, -nu * k2 - drag, nonlinear, dt, order)


def velocity_from_vorticity(grid: PeriodicGrid, w: Array) -> tuple[Array, Array]:
    """Velocity ``(u, v) = (psi_y, -psi_x)`` with ``-Lap psi = w`` (zero-mean), on a 2D periodic grid."""
    kx, ky = grid.wavenumbers()
    k2 = grid.k_squared()
    inv_k2 = jnp.asarray(np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0))
    psi = grid.fft(w) * inv_k2
    return grid.ifft(1j * ky * psi), grid.ifft(-1j * kx * psi)
