"""Nonlinear steady problems with optimistix (Newton / Levenberg–Marquardt), differentiated implicitly."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
from jaxtyping import Array, Float, PyTree

from ._elliptic import DarcyOperator

NONLINEAR_SOLVERS = ("newton", "lm")


class SteadyStats(eqx.Module):
    """Diagnostics of a nonlinear solve: steps taken, final residual norm (max abs), success flag."""

    steps: Array
    residual: Array
    converged: Array


def _half_sum_squares(tree) -> Array:
    """``0.5 * sum(r**2)`` over a pytree of residuals."""
    return 0.5 * sum(jnp.sum(r**2) for r in jax.tree.leaves(tree))


class _TrustRegionFrom(optx.ClassicalTrustRegion):
    """Optimistix's classical trust region with a chosen first step size (``1 / damping``) instead of 1."""

    first: float = eqx.field(static=True, default=1.0)

    def init(self, y, f_info_struct):
        state = super().init(y, f_info_struct)
        # scaled, not rebuilt: optimistix's weakly typed 1.0 keeps the solve in the unknowns' dtype
        return eqx.tree_at(lambda s: s.step_size, state, state.step_size * self.first)


class DampedLevenbergMarquardt(optx.AbstractLeastSquaresSolver):
    """Levenberg–Marquardt (optimistix's steps and step test) with a chosen initial damping ``lambda_0`` and
    a stall test.

    Why: the rows of a learned basis are badly scaled (``J^T J`` spans ~0.2 down to the ridge, 1e-8).
    From optimistix's damping 1 the trust region needs ~15 good steps (x3.5 each) before it takes
    Gauss–Newton steps. A small ``lambda_0`` takes the Gauss–Newton step at once, and a step that does not
    lower the residual still raises the damping (x4), so the safeguard stays. At the minimum in float32 the
    loss changes only by rounding, so steps are rejected at random and the step test (which counts accepted
    steps only) waits until the trust region has shrunk below the tolerance: 10-20 idle iterations. The
    stall test stops after ``patience`` rejected steps in a row whose tried points changed the loss by at
    most ``ftol`` (relative). Default ``ftol``: ``1e4 eps`` in float32 (1.2e-3), because rows that cancel
    large terms (a basis weighted by coefficients ~1e3) carry rounding far above ``eps``: 1e-4 of the loss,
    measured on the diffusion–sorption operator's rows; 0 in float64, where the step test is met and a loss
    at its noise floor can still hide coefficient errors along weak directions (measured: gradients 4e-8
    off with the stall test against 2e-12 without). An accepted step resets the count (a solve creeping
    down slowly is not stalled), and so does a rejected step that raised the loss by more, so a run of
    genuine rejections (the damping growing after too long a Gauss–Newton step) never stops the solve.
    A step that leaves the iterate bit for bit unchanged is idle too, in any precision: once the trust region
    is below the iterate's last bit nothing can change any more, and a step test set below the rounding level
    would otherwise keep the solve to ``max_steps``.
    With ``damping=1`` the iterates are ``optx.LevenbergMarquardt``'s until the stall test stops them.

    Arguments: ``rtol``, ``atol`` (optimistix's step test), ``damping`` (``lambda_0 > 0``), ``ftol``,
    ``patience``, ``linear_solver`` (lineax, default QR of the damped Jacobian, as optimistix).
    """

    rtol: float
    atol: float
    norm: Callable
    inner: optx.LevenbergMarquardt
    ftol: float | None = eqx.field(static=True)
    patience: int = eqx.field(static=True)

    def __init__(
        self,
        rtol: float,
        atol: float,
        damping: float = 1.0,
        ftol: float | None = None,
        patience: int = 3,
        linear_solver=None,
    ):
        if not damping > 0 or patience < 1 or (ftol is not None and ftol < 0):
            raise ValueError(f"need damping > 0, patience >= 1, ftol >= 0; got {damping}, {patience}, {ftol}")
        # optimistix's own solver, with only its trust region's first step size replaced
        lm = optx.LevenbergMarquardt(rtol, atol, linear_solver=linear_solver or lx.QR())
        self.inner = eqx.tree_at(lambda s: s.search, lm, _TrustRegionFrom(first=1.0 / damping))
        self.rtol, self.atol, self.norm = rtol, atol, lm.norm
        self.ftol, self.patience = ftol, patience

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        inner = self.inner.init(fn, y, args, options, f_struct, aux_struct, tags)
        # how many iterations in a row changed the loss by rounding only, and whether that reached patience
        return inner, jnp.array(0), jnp.array(False)

    def step(self, fn, y, args, options, state, tags):
        old, idle, _ = state
        tried, before, start = old.y_eval, _half_sum_squares(old.f_info.residual), y
        y, inner, aux = self.inner.step(fn, y, args, options, old, tags)
        # the loss at the point this iteration tried (optimistix keeps it only if the step was accepted).
        # Idle: a rejected step whose loss differs from the last accepted one by rounding alone. Accepted
        # steps reset the count (a slowly creeping solve is not stalled), and so does a rejected step that
        # genuinely raised the loss
        after = _half_sum_squares(fn(tried, args)[0])
        eps = float(jnp.finfo(after.dtype).eps)
        # float64 meets the step test, and there a loss at its noise floor can still hide a coefficient
        # error of ~1e-6 along weak directions, so the stall test is only on by default below float64
        ftol = (1e4 * eps if eps > 1e-10 else 0.0) if self.ftol is None else self.ftol
        rejected = inner.num_accepted_steps == old.num_accepted_steps
        # a step that did not move at all (the trust region below the iterate's last bit; accepted or not) is
        # idle whatever the loss says: the loss recomputed at the same point can differ in its last bit from
        # optimistix's value (another fusion of the same sum), so with ftol = 0 a converged float64 solve
        # whose step test cannot be met at its rounding level would otherwise spin to max_steps
        unmoved = jnp.asarray(eqx.tree_equal(tried, start))
        quiet = (rejected & (jnp.abs(after - before) <= ftol * before)) | unmoved
        idle = jnp.where(quiet, idle + 1, 0)
        return y, (inner, idle, idle >= self.patience), aux

    def terminate(self, fn, y, args, options, state, tags):
        inner, _, stalled = state
        done, result = self.inner.terminate(fn, y, args, options, inner, tags)
        return done | stalled, result

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        return self.inner.postprocess(fn, y, aux, args, options, state[0], tags, result)


def solve_steady(
    residual: Callable[[PyTree, object], PyTree],
    u0: PyTree,
    args=None,
    *,
    solver: str = "newton",
    rtol: float = 1e-10,
    atol: float = 1e-10,
    max_steps: int = 50,
    adjoint: optx.AbstractAdjoint | None = None,
    return_stats: bool = False,
):
    """Solve ``residual(u, args) = 0`` for ``u`` starting from ``u0``.

    ``'newton'``: optimistix's Newton root finder (Jacobian by forward-mode autodiff, dense linear solve
    by lineax's automatic choice). ``'lm'``: Levenberg–Marquardt on ``||residual||^2``, more robust far from
    the solution. Gradients with respect to ``args`` come from the implicit function theorem
    (``optx.ImplicitAdjoint``: one linear solve with the transposed Jacobian at the solution), never from
    unrolling the iterations; pass ``adjoint=optx.RecursiveCheckpointAdjoint()`` to unroll instead.

    A solve that does not converge within ``max_steps`` raises an error that says so (also under jit).

    Args:
        residual: ``(u, args) -> r`` with ``r`` shaped like ``u`` (Newton) or any shape (LM).
        u0: initial guess; args: parameters (differentiable).
        solver: 'newton' or 'lm'; rtol, atol, max_steps: stopping rule.
        return_stats: also return :class:`SteadyStats`.

    Returns:
        The solution (and the stats).
    """
    if solver not in NONLINEAR_SOLVERS:
        raise ValueError(f"unknown nonlinear solver {solver!r}; choose one of {NONLINEAR_SOLVERS}")
    kwargs = dict(args=args, max_steps=max_steps, throw=False, adjoint=adjoint or optx.ImplicitAdjoint())
    if solver == "newton":
        sol = optx.root_find(residual, optx.Newton(rtol=rtol, atol=atol), u0, **kwargs)
    else:
        sol = optx.least_squares(residual, optx.LevenbergMarquardt(rtol=rtol, atol=atol), u0, **kwargs)
    r = residual(sol.value, args)
    rmax = jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in jax.tree_util.tree_leaves(r)]))
    ok = sol.result == optx.RESULTS.successful
    value = eqx.error_if(
        sol.value,
        ~ok,
        f"the nonlinear {solver} solve did not converge within {max_steps} steps (rtol={rtol}, atol={atol}); "
        "try a better initial guess, solver='lm', or a larger max_steps",
    )
    if return_stats:
        return value, SteadyStats(sol.stats["num_steps"], rmax, ok)
    return value


def nonlinear_poisson(
    reaction: Callable[[Array, object], Array],
    f: Float[Array, "n n"],
    args=None,
    *,
    a: Float[Array, "n n"] | None = None,
    solver: str = "newton",
    **kwargs,
) -> Float[Array, "n n"]:
    """Solve ``-div(a grad u) + reaction(u, args) = f`` on the unit square, ``u = 0`` on the boundary.

    The diffusion part is the 5-point finite-volume :class:`DarcyOperator` (``a = 1`` by default); the
    discrete residual is solved by :func:`solve_steady` and differentiated implicitly.

    Args:
        reaction: pointwise nonlinearity ``g(u, args)`` (e.g. ``lambda u, c: c * u**3``).
        f: source at the ``n x n`` vertices; args: parameters of ``g``.
        a: diffusion coefficient at the vertices (default 1).

    Returns:
        ``u`` at all ``n x n`` vertices.
    """
    f = jnp.asarray(f)
    op = DarcyOperator(jnp.ones_like(f) if a is None else jnp.asarray(a))
    rhs = f[1:-1, 1:-1]

    def residual(u, args):
        return op(u) + reaction(u, args) - rhs

    u = solve_steady(residual, jnp.zeros_like(rhs), args, solver=solver, **kwargs)
    return jnp.pad(u, 1)
