"""Random initial conditions on periodic grids: Gaussian random fields and truncated Fourier series."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._spectral import PeriodicGrid


def gaussian_random_field(
    key: PRNGKeyArray,
    grid: PeriodicGrid,
    alpha: float = 2.0,
    tau: float = 3.0,
    sigma: float | None = None,
    shape: tuple[int, ...] = (),
) -> Float[Array, "..."]:
    """Zero-mean Gaussian random field with covariance ``sigma^2 (-Lap + tau^2 I)^(-alpha)`` on ``grid``.

    The field is ``sum_k sqrt(lambda_k) xi_k e_k`` over the Fourier modes ``e_k`` (orthonormal on the
    domain), ``lambda_k = sigma^2 (|k|^2 + tau^2)^(-alpha)`` and standard normal ``xi_k`` (the k = 0 mode
    is dropped). ``sigma`` defaults to ``tau^(alpha - d/2)``, the normalisation of the FNO paper's data
    (Li et al., ICLR 2021: Burgers ``alpha=2, tau=5, sigma=25``; Navier–Stokes ``alpha=2.5, tau=7``).

    Args:
        key: PRNG key; grid: the periodic grid.
        alpha, tau, sigma: smoothness, inverse length scale and amplitude.
        shape: leading batch shape.

    Returns:
        Real array of shape ``shape + grid.n``.
    """
    if not (alpha > 0 and tau >= 0):
        raise ValueError(f"need alpha > 0 and tau >= 0, got alpha={alpha}, tau={tau}")
    d = grid.ndim
    sigma = tau ** (alpha - d / 2) if sigma is None else sigma
    volume = float(np.prod(grid.length))
    lam = sigma**2 * (grid.k_squared() + tau**2) ** (-alpha)
    lam = np.where(grid.k_squared() == 0, 0.0, lam)
    dtype = jnp.zeros(()).dtype
    noise = jax.random.normal(key, tuple(shape) + tuple(grid.n), dtype)
    # forward-normalised FFT of unit white noise has variance 1/N per mode; rescale to unit variance
    xi = grid.fft(noise) * np.sqrt(np.prod(grid.n))
    return grid.ifft(xi * jnp.asarray(np.sqrt(lam / volume), dtype))


def truncated_fourier_series(
    key: PRNGKeyArray,
    grid: PeriodicGrid,
    cutoff: int = 5,
    max_one: bool = True,
    shape: tuple[int, ...] = (),
) -> Float[Array, "..."]:
    """Zero-mean random field with normal Fourier coefficients on the modes ``0 < |m_i| <= cutoff``.

    Args:
        key: PRNG key; grid: the periodic grid.
        cutoff: largest mode number per axis.
        max_one: scale each field to ``max |u| = 1``.
        shape: leading batch shape.

    Returns:
        Real array of shape ``shape + grid.n``.
    """
    if cutoff < 1:
        raise ValueError(f"cutoff must be >= 1, got {cutoff}")
    modes = [np.abs(k) * length / (2 * np.pi) for k, length in zip(grid.wavenumbers(), grid.length)]
    keep = np.ones(grid.spectral_shape, bool)
    for m in modes:
        keep &= np.round(m) <= cutoff
    keep &= grid.k_squared() > 0
    dtype = jnp.zeros(()).dtype
    noise = jax.random.normal(key, tuple(shape) + tuple(grid.n), dtype)
    u = grid.ifft(jnp.where(jnp.asarray(keep), grid.fft(noise), 0))
    if max_one:
        axes = tuple(range(-grid.ndim, 0))
        u = u / jnp.max(jnp.abs(u), axis=axes, keepdims=True)
    return u
