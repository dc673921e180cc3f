"""Derivative helpers against analytic derivatives (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdejax.problems import divergence, grad, hessian, laplacian, partial, time_derivative
from pdejax.problems._derivatives import prefetch

A, B = 1.3, 0.7


def f(x):
    return jnp.sin(A * x[0]) * jnp.exp(B * x[1])


X = jnp.array([0.4, -0.3])
S, C, E = np.sin(A * 0.4), np.cos(A * 0.4), np.exp(B * -0.3)

# d^k/dx^k sin(Ax) cycles through A^k (cos, -sin, -cos, sin); d/dy multiplies by B
DX = [S, A * C, -(A**2) * S, -(A**3) * C, A**4 * S]


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4])
def test_partial_along_x_any_order(k):
    np.testing.assert_allclose(partial(f, X, *([0] * k)), DX[k] * E, rtol=1e-13)


@pytest.mark.parametrize("kx,ky", [(1, 1), (2, 1), (1, 3), (2, 2)])
def test_mixed_partials(kx, ky):
    axes = [0] * kx + [1] * ky
    expected = DX[kx] * B**ky * E
    np.testing.assert_allclose(partial(f, X, *axes), expected, rtol=1e-13)
    np.testing.assert_allclose(partial(f, X, *reversed(axes)), expected, rtol=1e-13)


def test_time_derivative_is_last_axis():
    np.testing.assert_allclose(time_derivative(f, X, 2), S * B**2 * E, rtol=1e-13)
    np.testing.assert_allclose(partial(f, X, -1), S * B * E, rtol=1e-13)


def test_grad_laplacian_hessian():
    np.testing.assert_allclose(grad(f, X), [A * C * E, B * S * E], rtol=1e-13)
    np.testing.assert_allclose(laplacian(f, X), (B**2 - A**2) * S * E, rtol=1e-13)
    np.testing.assert_allclose(laplacian(f, X, axes=(0,)), -(A**2) * S * E, rtol=1e-13)
    np.testing.assert_allclose(
        hessian(f, X), [[-(A**2) * S * E, A * B * C * E], [A * B * C * E, B**2 * S * E]], rtol=1e-13
    )


def test_vector_field_and_divergence():
    def v(x):
        return jnp.stack([x[0] ** 3 * x[1], jnp.sin(x[1]) + x[0]])

    x = jnp.array([1.5, 0.5])
    np.testing.assert_allclose(divergence(v, x), 3 * 1.5**2 * 0.5 + np.cos(0.5), rtol=1e-13)
    np.testing.assert_allclose(partial(v, x, 0, 0), [6 * 1.5 * 0.5, 0.0], atol=1e-13)
    np.testing.assert_allclose(grad(v, x), [[3 * 1.5**2 * 0.5, 1.5**3], [1.0, np.cos(0.5)]], rtol=1e-13)
    with pytest.raises(ValueError, match="components"):
        divergence(v, jnp.array([1.0, 2.0, 3.0]))


def test_prefetch_gives_the_same_residual_and_works_under_vmap_and_grad():
    def residual(u, x):
        return partial(u, x, 1) + u(x) * partial(u, x, 0) - 0.1 * partial(u, x, 0, 0) + partial(u, x, 0, 1)

    pts = jnp.asarray(np.random.default_rng(0).normal(size=(7, 2)))
    direct = jax.vmap(lambda x: residual(f, x))(pts)
    shared = jax.vmap(lambda x: prefetch(residual, f, x))(pts)
    np.testing.assert_allclose(shared, direct, rtol=1e-13)

    def g(c, fused):
        u = lambda x: c * f(x)  # noqa: E731
        r = prefetch(residual, u, X) if fused else residual(u, X)
        return r

    np.testing.assert_allclose(jax.grad(g)(2.0, True), jax.grad(g)(2.0, False), rtol=1e-13)


def test_axis_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        partial(f, X, 2)
