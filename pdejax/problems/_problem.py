"""The ``Problem`` type: a domain, named loss terms (residual, initial, boundary, data) and a reference."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._derivatives import derivative_requests, from_rows, partial, prefetch, row_index, stacked_plan
from ._domain import Domain
from ._sampling import METHODS, check_region, float_dtype, sample

KINDS = ("residual", "initial", "dirichlet", "periodic", "boundary", "data")


class Term(eqx.Module):
    """One named loss term: the mean square of ``residual(u, x)`` over points of a region.

    Attributes:
        residual: ``(u, x) -> r`` with ``u`` a field (``(d,) -> ()`` or ``(c,)``) and ``x`` one point of
            shape ``(d,)``; ``r`` is a scalar or a vector (all its entries are squared and averaged). For
            ``kind='data'`` it is called as ``residual(u, x, value)``.
        region: 'interior', 'boundary', 'initial' or 'face:<axis>:<lo|hi>'.
        n_points: how many points to sample for this term.
        weight: default weight in the total loss.
        kind: 'residual' (a PDE), 'initial', 'dirichlet', 'periodic', 'boundary' (any other boundary
            condition, e.g. Robin; always a loss term) or 'data'. Initial, Dirichlet and periodic terms can
            be replaced by hard constraints (see ``target``, ``axis``).
        target: for 'initial', ``u0(x_spatial)``; for 'dirichlet', ``g(x)`` on the boundary.
        components: output components a Dirichlet term constrains (``None``: all).
        axis: the periodic spatial axis of a 'periodic' term.
        points, values: fixed points ``(n, d)`` (and data values ``(n,)`` or ``(n, c)``) instead of sampling.
    """

    residual: Callable
    region: str = "interior"
    n_points: int = 1000
    weight: float = 1.0
    kind: str = "residual"
    target: Callable | None = None
    components: tuple[int, ...] | None = None
    axis: int | None = None
    points: Float[Array, "n d"] | None = None
    values: Float[Array, "n ..."] | None = None

    def __check_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown term kind {self.kind!r}; choose one of {KINDS}")
        if self.n_points < 1:
            raise ValueError(f"n_points must be >= 1, got {self.n_points}")
        if not np.isfinite(self.weight) or self.weight < 0:
            raise ValueError(f"weight must be finite and >= 0, got {self.weight}")
        if self.kind == "data" and (self.points is None or self.values is None):
            raise ValueError("a 'data' term needs fixed points and values")
        if self.kind == "periodic" and self.axis is None:
            raise ValueError("a 'periodic' term needs the axis it makes periodic")


def initial_term(u0: Callable, n_points: int = 512, weight: float = 1.0) -> Term:
    """Initial-condition term ``u(x, t0) - u0(x)``; ``u0`` maps spatial coordinates ``(s,)`` to the field."""
    return Term(lambda u, x: u(x) - u0(x[:-1]), "initial", n_points, weight, kind="initial", target=u0)


def dirichlet_term(
    g: Callable,
    n_points: int = 512,
    weight: float = 1.0,
    region: str = "boundary",
    components: tuple[int, ...] | None = None,
) -> Term:
    """Dirichlet term ``u(x) - g(x)`` on ``region`` (default: the whole spatial boundary).

    With ``components`` only those output components are constrained (``g`` returns just those).
    """
    idx = None if components is None else jnp.asarray(components)

    def residual(u, x):
        val = u(x) if idx is None else u(x)[idx]
        return val - g(x)

    return Term(residual, region, n_points, weight, kind="dirichlet", target=g, components=components)


def periodic_term(axis: int, hi: float, derivatives: int = 0, n_points: int = 256, weight: float = 1.0) -> Term:
    """Periodicity along spatial ``axis``: ``u`` (and its first ``derivatives`` derivatives along it) agree
    on the faces ``lo`` and ``hi`` of that axis. Points are sampled on the ``lo`` face."""

    def residual(u, x):
        y = x.at[axis].set(hi)
        diffs = [partial(u, x, *([axis] * k)) - partial(u, y, *([axis] * k)) for k in range(derivatives + 1)]
        return jnp.stack([jnp.ravel(d) for d in diffs])

    return Term(residual, f"face:{axis}:lo", n_points, weight, kind="periodic", axis=axis)


def _cpu_groups(n: int) -> int:
    """How many independent groups to evaluate ``n`` residual points in: one per CPU core (at most 8) on
    the CPU backend for large enough sets, else one (accelerators parallelise a single batch)."""
    if n < 1024 or jax.default_backend() != "cpu":
        return 1
    return max(1, min(os.cpu_count() or 1, 8, n // 512))


class Problem(eqx.Module):
    """A PDE problem: domain, named loss terms, parameters and a trusted reference solution.

    Points are rows ``(x_0, ..., x_{s-1}[, t])``. ``reference(points)`` returns the solution there
    (``(n,)`` for scalar fields, ``(n, c)`` otherwise), analytic where a closed form exists and otherwise
    computed by ``pdejax.solvers`` and cached on disk.

    Attributes:
        name: registry name (or any label for a user's problem).
        domain: the space(-time) box.
        terms: ordered mapping from loss-term name to :class:`Term`.
        params: the problem's parameters (for records and metrics).
        reference_fn: ``points (n, d) float64 NumPy -> values``; ``None`` if no reference is known.
        output_dim: number of field components ``c``.
        output_names: names of the components (for plots).
        eval_shape: tensor-grid shape (one entry per column) on which errors are measured and plotted.
        description: one line for ``pdejax list``.
    """

    name: str
    domain: Domain
    terms: dict[str, Term]
    params: dict[str, Any] = eqx.field(default_factory=dict)
    reference_fn: Callable | None = None
    output_dim: int = 1
    output_names: tuple[str, ...] = ("u",)
    eval_shape: tuple[int, ...] | None = None
    description: str = ""

    def __check_init__(self):
        if not self.terms:
            raise ValueError("a Problem needs at least one loss term")
        for name, term in self.terms.items():
            if term.points is None:
                check_region(self.domain, term.region)
            elif term.points.ndim != 2 or term.points.shape[1] != self.domain.dim:
                raise ValueError(
                    f"term {name!r}: fixed points must have shape (n, {self.domain.dim}), "
                    f"got {tuple(term.points.shape)}"
                )
            if term.kind == "periodic" and not 0 <= term.axis < self.domain.spatial_dim:
                raise ValueError(f"term {name!r}: periodic axis {term.axis} is not a spatial axis")
        if len(self.output_names) != self.output_dim:
            raise ValueError(f"output_names {self.output_names} must have output_dim={self.output_dim} entries")
        if self.eval_shape is not None and len(self.eval_shape) != self.domain.dim:
            raise ValueError(f"eval_shape needs {self.domain.dim} entries, got {self.eval_shape}")

    # -- structure --------------------------------------------------------------------------------
    @property
    def term_names(self) -> tuple[str, ...]:
        """Names of the loss terms, in the order of :meth:`losses`."""
        return tuple(self.terms)

    @property
    def periodic_axes(self) -> tuple[int, ...]:
        """Spatial axes with a periodicity term."""
        return tuple(sorted({t.axis for t in self.terms.values() if t.kind == "periodic"}))

    @property
    def initial_condition(self) -> Callable | None:
        """``u0(x_spatial)`` from the initial term, if there is one."""
        return next((t.target for t in self.terms.values() if t.kind == "initial"), None)

    @property
    def boundary_value(self) -> Callable | None:
        """``g(x)`` of a Dirichlet term covering the whole boundary and all components, if any."""
        return next(
            (
                t.target
                for t in self.terms.values()
                if t.kind == "dirichlet" and t.region == "boundary" and t.components is None
            ),
            None,
        )

    def without(self, *kinds: str) -> Problem:
        """The same problem with the terms of the given kinds removed (those a hard constraint enforces)."""
        kept = {k: t for k, t in self.terms.items() if t.kind not in kinds}
        return eqx.tree_at(lambda p: p.terms, self, kept)

    # -- points -----------------------------------------------------------------------------------
    def sample(
        self, key: PRNGKeyArray, method: str = "uniform", n_points: Mapping[str, int] | None = None
    ) -> dict[str, Float[Array, "n d"]]:
        """Collocation points for every term: a dict ``name -> (n_name, d)``. Jittable.

        Terms with fixed points keep them; ``n_points`` overrides the per-term counts.
        """
        if method not in METHODS:
            raise ValueError(f"unknown sampling method {method!r}; choose one of {METHODS}")
        n_points = dict(n_points or {})
        unknown = set(n_points) - set(self.terms)
        if unknown:
            raise ValueError(f"n_points names unknown terms {sorted(unknown)}; terms are {list(self.terms)}")
        keys = jax.random.split(key, len(self.terms))
        out = {}
        for k, (name, term) in zip(keys, self.terms.items()):
            if term.points is not None:
                out[name] = jnp.asarray(term.points, float_dtype())
            else:
                out[name] = sample(self.domain, term.region, k, n_points.get(name, term.n_points), method)
        return out

    def eval_points(self) -> tuple[Float[np.ndarray, "n d"], tuple[int, ...]]:
        """The evaluation grid (float64 NumPy, ``(n, d)``) and its tensor shape."""
        shape = self.eval_shape or tuple([64] * self.domain.dim)
        return self.domain.grid(shape), shape

    # -- physics ----------------------------------------------------------------------------------
    def term_residuals(self, u: Callable, name: str, points: Float[Array, "n d"]) -> Float[Array, "n k"]:
        """Residuals of term ``name`` at each point, flattened per point: shape ``(n, k)``."""
        term = self.terms[name]
        args = (points,) if term.kind != "data" else (points, jnp.asarray(term.values, points.dtype))
        fn = jax.vmap(lambda x, *v: prefetch(term.residual, u, x, *v))
        stacked = getattr(u, "derivative_rows", None)
        if stacked is not None:
            spec = [jax.ShapeDtypeStruct(a.shape[1:], a.dtype) for a in args]
            plan = stacked_plan(derivative_requests(term.residual, u, *spec))
            if plan is not None:
                where = row_index(*plan)
                pointwise = jax.vmap(lambda x, rw, *v: from_rows(term.residual, u, x, rw, where, *v))

                def fn(x, *v, _slow=fn):
                    rows = stacked(x, *plan)
                    return _slow(x, *v) if rows is None else pointwise(x, rows, *v)

        groups = _cpu_groups(points.shape[0])
        if groups > 1:
            # XLA runs each small matmul of a vmapped residual on one thread; independent groups of
            # points are separate sub-programs that the CPU runtime executes concurrently.
            parts = zip(*(jnp.array_split(a, groups) for a in args))
            r = jnp.concatenate([fn(*part) for part in parts])
        else:
            r = fn(*args)
        return r.reshape(r.shape[0], -1)

    def losses(self, u: Callable, points: Mapping[str, Float[Array, "n d"]]) -> Float[Array, " m"]:
        """Vector of loss-term values (mean squared residual), in the order of :attr:`term_names`.

        Args:
            u: the field, ``(d,) -> ()`` or ``(c,)``.
            points: ``name -> (n, d)`` collocation points (from :meth:`sample`).
        """
        return jnp.stack([self.term_loss(u, n, points[n]) for n in self.terms])

    def term_loss(self, u: Callable, name: str, points: Float[Array, "n d"]) -> Float[Array, ""]:
        """The value of loss term ``name`` (mean squared residual over ``points``)."""
        return jnp.mean(self.term_residuals(u, name, points) ** 2)

    def reference(self, points) -> np.ndarray:
        """Reference solution at ``points`` (``(n, d)``): ``(n,)`` or ``(n, c)`` float64 NumPy array."""
        if self.reference_fn is None:
            raise ValueError(f"problem {self.name!r} has no reference solution")
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != self.domain.dim:
            raise ValueError(f"reference points must have shape (n, {self.domain.dim}), got {pts.shape}")
        return np.asarray(self.reference_fn(pts), dtype=np.float64)
