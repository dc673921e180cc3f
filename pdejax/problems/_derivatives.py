"""Derivative helpers for residuals: partial derivatives of any order, gradient, Laplacian, divergence.

A *field* is any callable ``u(x)`` mapping one point ``x`` of shape ``(d,)`` to a scalar or a vector of
shape ``(c,)``. Points hold the spatial coordinates first and time last. Derivatives are taken in forward
mode (inputs are low dimensional, so pushing tangents forward is cheaper than reverse mode), and
repeated derivatives along one coordinate use Taylor mode (``jax.experimental.jet``), whose cost grows
polynomially rather than exponentially with the order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.experimental import jet as _jet
from jaxtyping import Array, Float

Field = Callable[[Float[Array, " d"]], Float[Array, "..."]]


def _axis(axis: int, d: int) -> int:
    if not -d <= axis < d:
        raise ValueError(f"coordinate index {axis} is out of range for points with {d} coordinates")
    return axis % d


def _unit(axis: int, x: Float[Array, " d"]) -> Float[Array, " d"]:
    return jnp.zeros_like(x).at[axis].set(1.0)


def _directional(u: Field, v: Float[Array, " d"]) -> Field:
    """The field ``x -> (v . grad) u(x)`` by one forward-mode pass."""
    return lambda y: jax.jvp(u, (y,), (v,))[1]


class Memo:
    """A field wrapper that computes the derivatives a residual needs at a point jointly, once.

    Residuals ask for ``u``, ``u_x``, ``u_xx`` and ``u_t`` one after another. Taken separately, each
    request repeats forward passes, and reverse mode then differentiates every copy. :func:`prefetch`
    first traces the residual abstractly to learn which derivatives it requests, then takes, per
    coordinate, the highest order in one nested pass that yields every lower order too, and serves
    the residual's requests from that cache. :meth:`Problem.term_residuals` does this automatically.
    """

    def __init__(self, u: Field, record: bool = False):
        self.u = u
        self.record = record
        self.x = None
        self.cache: dict[tuple[int, ...], Array] = {}
        self.requests: set[tuple[int, ...]] = set()

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, "..."]:
        return partial(self, x)

    def _lookup(self, x, axes: tuple[int, ...]):
        if self.x is not x:
            self.x, self.cache = x, {}
        return self.cache.get(axes)


def derivative_requests(residual: Callable, u: Field, x, *args) -> set[tuple[int, ...]]:
    """The derivatives ``residual(u, x, *args)`` asks for, as sorted coordinate tuples (``()``: ``u``
    itself is not recorded). ``x`` and ``args`` may be abstract (``jax.ShapeDtypeStruct``)."""
    recorder = Memo(u, record=True)
    jax.eval_shape(lambda y, *a: residual(recorder, y, *a), x, *args)
    return set(recorder.requests)


def derivative_plan(residual: Callable, u: Field, x, *args) -> dict[int, int]:
    """``axis -> highest pure order`` that ``residual`` asks for (mixed derivatives are computed on
    request)."""
    plan: dict[int, int] = {}
    for key in derivative_requests(residual, u, x, *args):
        if len(set(key)) <= 1 and key:
            plan[key[0]] = max(plan.get(key[0], 0), len(key))
    return plan


def stacked_plan(keys) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]] | None:
    """``(first, second)`` for a field's ``derivative_rows`` that serves the derivative ``keys`` (sorted
    coordinate tuples): every coordinate that appears, and every second-order key. ``None`` if a key has
    order > 2 or none has order >= 1 (nothing to gain)."""
    keys = [tuple(k) for k in keys]
    if not any(keys) or any(len(k) > 2 for k in keys):
        return None
    first = tuple(sorted({a for k in keys for a in k}))
    second = tuple(sorted({k for k in keys if len(k) == 2}))
    return first, second


def row_index(first: tuple[int, ...], second: tuple[tuple[int, int], ...]) -> dict[tuple[int, ...], int]:
    """``key -> row`` in a field's ``derivative_rows``: the value, the first derivatives along ``first``,
    then the second derivatives for the pairs ``second``."""
    where = {(): 0, **{(a,): 1 + i for i, a in enumerate(first)}}
    where.update({tuple(p): 1 + len(first) + i for i, p in enumerate(second)})
    return where


def prefetch(residual: Callable, u: Field, x: Float[Array, " d"], *args) -> Array:
    """``residual(u, x, *args)`` with the derivatives of ``u`` it requests computed jointly (see :class:`Memo`)."""
    memo = Memo(u)
    memo.x = x
    for axis, order in sorted(derivative_plan(residual, u, x, *args).items()):
        for k, val in enumerate(_along(u, x, axis, order)):
            memo.cache.setdefault((axis,) * k, val)
    return residual(memo, x, *args)


def from_rows(
    residual: Callable, u: Field, x: Float[Array, " d"], rows: Array, where: dict[tuple[int, ...], int], *args
) -> Array:
    """``residual(u, x, *args)`` served from precomputed derivative ``rows`` at ``x`` (``where``: derivative
    key -> row, see :func:`row_index`); anything else it asks for is computed on request."""
    memo = Memo(u)
    memo.x = x
    for key, i in where.items():
        memo.cache[key] = rows[i]
    return residual(memo, x, *args)


def _along(u: Field, x: Float[Array, " d"], axis: int, order: int) -> list[Array]:
    """``[u, d_a u, ..., d_a^order u]`` at ``x``: nested JVPs up to order 2, Taylor mode beyond."""
    v = _unit(axis, x)
    if order == 0:
        return [u(x)]
    if order == 1:
        return list(jax.jvp(u, (x,), (v,)))
    if order == 2:
        (p, t1), (_, t2) = jax.jvp(lambda y: jax.jvp(u, (y,), (v,)), (x,), (v,))
        return [p, t1, t2]
    try:
        primal, terms = _jet.jet(u, (x,), ([v] + [jnp.zeros_like(x)] * (order - 1),))
        return [primal, *terms]
    except NotImplementedError:  # a primitive without a jet rule: nested JVPs always work
        out = [u(x)]
        g = u
        for _ in range(order):
            g = _directional(g, v)
            out.append(g(x))
        return out


def partial(u: Field, x: Float[Array, " d"], *axes: int) -> Float[Array, "..."]:
    """Mixed partial derivative ``d^k u / dx_{a1} ... dx_{ak}`` at one point.

    ``partial(u, x, 0, 0)`` is ``u_xx``; ``partial(u, x, 0, -1)`` is ``u_xt`` for space-time points;
    with no axes it returns ``u(x)``. Derivatives along one coordinate use nested forward-mode JVPs (up
    to second order) or Taylor mode (``jax.experimental.jet``, third order and beyond, whose cost grows
    polynomially with the order); mixed derivatives nest JVPs.

    Args:
        u: field, ``(d,) -> ()`` or ``(d,) -> (c,)``.
        x: the point, shape ``(d,)``.
        *axes: coordinate indices (negative indices count from the end, so ``-1`` is time).

    Returns:
        The derivative, with the shape of ``u(x)``.
    """
    x = jnp.asarray(x)
    d = x.shape[0]
    key = tuple(sorted(_axis(a, d) for a in axes))  # partial derivatives commute
    memo = u if isinstance(u, Memo) else None
    if memo is not None and memo.record:
        memo.requests.add(key)
        return jnp.zeros(jax.eval_shape(memo.u, x).shape, x.dtype)
    if memo is not None:
        hit = memo._lookup(x, key)
        if hit is not None:
            return hit
        u = memo.u
    if len(set(key)) <= 1:
        values = _along(u, x, key[0] if key else 0, len(key))
        if memo is not None:
            for k, val in enumerate(values):
                memo.cache.setdefault(key[:1] * k, val)
        return values[-1]
    g = u
    for a in key:
        g = _directional(g, _unit(a, x))
    out = g(x)
    if memo is not None:
        memo.cache[key] = out
    return out


def time_derivative(u: Field, x: Float[Array, " d"], order: int = 1) -> Float[Array, "..."]:
    """``d^k u / dt^k`` for space-time points (time is the last coordinate)."""
    return partial(u, x, *([-1] * order))


def grad(u: Field, x: Float[Array, " d"], axes: Sequence[int] | None = None) -> Float[Array, "... k"]:
    """Gradient of ``u`` at ``x`` along ``axes`` (default: all coordinates), forward mode.

    Returns shape ``(k,)`` for a scalar field, ``(c, k)`` for a vector field (Jacobian rows).
    """
    x = jnp.asarray(x)
    return jnp.stack([partial(u, x, a) for a in _axes(axes, x.shape[0])], axis=-1)


def laplacian(u: Field, x: Float[Array, " d"], axes: Sequence[int] | None = None) -> Float[Array, "..."]:
    """Laplacian ``sum_i d^2 u / dx_i^2`` over ``axes``.

    For space-time points pass the spatial axes, e.g. ``axes=(0, 1)``; the default (all coordinates)
    is right for steady problems. Each second derivative is one forward-over-forward pass.
    """
    x = jnp.asarray(x)
    return sum(partial(u, x, a, a) for a in _axes(axes, x.shape[0]))


def divergence(v: Field, x: Float[Array, " d"], axes: Sequence[int] | None = None) -> Float[Array, ""]:
    """Divergence ``sum_i d v_i / dx_{axes[i]}`` of a vector field with one component per axis.

    ``v(x)`` must have shape ``(k,)`` with ``k = len(axes)`` (default: all coordinates).
    """
    x = jnp.asarray(x)
    idx = _axes(axes, x.shape[0])
    jac = grad(v, x, idx)
    if jac.ndim != 2 or jac.shape[0] != len(idx):
        raise ValueError(
            f"divergence needs a vector field with {len(idx)} components (one per axis), "
            f"got output shape {jac.shape[:-1]}"
        )
    return jnp.trace(jac)


def hessian(u: Field, x: Float[Array, " d"], axes: Sequence[int] | None = None) -> Float[Array, "... k k"]:
    """Hessian of a scalar (or each component of a vector) field over ``axes``, forward-over-forward."""
    x = jnp.asarray(x)
    idx = _axes(axes, x.shape[0])
    return grad(lambda y: grad(u, y, idx), x, idx)


def _axes(axes: Sequence[int] | None, d: int) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(d))
    idx = tuple(_axis(int(a), d) for a in axes)
    if not idx:
        raise ValueError("axes must name at least one coordinate")
    return idx
