"""Classical differentiable PDE solvers: pseudo-spectral ETDRK on periodic grids (more in progress)."""

from ._spectral import ETDRK, ORDERS, PeriodicGrid, etdrk4_coefficients, repeat, rollout, solve_at_times, wavenumbers

__all__ = [
    "ETDRK",
    "ORDERS",
    "PeriodicGrid",
    "etdrk4_coefficients",
    "repeat",
    "rollout",
    "solve_at_times",
    "wavenumbers",
]
