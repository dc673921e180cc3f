"""Classical differentiable PDE solvers: pseudo-spectral ETDRK4 on periodic grids (more to come)."""

from ._spectral import ETDRK4, etdrk4_coefficients, solve_at_times, wavenumbers

__all__ = ["ETDRK4", "etdrk4_coefficients", "solve_at_times", "wavenumbers"]
