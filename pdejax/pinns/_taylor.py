"""Stacked second-order Taylor propagation: a value and its derivatives through a network in one pass."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


class Rows(eqx.Module):
    """A quantity and its derivatives at a batch of points: ``value``, first derivatives ``d`` along
    ``n1`` coordinates, and second derivatives ``dd``, one per pair of those coordinates in ``pairs``
    (``(i, i)``: pure, ``(i, j)``: mixed; indices into ``d``).

    Why: a linear layer then maps the value and every derivative at every point with one matrix
    product (``(1 + n1 + n2) * n`` rows), where nested JVPs issue one small product per derivative,
    forward and backward. Each derivative is its own ``(n, ...)`` array: a rank-3 stack makes XLA's CPU
    backend copy around every product.

    Attributes:
        value: shape ``(n, ...)``; d: ``n1`` arrays of that shape; dd: one array per entry of ``pairs``.
    """

    value: Float[Array, "n ..."]
    d: tuple[Float[Array, "n ..."], ...]
    dd: tuple[Float[Array, "n ..."], ...]
    pairs: tuple[tuple[int, int], ...] = eqx.field(static=True)

    def _new(self, value, d, dd) -> Rows:
        return Rows(value, tuple(d), tuple(dd), self.pairs)

    def linear(self, weight: Float[Array, "o i"], bias: Float[Array, " o"] | None = None) -> Rows:
        """``W z + b``: every stream through ``W`` in one product; derivatives get no bias."""
        parts = (self.value, *self.d, *self.dd)
        n = self.value.shape[0]
        out = jnp.concatenate(parts) @ weight.T
        outs = [out[i * n : (i + 1) * n] for i in range(len(parts))]
        value = outs[0] if bias is None else outs[0] + bias
        return self._new(value, outs[1 : 1 + len(self.d)], outs[1 + len(self.d) :])

    def apply(self, f: Callable) -> Rows:
        """An elementwise function: ``f(v)``, ``f'(v) d_i``, ``f''(v) d_i d_j + f'(v) dd_ij`` (chain rule)."""
        ones = jnp.ones_like(self.value)
        (f0, f1), (_, f2) = jax.jvp(lambda z: jax.jvp(f, (z,), (ones,)), (self.value,), (ones,))
        d = [f1 * a for a in self.d]
        dd = [f2 * self.d[i] * self.d[j] + f1 * b for (i, j), b in zip(self.pairs, self.dd)]
        return self._new(f0, d, dd)

    def __mul__(self, other: Rows) -> Rows:
        """Product rule (Leibniz); shapes broadcast like the values'."""
        u, w = self.value, other.value
        p, q = self.d, other.d
        d = [a * w + u * b for a, b in zip(p, q)]
        dd = [a * w + p[i] * q[j] + p[j] * q[i] + u * b for (i, j), a, b in zip(self.pairs, self.dd, other.dd)]
        return self._new(u * w, d, dd)

    def __add__(self, other: Rows) -> Rows:
        return self._new(
            self.value + other.value,
            [x + y for x, y in zip(self.d, other.d)],
            [x + y for x, y in zip(self.dd, other.dd)],
        )

    def __rsub__(self, c) -> Rows:
        """``c - self`` for a constant ``c`` (its derivatives vanish)."""
        return self._new(c - self.value, [-a for a in self.d], [-a for a in self.dd])

    def concat(self, other: Rows) -> Rows:
        """The two quantities side by side (along the last axis)."""
        cat = lambda xs, ys: [jnp.concatenate([x, y], axis=-1) for x, y in zip(xs, ys)]  # noqa: E731
        return self._new(
            jnp.concatenate([self.value, other.value], axis=-1), cat(self.d, other.d), cat(self.dd, other.dd)
        )


def rows_of(
    f: Callable, points: Float[Array, "n d"], first: tuple[int, ...], second: tuple[tuple[int, int], ...]
) -> Rows:
    """:class:`Rows` of ``f`` at ``points`` by nested JVPs (for cheap pointwise functions: input
    features, output transforms).

    Args:
        f: ``(d,) -> (...)`` on one point.
        points: shape ``(n, d)``.
        first: coordinates of the first derivatives.
        second: coordinate pairs ``(a, b)`` of the second derivatives (``a`` and ``b`` in ``first``).
    """

    def unit(x, a):
        return jnp.zeros_like(x).at[a].set(1)

    def one(x):
        d = [jax.jvp(f, (x,), (unit(x, a),))[1] for a in first]
        dd = []
        for a, b in second:
            ea, eb = unit(x, a), unit(x, b)
            dd.append(jax.jvp(lambda y: jax.jvp(f, (y,), (ea,))[1], (x,), (eb,))[1])
        return f(x), tuple(d), tuple(dd)

    value, d, dd = jax.vmap(one)(points)
    return Rows(value, d, dd, tuple((first.index(a), first.index(b)) for a, b in second))


def stacked(out: Rows) -> Float[Array, "n r ..."]:
    """``out`` as ``(n, r, ...)``: the value, the first derivatives, then the second ones, in order."""
    return jnp.stack([out.value, *out.d, *out.dd], axis=1)
