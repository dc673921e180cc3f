"""pdejax: scientific machine learning for PDEs in JAX."""

from . import operators, pinns, problems, solvers
from ._io import CheckpointError, CheckpointWarning, load_checkpoint, previous_checkpoint, save_checkpoint

__version__ = "0.1.0"
__all__ = [
    "CheckpointError",
    "CheckpointWarning",
    "load_checkpoint",
    "operators",
    "pinns",
    "previous_checkpoint",
    "problems",
    "save_checkpoint",
    "solvers",
]
