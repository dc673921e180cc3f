"""Full float32 precision of matrix products for pdejax's PINN and operator programs, unless the user chose."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import TypeVar

import jax

F = TypeVar("F", bound=Callable)

# On GPUs, JAX's default precision of float32 matrix products and convolutions is TensorFloat-32 (10-bit
# mantissa). PINN losses differentiate the network twice and least-squares constraint solves square
# condition numbers, so TF32 costs them digits: on an H200 `pdejax solve burgers` reached rel. L2 4.7e-2 and
# 5.8e-2 (two runs) with JAX's default against 5.0e-3 with full float32 products (1.5e-3 on a CPU). PyTorch, the
# peers' framework, also computes float32 matrix products in full precision by default.
FULL = "float32"


def chosen_precision() -> str | None:
    """The user's ``jax_default_matmul_precision`` (``None`` when unset: JAX's per-backend default)."""
    return jax.config.jax_default_matmul_precision


@contextlib.contextmanager
def full_matmul_precision() -> Iterator[None]:
    """Trace (and so compile) inside this block with float32 matrix products at full precision, unless the user
    set ``jax_default_matmul_precision`` (``jax.config.update`` or the ``JAX_DEFAULT_MATMUL_PRECISION``
    variable), whose choice is kept. No effect on CPUs, whose float32 products are always full precision."""
    if chosen_precision() is not None:
        yield
        return
    with jax.default_matmul_precision(FULL):
        yield


def full_precision(fn: F) -> F:
    """``fn`` run under :func:`full_matmul_precision` (a decorator for entry points and jitted programs: the
    precision is part of the trace, so each precision compiles its own program)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with full_matmul_precision():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
