"""Stacked second-order Taylor propagation: a value and its derivatives through a network in one pass."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


class Rows(eqx.Module):
    """A quantity and its derivatives at a batch of points: ``value``, first derivatives ``d`` along
    ``n1`` coordinates, and pure second derivatives ``dd`` along the first ``n2`` of those coordinates.

    Why: a linear layer then maps the value and every derivative at every point with one matrix
    product (``(1 + n1 + n2) * n`` rows), where nested JVPs issue one small product per derivative,
    forward and backward. Each derivative is its own ``(n, ...)`` array (a rank-3 stack makes XLA's CPU
    backend copy around every product), and the second-order coordinates come first, so the first
    derivative paired with ``dd[i]`` is ``d[i]``.

    Attributes:
        value: shape ``(n, ...)``; d: ``n1`` arrays of that shape; dd: ``n2 <= n1`` arrays.
    """

    value: Float[Array, "n ..."]
    d: tuple[Float[Array, "n ..."], ...]
    dd: tuple[Float[Array, "n ..."], ...]

    def linear(self, weight: Float[Array, "o i"], bias: Float[Array, " o"] | None = None) -> Rows:
        """``W z + b``: every stream through ``W`` in one product; derivatives get no bias."""
        parts = (self.value, *self.d, *self.dd)
        n = self.value.shape[0]
        out = jnp.concatenate(parts) @ weight.T
        outs = [out[i * n : (i + 1) * n] for i in range(len(parts))]
        value = outs[0] if bias is None else outs[0] + bias
        return Rows(value, tuple(outs[1 : 1 + len(self.d)]), tuple(outs[1 + len(self.d) :]))

    def apply(self, f: Callable) -> Rows:
        """An elementwise function: ``f(v)``, ``f'(v) d``, ``f''(v) d^2 + f'(v) dd`` (chain rule)."""
        ones = jnp.ones_like(self.value)
        (f0, f1), (_, f2) = jax.jvp(lambda z: jax.jvp(f, (z,), (ones,)), (self.value,), (ones,))
        d = tuple(f1 * a for a in self.d)
        dd = tuple(f2 * a**2 + f1 * b for a, b in zip(self.d, self.dd))
        return Rows(f0, d, dd)

    def __mul__(self, other: Rows) -> Rows:
        """Product rule (Leibniz); shapes broadcast like the values'."""
        u, w = self.value, other.value
        d = tuple(a * w + u * b for a, b in zip(self.d, other.d))
        dd = tuple(a * w + 2 * p * q + u * b for a, b, p, q in zip(self.dd, other.dd, self.d, other.d))
        return Rows(u * w, d, dd)

    def __add__(self, other: Rows) -> Rows:
        add = lambda xs, ys: tuple(x + y for x, y in zip(xs, ys))  # noqa: E731
        return Rows(self.value + other.value, add(self.d, other.d), add(self.dd, other.dd))

    def __rsub__(self, c) -> Rows:
        """``c - self`` for a constant ``c`` (its derivatives vanish)."""
        return Rows(c - self.value, tuple(-a for a in self.d), tuple(-a for a in self.dd))

    def concat(self, other: Rows) -> Rows:
        """The two quantities side by side (along the last axis)."""
        cat = lambda xs, ys: tuple(jnp.concatenate([x, y], axis=-1) for x, y in zip(xs, ys))  # noqa: E731
        return Rows(jnp.concatenate([self.value, other.value], axis=-1), cat(self.d, other.d), cat(self.dd, other.dd))


def rows_of(f: Callable, points: Float[Array, "n d"], axes: tuple[int, ...], n2: int) -> Rows:
    """:class:`Rows` of ``f`` at ``points`` by nested JVPs (for cheap pointwise functions: input
    features, output transforms).

    Args:
        f: ``(d,) -> (...)`` on one point.
        points: shape ``(n, d)``.
        axes: coordinates of the first derivatives; the first ``n2`` of them also get pure second
            derivatives.
    """

    def one(x):
        d, dd = [], []
        for i, a in enumerate(axes):
            e = jnp.zeros_like(x).at[a].set(1)
            if i < n2:
                (_, t1), (_, t2) = jax.jvp(lambda y: jax.jvp(f, (y,), (e,)), (x,), (e,))
                dd.append(t2)
            else:
                _, t1 = jax.jvp(f, (x,), (e,))
            d.append(t1)
        return f(x), tuple(d), tuple(dd)

    value, d, dd = jax.vmap(one)(points)
    return Rows(value, d, dd)


def derivative_axes(first: tuple[int, ...], second: tuple[int, ...]) -> tuple[int, ...]:
    """The propagation order of :class:`Rows`: second-order coordinates first, then the others."""
    return tuple(second) + tuple(a for a in first if a not in second)


def caller_rows(out: Rows, first: tuple[int, ...], second: tuple[int, ...]) -> Float[Array, "n r ..."]:
    """``out`` (propagated in :func:`derivative_axes` order) as ``(n, r, ...)`` rows in the caller's
    order: value, ``d/dx_a`` for ``a`` in ``first``, ``d^2/dx_a^2`` for ``a`` in ``second``."""
    axes = derivative_axes(first, second)
    parts = [out.value] + [out.d[axes.index(a)] for a in first] + list(out.dd)
    return jnp.stack(parts, axis=1)
