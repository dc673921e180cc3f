"""Physics-informed hard constraints (PI-HC): basis functions whose coefficients solve the PDE on constraint points."""

from __future__ import annotations

import math
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Float, PRNGKeyArray

from ..problems import Problem
from ..problems._derivatives import Memo, partial
from ._models import MODELS, output_layer


class ConstraintNotConverged(RuntimeError):
    """The constraint solve stopped before reaching its tolerance; ``steps`` and ``residual`` say how far it got."""

    def __init__(self, steps: int, residual: float, max_steps: int, rtol, atol):
        self.steps, self.residual = steps, residual
        super().__init__(
            f"the hard-constraint solve did not converge: {steps} Levenberg-Marquardt iterations (max_steps="
            f"{max_steps}), constraint residual (rms) {residual:.3e}, tolerances rtol={rtol}, atol={atol}; "
            "use more max_steps, fewer constraint points or more basis functions"
        )


class ConstraintStats(eqx.Module):
    """Diagnostics of one constraint solve: iterations, rms constraint residual, success flag."""

    steps: Array
    residual: Array
    converged: Array


class BasisField(eqx.Module):
    """``N`` neural basis functions ``b(x) in R^N`` on a box (inputs scaled to ``[-1, 1]``).

    Attributes:
        net: backbone ``(d,) -> (N,)``; lower, upper: the box.
    """

    net: eqx.Module
    lower: tuple[float, ...] = eqx.field(static=True)
    upper: tuple[float, ...] = eqx.field(static=True)

    @property
    def size(self) -> int:
        return int(output_layer(self.net).weight.shape[0])

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " N"]:
        lo = jnp.asarray(self.lower, x.dtype)
        hi = jnp.asarray(self.upper, x.dtype)
        return self.net(2 * (x - lo) / (hi - lo) - 1)


class LinearField(eqx.Module):
    """``u(x) = b(x) . w``: a basis with fixed coefficients (what a solved constraint layer predicts with)."""

    basis: BasisField
    coefficients: Float[Array, " N"]

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        return self.basis(x) @ self.coefficients


class _Points:
    """Constraint points held as static data (hashed by identity, so never traced or trained)."""

    def __init__(self, data: dict[str, np.ndarray]):
        self.data = data

    def __hash__(self):
        return id(self.data)

    def __eq__(self, other):
        return isinstance(other, _Points) and other.data is self.data


def _requests(problem: Problem, name: str, x: Float[Array, " d"]) -> list[tuple[int, ...]]:
    """The derivatives ``d^k u / dx_a...`` the residual of term ``name`` asks for at a point."""
    term = problem.terms[name]
    recorder = Memo(lambda y: jnp.zeros((), y.dtype), record=True)
    extra = () if term.kind != "data" else (jnp.zeros(jnp.shape(term.values)[1:], x.dtype),)
    jax.eval_shape(lambda y, *a: term.residual(recorder, y, *a), x, *extra)
    return sorted(recorder.requests | {()})


def tabulate(
    problem: Problem, basis: BasisField, points: Mapping[str, Float[Array, "n d"]]
) -> dict[str, dict[tuple[int, ...], Float[Array, "n N"]]]:
    """Every basis derivative each term's residual needs, at that term's constraint points.

    Returns ``{term: {axes: (n, N)}}``: with ``u = b . w``, ``d u / dx_axes = (d b / dx_axes) . w``, so the
    residual for any ``w`` costs matrix-vector products only (no network evaluations inside the solver).
    """
    out = {}
    for name, pts in points.items():
        keys = _requests(problem, name, pts[0])
        out[name] = {k: jax.vmap(lambda y, k=k: partial(basis, y, *k))(pts) for k in keys}
    return out


def _unrecorded(y):
    raise ValueError(
        "a residual asked for a derivative that its recording did not see (e.g. of a function of u); "
        "write it with partial(u, x, ...) on u itself"
    )


def constraint_residuals(
    problem: Problem,
    tables: Mapping[str, Mapping[tuple[int, ...], Array]],
    points: Mapping[str, Float[Array, "n d"]],
    w: Float[Array, " N"],
    weights: Mapping[str, float] | None = None,
) -> Float[Array, " m"]:
    """All terms' residuals at the constraint points for ``u = b . w``, each scaled by
    ``sqrt(weight / n_term)`` so that the squared norm is the weighted mean-square loss. Shape ``(m,)``."""
    parts = []
    for name, pts in points.items():
        term = problem.terms[name]
        tab = tables[name]
        scale = math.sqrt((weights or {}).get(name, term.weight) / pts.shape[0])
        vals = (jnp.asarray(term.values, pts.dtype),) if term.kind == "data" else ()

        def one(x, rows, *v, term=term):
            memo = Memo(lambda y: jnp.zeros((), y.dtype))
            memo.x = x
            memo.cache = {k: r @ w for k, r in rows.items()}
            memo.u = _unrecorded
            return jnp.ravel(term.residual(memo, x, *v))

        parts.append(scale * jax.vmap(one)(pts, tab, *vals).reshape(-1))
    return jnp.concatenate(parts)


def solve_coefficients(
    problem: Problem,
    basis: BasisField,
    points: Mapping[str, Float[Array, "n d"]],
    *,
    weights: Mapping[str, float] | None = None,
    w0: Float[Array, " N"] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 256,
    ridge: float = 1e-6,
    adjoint: optx.AbstractAdjoint | None = None,
) -> tuple[Float[Array, " N"], ConstraintStats]:
    """The constraint layer: coefficients ``w*`` minimising ``||r(w)||^2`` over the constraint points.

    Levenberg–Marquardt (optimistix, linear solves by lineax) from ``w0`` (default zeros). The derivative
    of ``w*`` with respect to the basis network comes from the implicit function theorem applied to the
    optimality condition (``optx.ImplicitAdjoint``: one linear solve at the solution), never from
    unrolling the iterations; ``adjoint=optx.RecursiveCheckpointAdjoint()`` unrolls instead (for
    comparison). Chalapathi, Du & Krishnapriyan, ICLR 2024.

    Args:
        problem: whose terms are the constraints (residual, initial, boundary, ...).
        basis: the basis functions ``(d,) -> (N,)``.
        points: ``{term: (n, d)}`` constraint points (any subset of the terms).
        weights: per-term weights (default: the terms' own).
        w0, rtol, atol, max_steps, adjoint: solver settings (tolerances default to 1e-8 / 1e-10 in float64,
            1e-5 / 1e-6 in float32).
        ridge: Tikhonov weight ``lambda``: minimises ``||r(w)||^2 + lambda ||w||^2`` (0: none).

    Returns:
        ``(w*, stats)``; a solve that did not converge has ``stats.converged`` false (callers decide; see
        :meth:`HardConstraintField.solve`).
    """
    tables = tabulate(problem, basis, points)
    # non-finite basis values (diverged weights) would make lineax raise inside the jitted step; solve on
    # zeros instead and report the failure through the stats (the caller turns it into NaN)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree_util.tree_leaves(tables)]))
    tables = jax.tree_util.tree_map(lambda v: jnp.where(finite, v, 0.0), tables)
    n = basis.size
    dtype = next(iter(points.values())).dtype
    w0 = jnp.zeros((n,), dtype) if w0 is None else w0
    x64 = dtype == jnp.float64
    rtol = rtol if rtol is not None else (1e-8 if x64 else 1e-5)
    atol = atol if atol is not None else (1e-10 if x64 else 1e-6)

    def residual(w, tabs):
        r = constraint_residuals(problem, tabs, points, w, weights)
        # a learned basis can be nearly collinear; a small ridge term keeps w* unique and well-conditioned
        return jnp.concatenate([r, math.sqrt(ridge) * w]) if ridge else r

    sol = optx.least_squares(
        residual,
        optx.LevenbergMarquardt(rtol=rtol, atol=atol),
        w0,
        args=tables,
        max_steps=max_steps,
        throw=False,
        adjoint=adjoint or optx.ImplicitAdjoint(),
    )
    r = constraint_residuals(problem, jax.lax.stop_gradient(tables), points, jax.lax.stop_gradient(sol.value), weights)
    rms = jnp.sqrt(jnp.mean(r**2))
    # Levenberg-Marquardt stops on small steps; with more basis functions than constraints it can creep
    # along weakly determined directions long after the constraints hold, so a residual at the
    # tolerance also counts as converged
    met = rms <= atol + rtol * jnp.sqrt(jnp.mean(constraint_residuals(problem, tables, points, w0 * 0, weights) ** 2))
    ok = finite & ((sol.result == optx.RESULTS.successful) | met)
    return sol.value, ConstraintStats(sol.stats["num_steps"], rms, ok)


@jax.custom_vjp
def _nan_unless(w, ok):
    """``w`` where the solve converged, NaN otherwise, so the loss turns NaN and training stops. The
    backward pass sends no NaN cotangent into the implicit adjoint (its linear solve would fail first)."""
    return jnp.where(ok, w, jnp.nan)


def _nan_unless_fwd(w, ok):
    return _nan_unless(w, ok), ok


def _nan_unless_bwd(ok, ct):
    return jnp.where(ok, ct, 0.0), None


_nan_unless.defvjp(_nan_unless_fwd, _nan_unless_bwd)


class HardConstraintField(eqx.Module):
    """A PI-HC field: ``u(x) = b(x; theta) . w*(theta)`` with ``w*`` solving the constraints.

    ``prepared()`` runs the constraint solve once and returns the :class:`LinearField` to evaluate at many
    points; the trainer and :func:`pdejax.pinns.predict` call it once per step / prediction. A solve that
    does not converge makes the coefficients NaN inside training (the trainer then stops and reports it);
    :meth:`solve` raises :class:`ConstraintNotConverged` with the iteration count and residual.

    Attributes:
        basis: the basis network.
        problem: the problem whose terms are enforced.
        points: the constraint points ``{term: (n, d)}`` (fixed, not trained).
        rtol, atol, max_steps: Levenberg–Marquardt settings (``None``: by dtype, see :func:`solve_coefficients`).
    """

    basis: BasisField
    problem: Problem
    points: _Points = eqx.field(static=True)
    rtol: float | None = eqx.field(static=True, default=None)
    atol: float | None = eqx.field(static=True, default=None)
    max_steps: int = eqx.field(static=True, default=256)

    def _points(self) -> dict[str, Array]:
        dtype = jnp.zeros(()).dtype
        return {k: jnp.asarray(v, dtype) for k, v in self.points.data.items()}

    def coefficients(self, adjoint: optx.AbstractAdjoint | None = None) -> tuple[Array, ConstraintStats]:
        """``(w*, stats)`` (differentiable with respect to the basis)."""
        return solve_coefficients(
            self.problem,
            self.basis,
            self._points(),
            rtol=self.rtol,
            atol=self.atol,
            max_steps=self.max_steps,
            adjoint=adjoint,
        )

    def prepared(self) -> LinearField:
        """The field with solved coefficients (NaN when the solve did not converge)."""
        w, stats = self.coefficients()
        return LinearField(self.basis, _nan_unless(w, stats.converged))

    def diagnose(self) -> str:
        """One line on the constraint solve at the current parameters (iterations, residual, converged)."""
        _, st = _solve_jitted(self)
        ok = "converged" if bool(st.converged) else f"NOT converged within max_steps={self.max_steps}"
        steps, res = int(st.steps), float(st.residual)
        return f"constraint solve: {steps} Levenberg-Marquardt iterations, residual (rms) {res:.3e}, {ok}"

    def solve(self) -> tuple[LinearField, ConstraintStats]:
        """Solve the constraints eagerly; raises :class:`ConstraintNotConverged` if they were not met."""
        w, stats = _solve_jitted(self)
        if not bool(stats.converged):
            raise ConstraintNotConverged(int(stats.steps), float(stats.residual), self.max_steps, self.rtol, self.atol)
        return LinearField(self.basis, w), stats

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        return self.prepared()(x)  # convenient, but solves per call: use prepared() for many points


@eqx.filter_jit
def _solve_jitted(field: HardConstraintField):
    # one compiled solve shared by solve() and diagnose() (a lambda per call would recompile each time)
    return field.coefficients()


def make_hard_constraint_field(
    problem: Problem,
    *,
    n_basis: int = 64,
    width: int = 64,
    depth: int = 3,
    activation: str = "tanh",
    model: str = "fourier",
    n_constraint: Mapping[str, int] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 256,
    key: PRNGKeyArray,
) -> HardConstraintField:
    """A :class:`HardConstraintField` for ``problem`` with random (uniform) constraint points.

    Args:
        problem: the problem (scalar field).
        n_basis: number of basis functions ``N`` (the network's output size).
        width, depth, activation, model: the basis network. The default random-Fourier-feature network
            gives a rich basis from the start; a plain tanh MLP at initialisation spans only a few smooth
            functions numerically (its constraint matrix has rank ~5 of 14 in the tests' example).
        n_constraint: constraint points per term (default: 1/32 of each term's training points, at least
            4); more points than ``N`` make the solve an over-determined least-squares problem.
        rtol, atol, max_steps: Levenberg–Marquardt settings.
        key: PRNG key (network weights and constraint points).
    """
    if problem.output_dim != 1:
        raise ValueError(f"hard constraints support scalar fields; {problem.name!r} has {problem.output_dim}")
    if n_basis < 1:
        raise ValueError(f"n_basis must be >= 1, got {n_basis}")
    kn, kp = jax.random.split(key)
    dom = problem.domain
    net = MODELS[model](dom.dim, n_basis, width, depth, activation, key=kn)
    basis = BasisField(net, tuple(float(v) for v in dom.lower), tuple(float(v) for v in dom.upper))
    counts = {k: max(4, t.n_points // 32) for k, t in problem.terms.items()}
    counts.update(dict(n_constraint or {}))
    pts = problem.sample(kp, "uniform", counts)
    data = {k: np.asarray(v, np.float64) for k, v in pts.items()}
    return HardConstraintField(basis, problem, _Points(data), rtol, atol, max_steps)
