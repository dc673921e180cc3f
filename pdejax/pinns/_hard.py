"""Physics-informed hard constraints (PI-HC): basis functions whose coefficients solve the PDE on constraint points."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Float, PRNGKeyArray

from ..problems import Domain, Problem, sample
from ..problems._derivatives import Memo, derivative_requests, partial, row_index, stacked_plan
from ..solvers._nonlinear import DampedLevenbergMarquardt
from ._field import features
from ._models import MODELS, output_layer
from ._taylor import rows_of, stacked


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
    """``N`` neural basis functions ``b(x) in R^N`` on a box (inputs scaled to ``[-1, 1]``; periodic axes
    embedded as in :class:`pdejax.pinns.Field`, so every basis function is exactly periodic along them).

    With ``initial`` set, the field is ``u = u0(x) + tau(t) b(x) . w`` (``tau = (t - t0)/(t1 - t0)``), which
    meets the initial condition exactly for every ``w`` (Chalapathi et al. do this for Navier–Stokes): the
    call then returns the ``N + 1`` functions ``(tau b, u0)``, the last with the fixed coefficient 1
    (:meth:`full`), so the field stays linear in ``w`` plus a known offset.

    Attributes:
        net: backbone ``(f,) -> (N,)``; lower, upper: the box; periodic, harmonics: the embedding;
        initial: ``u0(x_spatial)`` or ``None``.
    """

    net: eqx.Module
    lower: tuple[float, ...] = eqx.field(static=True)
    upper: tuple[float, ...] = eqx.field(static=True)
    periodic: tuple[int, ...] = eqx.field(static=True, default=())
    harmonics: int = eqx.field(static=True, default=1)
    initial: Callable | None = eqx.field(static=True, default=None)

    @property
    def size(self) -> int:
        """``N``, the number of free coefficients."""
        return int(output_layer(self.net).weight.shape[0])

    def full(self, w: Float[Array, "... N"]) -> Float[Array, "... M"]:
        """Coefficients for the functions :meth:`__call__` returns: ``w``, then 1 for ``u0`` if set."""
        if self.initial is None:
            return w
        return jnp.concatenate([w, jnp.ones(w.shape[:-1] + (1,), w.dtype)], axis=-1)

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " M"]:
        b = self.net(features(x, self.lower, self.upper, self.periodic, self.harmonics))
        if self.initial is None:
            return b
        return jnp.concatenate([self._tau(x) * b, self._u0(x).astype(b.dtype)])

    def _tau(self, x):
        return ((x[-1] - self.lower[-1]) / (self.upper[-1] - self.lower[-1]))[None]

    def _u0(self, x):
        return jnp.reshape(self.initial(x[:-1]), (1,))

    def derivative_rows(
        self, points: Float[Array, "n d"], first: tuple[int, ...], second: tuple[tuple[int, int], ...]
    ) -> Float[Array, "n r M"] | None:
        """The basis and its derivatives at many points in one stacked pass (rows as in
        :meth:`pdejax.pinns.Field.derivative_rows`); ``None`` if the backbone has no ``rows`` method."""
        net_rows = getattr(self.net, "rows", None)
        if net_rows is None:
            return None
        feats = rows_of(
            lambda y: features(y, self.lower, self.upper, self.periodic, self.harmonics), points, first, second
        )
        out = net_rows(feats)
        if self.initial is not None:
            tau = rows_of(self._tau, points, first, second)
            out = (tau * out).concat(rows_of(self._u0, points, first, second))
        return stacked(out)


class _Points:
    """NumPy data held as a static field (hashed by identity, so never traced or trained): the PI-HC
    constraint points here, the grid operator's row indices and expert weights in ``operators._pihc``."""

    def __init__(self, data):
        self.data = data

    def __hash__(self):
        return id(self.data)

    def __eq__(self, other):
        return isinstance(other, _Points) and other.data is self.data


def _requests(problem: Problem, name: str, x: Float[Array, " d"]) -> list[tuple[int, ...]]:
    """The derivatives ``d^k u / dx_a...`` the residual of term ``name`` asks for at a point."""
    term = problem.terms[name]
    extra = () if term.kind != "data" else (jnp.zeros(jnp.shape(term.values)[1:], x.dtype),)
    return sorted(derivative_requests(term.residual, lambda y: jnp.zeros((), y.dtype), x, *extra) | {()})


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
        out[name] = _stacked_table(basis, pts, keys)
        if out[name] is None:
            out[name] = {k: jax.vmap(lambda y, k=k: partial(basis, y, *k))(pts) for k in keys}
    return out


def _stacked_table(basis: BasisField, pts, keys) -> dict | None:
    """The table of :func:`tabulate` from one stacked pass, when every key has order <= 2 and the backbone
    supports it (else ``None``)."""
    plan = stacked_plan(keys)
    rows = None if plan is None else basis.derivative_rows(pts, *plan)
    if rows is None:
        return None
    where = row_index(*plan)
    return {k: rows[:, where[k]] for k in keys}


def _unrecorded(y):
    raise ValueError(
        "a residual asked for a derivative that its recording did not see (e.g. of a function of u); "
        "write it with partial(u, x, ...) on u itself"
    )


def _combine(rows: Float[Array, "... M"], w: Float[Array, " N"]) -> Float[Array, "..."]:
    """``rows . w``; a table with one column more than ``w`` carries a fixed offset there (coefficient 1,
    see :meth:`BasisField.full`)."""
    n = w.shape[0]
    out = rows[..., :n] @ w
    return out + rows[..., n] if rows.shape[-1] > n else out


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
            memo.cache = {k: _combine(r, w) for k, r in rows.items()}
            memo.u = _unrecorded
            return jnp.ravel(term.residual(memo, x, *v))

        parts.append(scale * jax.vmap(one)(pts, tab, *vals).reshape(-1))
    return jnp.concatenate(parts)


def zeros_unless_finite(tree):
    """``(tree, finite)``: ``tree`` unchanged when all its arrays are finite, else all zeros, and whether it was.

    Non-finite basis tables (diverged network weights) would make lineax raise inside a jitted training
    step; a constraint layer solves on zeros instead and marks its coefficients as failed."""
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree_util.tree_leaves(tree)]))
    return jax.tree_util.tree_map(lambda v: jnp.where(finite, v, 0.0), tree), finite


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
    tables: Mapping[str, Mapping[tuple[int, ...], Array]] | None = None,
    damping: float = 1.0,
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
        tables: basis derivatives already tabulated for some of the terms (:func:`tabulate`); the others
            are tabulated here.
        damping: the first Levenberg–Marquardt damping (:class:`pdejax.solvers.DampedLevenbergMarquardt`;
            default 1, optimistix's). A Gauss–Newton first step (1e-10, the operators' default) cut the
            global diffusion–sorption solve from 13 to 8 iterations but raised the experts' (hard split,
            whose blocks lean on the ridge) from 8-31 to 24-35, untrained basis, so it is not the default.

    Returns:
        ``(w*, stats)``; a solve that did not converge has ``stats.converged`` false (callers decide; see
        :meth:`HardConstraintField.solve`).
    """
    given = dict(tables or {})
    tables = {**given, **tabulate(problem, basis, {k: v for k, v in points.items() if k not in given})}
    # the failure is reported through the stats (the caller turns it into NaN)
    tables, finite = zeros_unless_finite(tables)
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
        DampedLevenbergMarquardt(rtol, atol, damping),
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
    """``w`` where ``ok``, NaN elsewhere, so the loss turns NaN and training stops. The backward pass sends
    no NaN cotangent into the implicit adjoint (its linear solve would fail first)."""
    return jnp.where(ok, w, jnp.nan)


def _nan_unless_fwd(w, ok):
    return _nan_unless(w, ok), ok


def _nan_unless_bwd(ok, ct):
    return jnp.where(ok, ct, 0.0), None


_nan_unless.defvjp(_nan_unless_fwd, _nan_unless_bwd)


class ExpertSplit(eqx.Module):
    """A split of a space-time box into a grid of sub-boxes, one per expert.

    Attributes:
        lower, upper: the box (``(d,)`` each, space then time).
        counts: pieces per coordinate; the experts are the ``prod(counts)`` cells in row-major order.
    """

    lower: tuple[float, ...] = eqx.field(static=True)
    upper: tuple[float, ...] = eqx.field(static=True)
    counts: tuple[int, ...] = eqx.field(static=True)

    def __check_init__(self):
        if len(self.counts) != len(self.lower) or any(c < 1 for c in self.counts):
            raise ValueError(f"need one piece count >= 1 per coordinate ({len(self.lower)}), got {self.counts}")

    @property
    def size(self) -> int:
        """Number of experts ``K``."""
        return math.prod(self.counts)

    def index(self, x: Float[Array, " d"]) -> Array:
        """The expert whose cell holds ``x`` (an int32 scalar; points on an interface go to the upper cell,
        points outside the box to the nearest cell). Piecewise constant: carries no derivative."""
        lo = jnp.asarray(self.lower, x.dtype)
        hi = jnp.asarray(self.upper, x.dtype)
        counts = jnp.asarray(self.counts, x.dtype)
        # all in floating point until the end: Taylor-mode (jet) derivatives of the field trace this too,
        # and jet has no rule for integer clipping
        cell = jnp.clip(jnp.floor((x - lo) / (hi - lo) * counts), 0, counts - 1)
        strides = jnp.asarray(np.cumprod((self.counts[1:] + (1,))[::-1])[::-1], x.dtype)
        return jnp.sum(cell * strides).astype(jnp.int32)

    def weights(self, x: Float[Array, " d"], width: float) -> Float[Array, " K"]:
        """A smooth partition of unity over the cells at ``x``: per axis, cell ``j`` of ``c`` has weight
        ``s(x - a_j) - s(x - a_{j+1})`` with ``s`` the logistic function of ``(x - a) / (width * cell)`` and
        ``a_0 = -inf``, ``a_c = +inf``, so the weights sum to one exactly; their product over the axes,
        flattened row-major like :meth:`index`. ``width`` is a fraction of a cell."""
        out = jnp.ones((), x.dtype)
        for axis, c in enumerate(self.counts):
            lo, hi = self.lower[axis], self.upper[axis]
            step = (hi - lo) / c
            inner = jax.nn.sigmoid((x[axis] - (lo + step * jnp.arange(1, c, dtype=x.dtype))) / (width * step))
            up = jnp.concatenate([jnp.ones((1,), x.dtype), inner])
            down = jnp.concatenate([inner, jnp.zeros((1,), x.dtype)])
            out = (out[..., None] * (up - down)).reshape(-1)
        return out

    def cell(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper corners ``(d,)`` of expert ``k``'s cell."""
        ijk = np.unravel_index(k, self.counts)
        lo, hi = np.asarray(self.lower), np.asarray(self.upper)
        step = (hi - lo) / np.asarray(self.counts)
        return lo + step * np.asarray(ijk), lo + step * (np.asarray(ijk) + 1)


def split_counts(k: int, spatial_dim: int) -> tuple[int, ...]:
    """Pieces per spatial axis for ``k`` experts: ``k`` along the axis in 1D, a near-square grid in 2D/3D
    (``4 -> 2 x 2``; the earlier axes get the smaller factors, ``6 -> 2 x 3``)."""
    counts, rest = [], k
    for axis in range(spatial_dim - 1):
        left = spatial_dim - axis
        c = max(d for d in range(1, rest + 1) if rest % d == 0 and d <= round(rest ** (1 / left)) + 1e-9)
        counts.append(c)
        rest //= c
    return (*counts, rest)


def expert_split(problem: Problem, experts: int | Sequence[int] = 1) -> ExpertSplit:
    """The split of ``problem``'s space-time box for ``experts``.

    An integer ``K`` splits space only (time stays whole, as in Chalapathi et al.): ``K`` slabs along the
    single spatial axis in 1D, a near-square grid in 2D/3D (``4 -> 2 x 2``). A sequence gives the pieces per
    coordinate explicitly (space then time), e.g. ``(2, 2)`` for 2 in ``x`` and 2 in ``t``.
    """
    dom = problem.domain
    if isinstance(experts, int):
        if experts < 1:
            raise ValueError(f"experts must be >= 1, got {experts}")
        counts = [*split_counts(experts, dom.spatial_dim)] + [1] * (dom.dim - dom.spatial_dim)
    else:
        counts = [int(c) for c in experts]
        if len(counts) != dom.dim:
            raise ValueError(f"experts needs {dom.dim} piece counts (space then time), got {tuple(experts)}")
    return ExpertSplit(tuple(float(v) for v in dom.lower), tuple(float(v) for v in dom.upper), tuple(counts))


def _split_terms(problem: Problem) -> tuple[str, ...]:
    """Terms whose constraint points are divided among the experts: sampled interior terms. The others
    (initial, boundary, data) are shared by every expert, as in Chalapathi et al."""
    return tuple(k for k, t in problem.terms.items() if t.region == "interior" and t.points is None)


class LinearField(eqx.Module):
    """``u(x) = b(x) . w_k(x)``: a basis with fixed coefficients per expert (what a solved constraint layer
    predicts with; one expert: the same ``w`` everywhere).

    Attributes:
        basis: the basis ``(d,) -> (N,)``; coefficients: ``(K, N)``; split: the experts' cells;
        stats: the solve's :class:`ConstraintStats` (per expert) or ``None``.
    """

    basis: BasisField
    coefficients: Float[Array, "K N"]
    split: ExpertSplit
    stats: ConstraintStats | None = None
    blend: float = eqx.field(static=True, default=0.0)

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        b = self.basis(x)
        if self.split.size == 1:
            return _combine(b, self.coefficients[0])
        if self.blend == 0:
            return _combine(b, self.coefficients[self.split.index(x)])
        return self.split.weights(x, self.blend) @ jax.vmap(lambda w: _combine(b, w))(self.coefficients)


def _expert_mesh(k: int):
    """A 1D device mesh over the expert axis: as many devices as divide ``k`` (``None`` on one device)."""
    devices = jax.devices()
    n = max(d for d in range(1, min(k, len(devices)) + 1) if k % d == 0)
    if n < 2:
        return None
    return jax.sharding.Mesh(np.asarray(devices[:n]), ("experts",))


def shard_experts(tree, k: int):
    """Place the leading (expert) axis of every array in ``tree`` across devices, one block of experts per
    device (``jax.sharding``); a no-op on a single device. Works inside and outside ``jit``."""
    mesh = _expert_mesh(k)
    if mesh is None:
        return tree
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("experts"))
    return jax.tree_util.tree_map(lambda a: jax.lax.with_sharding_constraint(a, spec), tree)


class HardConstraintField(eqx.Module):
    """A PI-HC field: ``u(x) = b(x; theta) . w_k*(theta)`` with the coefficients solving the constraints.

    With one expert, ``w*`` solves every term's residual at the constraint points (PI-HC). With ``K``
    experts (PI-HC-MoE, Chalapathi, Du & Krishnapriyan, ICLR 2024) the box is split into cells; expert
    ``k`` solves for its own ``w_k`` from the interior constraint points of its cell plus the shared
    initial/boundary points, with the shared basis. The experts' solves are independent and smaller:
    they run batched (``vmap``), and with several devices the expert axis is sharded across them.

    ``prepared()`` runs the solves once and returns the :class:`LinearField` to evaluate at many points;
    the trainer and :func:`pdejax.pinns.predict` call it once per step / prediction. ``on_failure``
    decides what a solve that stops before its tolerance gives inside training: ``'keep'`` uses its last
    iterate while finite (Levenberg–Marquardt only accepts steps that lower the residual; the trainer
    counts such solves and reports them), ``'nan'`` turns the coefficients NaN so training stops and the
    trainer reports the solve. :meth:`solve` always raises :class:`ConstraintNotConverged`.

    Attributes:
        basis: the basis network.
        problem: the problem whose terms are enforced.
        points: the constraint points (fixed, not trained): ``{term: (K, n, d)}`` for the interior terms
            divided among the experts, ``{term: (n, d)}`` for the terms they share.
        split: the experts' cells (:func:`expert_split`).
        rtol, atol, max_steps, ridge, damping: Levenberg–Marquardt settings (see :func:`solve_coefficients`).
        on_failure: 'keep' or 'nan'.
    """

    basis: BasisField
    problem: Problem
    points: _Points = eqx.field(static=True)
    split: ExpertSplit
    rtol: float | None = eqx.field(static=True, default=None)
    atol: float | None = eqx.field(static=True, default=None)
    max_steps: int = eqx.field(static=True, default=256)
    ridge: float = eqx.field(static=True, default=1e-6)
    on_failure: str = eqx.field(static=True, default="keep")
    blend: float = eqx.field(static=True, default=0.0)
    damping: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if self.on_failure not in FAILURE_POLICIES:
            raise ValueError(f"unknown on_failure {self.on_failure!r}; choose one of {FAILURE_POLICIES}")

    @property
    def experts(self) -> int:
        return self.split.size

    def _points(self) -> dict[str, Array]:
        dtype = jnp.zeros(()).dtype
        return {k: jnp.asarray(v, dtype) for k, v in self.points.data.items()}

    def coefficients(self, adjoint: optx.AbstractAdjoint | None = None) -> tuple[Array, ConstraintStats]:
        """``(W, stats)``: coefficients ``(K, N)`` (differentiable with respect to the basis) and per-expert stats."""
        pts = self._points()
        own = {k: v for k, v in pts.items() if v.ndim == 3}
        shared = {k: v for k, v in pts.items() if v.ndim == 2}
        # the shared points' basis derivatives are the same for every expert: tabulate them once
        shared_tables = tabulate(self.problem, self.basis, shared)

        def one(own_pts):
            return solve_coefficients(
                self.problem,
                self.basis,
                {**shared, **own_pts},
                rtol=self.rtol,
                atol=self.atol,
                max_steps=self.max_steps,
                ridge=self.ridge,
                adjoint=adjoint,
                damping=self.damping,
                tables=shared_tables,
            )

        if not own:  # nothing divided among experts (make_hard_constraint_field allows this for one only)
            return jax.tree_util.tree_map(lambda a: a[None], one({}))
        return shard_experts(jax.vmap(one)(shard_experts(own, self.experts)), self.experts)

    def prepared(self) -> LinearField:
        """The field with solved coefficients (see ``on_failure`` for solves that stop early)."""
        w, stats = self.coefficients()
        ok = stats.converged if self.on_failure == "nan" else jnp.all(jnp.isfinite(w), axis=1)
        return LinearField(self.basis, _nan_unless(w, ok[:, None]), self.split, stats, self.blend)

    def diagnose(self) -> str:
        """One line on the constraint solves at the current parameters (iterations, residual, converged)."""
        return _describe(_solve_jitted(self)[1], self.max_steps)

    def solve(self) -> tuple[LinearField, ConstraintStats]:
        """Solve the constraints eagerly; raises :class:`ConstraintNotConverged` if any expert's were not met."""
        w, stats = _solve_jitted(self)
        if not bool(jnp.all(stats.converged)):
            bad = ~np.asarray(stats.converged)
            steps, res = int(np.max(np.asarray(stats.steps)[bad])), float(np.max(np.asarray(stats.residual)[bad]))
            raise ConstraintNotConverged(steps, res, self.max_steps, self.rtol, self.atol)
        return LinearField(self.basis, w, self.split, stats, self.blend), stats

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        return self.prepared()(x)  # convenient, but solves per call: use prepared() for many points


FAILURE_POLICIES = ("keep", "nan")


def _describe(stats: ConstraintStats, max_steps: int) -> str:
    steps, res, ok = (np.asarray(v) for v in (stats.steps, stats.residual, stats.converged))
    if steps.size == 1:
        state = "converged" if bool(ok.all()) else f"NOT converged within max_steps={max_steps}"
        return (
            f"constraint solve: {int(steps.max())} Levenberg-Marquardt iterations, "
            f"residual (rms) {float(res.max()):.3e}, {state}"
        )
    return (
        f"constraint solves: {int(ok.sum())} of {ok.size} experts converged (max_steps={max_steps}), "
        f"at most {int(steps.max())} Levenberg-Marquardt iterations, largest residual (rms) {float(res.max()):.3e}"
    )


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
    experts: int | Sequence[int] = 1,
    n_constraint: Mapping[str, int] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 256,
    ridge: float = 1e-6,
    on_failure: str = "keep",
    blend: float = 0.0,
    exact_initial: bool | None = None,
    damping: float = 1.0,
    key: PRNGKeyArray,
) -> HardConstraintField:
    """A :class:`HardConstraintField` for ``problem`` with random (uniform) constraint points.

    Args:
        problem: the problem (scalar field).
        n_basis: number of basis functions ``N`` (the network's output size).
        width, depth, activation, model: the basis network. The default random-Fourier-feature network
            gives a rich basis from the start; a plain tanh MLP at initialisation spans only a few smooth
            functions numerically (its constraint matrix has rank ~5 of 14 in the tests' example).
        experts: 1 (one global constraint solve, PI-HC) or the experts of PI-HC-MoE (see
            :func:`expert_split`).
        n_constraint: constraint points per term (default: 1/32 of each term's training points, at least
            4). Interior terms' points are divided among the experts (each gets ``n // K``, at least 4, in
            its own cell); the other terms' points are shared by all experts. More values than ``N``
            make a solve an over-determined least-squares problem.
        rtol, atol, max_steps, ridge, damping: Levenberg–Marquardt settings (:func:`solve_coefficients`).
        on_failure: 'keep' or 'nan' (see :class:`HardConstraintField`).
        exact_initial: build the initial condition into the field, ``u = u0 + tau b . w`` (see
            :class:`BasisField`), instead of constraining it at points. Default: only when no boundary
            condition other than periodicity meets it (where one does, as in diffusion-sorption's
            ``u(0, t) = 1`` against ``u0 = 0``, the ``tau`` factor would force ``|b . w| ~ 1 / tau`` near
            the corner: measured 0.47 rel. L2 against 0.23 with the constraint at points).
        key: PRNG key (network weights and constraint points).
    """
    if problem.output_dim != 1:
        raise ValueError(f"hard constraints support scalar fields; {problem.name!r} has {problem.output_dim}")
    if n_basis < 1:
        raise ValueError(f"n_basis must be >= 1, got {n_basis}")
    split = expert_split(problem, experts)
    kn, kp = jax.random.split(key)
    dom = problem.domain
    # periodicity (and, with exact_initial, the initial condition) is built into the field for every w,
    # so it is no constraint of the solve
    periodic = problem.periodic_axes
    if exact_initial is None:
        exact_initial = not any(
            t.kind in ("dirichlet", "boundary") and t.points is None for t in problem.terms.values()
        )
    initial = problem.initial_condition if exact_initial and dom.has_time else None
    drop = (("periodic",) if periodic else ()) + (("initial",) if initial is not None else ())
    if drop:
        problem = problem.without(*drop)
    net = MODELS[model](dom.dim + len(periodic), n_basis, width, depth, activation, key=kn)
    lower, upper = tuple(float(v) for v in dom.lower), tuple(float(v) for v in dom.upper)
    basis = BasisField(net, lower, upper, periodic, initial=initial)
    counts = {k: max(4, t.n_points // 32) for k, t in problem.terms.items()}
    counts.update(dict(n_constraint or {}))
    unknown = set(counts) - set(problem.terms)
    if unknown:
        raise ValueError(f"n_constraint names unknown terms {sorted(unknown)}; terms are {list(problem.terms)}")
    k_split, k_shared = jax.random.split(kp)
    split_terms = _split_terms(problem)
    if split.size > 1 and not split_terms:
        raise ValueError("experts need interior terms with sampled points to divide; this problem has none")
    shared = problem.sample(k_shared, "uniform", {k: c for k, c in counts.items()})
    data = {k: np.asarray(v, np.float64) for k, v in shared.items() if k not in split_terms}
    for name in split_terms:
        n = max(4, counts[name] // split.size)
        cells = []
        for k in range(split.size):
            lo, hi = split.cell(k)
            if blend:  # the cell and the overlap where its weight is still above ~e^-4 (blend: see LinearField)
                margin = 4 * blend * (np.asarray(split.upper) - np.asarray(split.lower)) / np.asarray(split.counts)
                lo = np.maximum(lo - margin, split.lower)
                hi = np.minimum(hi + margin, split.upper)
            s = dom.spatial_dim
            sub = Domain(tuple(lo[:s]), tuple(hi[:s]), (lo[s], hi[s]) if dom.has_time else None)
            cells.append(np.asarray(sample(sub, "interior", jax.random.fold_in(k_split, k), n), np.float64))
        data[name] = np.stack(cells)
    return HardConstraintField(
        basis, problem, _Points(data), split, rtol, atol, max_steps, ridge, on_failure, blend, damping
    )
