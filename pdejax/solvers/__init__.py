"""Classical differentiable PDE solvers: pseudo-spectral ETDRK on periodic grids (more in progress)."""

from ._periodic_pdes import (
    advection,
    allen_cahn,
    burgers,
    heat,
    kdv,
    kuramoto_sivashinsky,
    navier_stokes_vorticity,
    velocity_from_vorticity,
)
from ._random import gaussian_random_field, truncated_fourier_series
from ._spectral import ETDRK, ORDERS, PeriodicGrid, etdrk4_coefficients, repeat, rollout, solve_at_times, wavenumbers

__all__ = [
    "ETDRK",
    "ORDERS",
    "PeriodicGrid",
    "advection",
    "allen_cahn",
    "burgers",
    "etdrk4_coefficients",
    "gaussian_random_field",
    "heat",
    "kdv",
    "kuramoto_sivashinsky",
    "navier_stokes_vorticity",
    "repeat",
    "rollout",
    "solve_at_times",
    "truncated_fourier_series",
    "velocity_from_vorticity",
    "wavenumbers",
]
