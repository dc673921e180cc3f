"""Nonlinear steady problems with optimistix (Newton / Levenberg–Marquardt), differentiated implicitly."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Float, PyTree

from ._elliptic import DarcyOperator

NONLINEAR_SOLVERS = ("newton", "lm")


class SteadyStats(eqx.Module):
    """Diagnostics of a nonlinear solve: steps taken, final residual norm (max abs), success flag."""

    steps: Array
    residual: Array
    converged: Array


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
