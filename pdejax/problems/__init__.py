"""What is solved: domains, samplers, derivative helpers for residuals, and benchmark PDEs with references."""

from ._benchmarks import (
    allen_cahn,
    burgers,
    burgers_cole_hopf,
    convection,
    diffusion_sorption,
    heat2d,
    helmholtz2d,
    kovasznay,
    poisson2d,
    reaction_diffusion,
)
from ._cache import cache_dir
from ._derivatives import divergence, grad, hessian, laplacian, partial, time_derivative
from ._domain import Box, Domain, Interval, Rectangle
from ._navier_stokes import navier_stokes2d
from ._problem import Problem, Term, dirichlet_term, initial_term, periodic_term
from ._registry import get, names, parameters, register
from ._sampling import METHODS as SAMPLING_METHODS
from ._sampling import sample, unit_points
from ._sobol import sobol

__all__ = [
    "SAMPLING_METHODS",
    "Box",
    "Domain",
    "Interval",
    "Problem",
    "Rectangle",
    "Term",
    "allen_cahn",
    "burgers",
    "burgers_cole_hopf",
    "cache_dir",
    "convection",
    "diffusion_sorption",
    "dirichlet_term",
    "divergence",
    "get",
    "grad",
    "heat2d",
    "helmholtz2d",
    "hessian",
    "initial_term",
    "kovasznay",
    "laplacian",
    "names",
    "navier_stokes2d",
    "parameters",
    "partial",
    "periodic_term",
    "poisson2d",
    "reaction_diffusion",
    "register",
    "sample",
    "sobol",
    "time_derivative",
    "unit_points",
]
