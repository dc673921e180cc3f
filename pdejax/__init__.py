"""pdejax: scientific machine learning for PDEs in JAX."""

from . import operators, pinns, problems, solvers

__version__ = "0.1.0"
__all__ = ["operators", "pinns", "problems", "solvers"]
