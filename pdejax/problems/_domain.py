"""Axis-aligned space(-time) domains: intervals, rectangles and boxes, optionally times a time interval."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


def _as_pair(name: str, value) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (start, end) of numbers, got {value!r}") from None
    if not (np.isfinite(a) and np.isfinite(b) and a < b and np.isfinite(b - a)):
        raise ValueError(f"{name} must satisfy start < end with finite numbers and length, got ({a}, {b})")
    return a, b


class Domain(eqx.Module):
    """A box ``[lo_0, hi_0] x ... x [lo_{s-1}, hi_{s-1}]`` in space, optionally times ``[t0, t1]``.

    Points are rows ``(x_0, ..., x_{s-1}[, t])``: spatial coordinates first, time last (DESIGN.md).

    Attributes:
        lo, hi: spatial bounds, tuples of length ``s``.
        time: ``(t0, t1)`` or ``None`` for steady problems.
    """

    lo: tuple[float, ...]
    hi: tuple[float, ...]
    time: tuple[float, float] | None = None

    def __check_init__(self):
        if len(self.lo) != len(self.hi) or len(self.lo) == 0:
            raise ValueError(f"Domain bounds must be non-empty and of equal length, got lo={self.lo}, hi={self.hi}")
        for i, (a, b) in enumerate(zip(self.lo, self.hi)):
            _as_pair(f"spatial axis {i}", (a, b))
        if self.time is not None:
            _as_pair("time interval", self.time)

    @property
    def spatial_dim(self) -> int:
        """Number of spatial coordinates ``s``."""
        return len(self.lo)

    @property
    def has_time(self) -> bool:
        return self.time is not None

    @property
    def dim(self) -> int:
        """Number of columns of a point: ``s`` (+1 with time)."""
        return self.spatial_dim + (1 if self.has_time else 0)

    @property
    def lower(self) -> np.ndarray:
        """Lower corner of the whole space-time box, shape ``(d,)``."""
        return np.asarray(self.lo + ((self.time[0],) if self.has_time else ()), dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        """Upper corner of the whole space-time box, shape ``(d,)``."""
        return np.asarray(self.hi + ((self.time[1],) if self.has_time else ()), dtype=np.float64)

    @property
    def lengths(self) -> np.ndarray:
        """Side lengths of the space-time box, shape ``(d,)``."""
        return self.upper - self.lower

    def contains(self, points: Float[Array, "n d"], tol: float = 1e-9) -> Float[Array, " n"]:
        """Boolean mask of the rows of ``points`` that lie in the closed box (up to ``tol``)."""
        points = jnp.asarray(points)
        lo = jnp.asarray(self.lower, points.dtype) - tol
        hi = jnp.asarray(self.upper, points.dtype) + tol
        return jnp.all((points >= lo) & (points <= hi), axis=-1)

    def grid(self, shape: tuple[int, ...]) -> Float[np.ndarray, "n d"]:
        """Tensor grid including the endpoints, ``shape[i]`` nodes along column ``i``.

        Returns a float64 NumPy array of shape ``(prod(shape), d)``, row-major (last column fastest).
        """
        if len(shape) != self.dim:
            raise ValueError(f"grid shape needs {self.dim} entries (one per column), got {shape}")
        axes = [np.linspace(a, b, int(n)) for a, b, n in zip(self.lower, self.upper, shape)]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.reshape(-1) for m in mesh], axis=-1)


def Interval(a: float, b: float, *, time: tuple[float, float] | None = None) -> Domain:
    """The interval ``[a, b]`` (optionally times ``time``): points ``(x[, t])``."""
    a, b = _as_pair("interval", (a, b))
    return Domain((a,), (b,), None if time is None else _as_pair("time interval", time))


def Rectangle(lo: tuple[float, float], hi: tuple[float, float], *, time: tuple[float, float] | None = None) -> Domain:
    """The rectangle ``[lo[0], hi[0]] x [lo[1], hi[1]]`` (optionally times ``time``)."""
    if not (hasattr(lo, "__len__") and hasattr(hi, "__len__")) or len(lo) != 2 or len(hi) != 2:
        raise ValueError(f"Rectangle needs 2D corners, got lo={lo}, hi={hi}")
    return Box(lo, hi, time=time)


def Box(lo, hi, *, time: tuple[float, float] | None = None) -> Domain:
    """The box with corners ``lo`` and ``hi`` (any dimension), optionally times ``time``."""
    try:
        lo = tuple(float(v) for v in lo)
        hi = tuple(float(v) for v in hi)
    except (TypeError, ValueError):
        raise ValueError(f"Box corners must be sequences of numbers, got lo={lo!r}, hi={hi!r}") from None
    return Domain(lo, hi, None if time is None else _as_pair("time interval", time))
