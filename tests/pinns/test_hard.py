"""PI-HC constraint layer: implicit gradients (vs unrolled and finite differences), hard satisfaction, errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest
from jax.flatten_util import ravel_pytree

import pdejax.problems as P
from pdejax.pinns import ConstraintNotConverged, constraint_residuals, make_hard_constraint_field, tabulate
from pdejax.problems import Interval, Problem, Term, dirichlet_term, partial

jax.config.update("jax_enable_x64", True)


def _toy(nonlinear: bool) -> Problem:
    def pde(u, x):
        v = u(x)
        return partial(u, x, 0, 0) + (v**3 if nonlinear else -v) - jnp.sin(3 * x[0])

    return Problem(
        name="toy",
        domain=Interval(0.0, 1.0),
        terms={"pde": Term(pde, "interior", 320), "bc": dirichlet_term(lambda x: x[0], 64)},
    )


def _loss_fn(field):
    xe = jnp.linspace(0, 1, 17)[:, None]
    params, static = eqx.partition(field, eqx.is_inexact_array)

    def loss(p, adjoint=None):
        g = eqx.combine(p, static)
        w, _ = g.coefficients(adjoint)
        return jnp.sum(jax.vmap(lambda x: g.basis(x) @ w)(xe) ** 2)

    return loss, params


def test_constraint_layer_gradient_is_implicit_and_matches_unrolled_and_finite_differences():
    # u_xx + u^3 = sin 3x with u = x on the boundary: a nonlinear least-squares constraint solve
    # (10 residual + 4 boundary points, 6 basis functions), differentiated through a loss on other points
    field = make_hard_constraint_field(
        _toy(nonlinear=True),
        n_basis=6,
        width=8,
        depth=2,
        rtol=1e-12,
        atol=1e-14,
        max_steps=200,
        key=jax.random.PRNGKey(2),
    )
    loss, params = _loss_fn(field)
    g_implicit = ravel_pytree(jax.grad(loss)(params))[0]
    g_unrolled = ravel_pytree(jax.grad(lambda p: loss(p, optx.RecursiveCheckpointAdjoint()))(params))[0]
    # both differentiate the same converged solve; they differ by the solver tolerance only
    np.testing.assert_allclose(g_implicit, g_unrolled, rtol=0, atol=1e-6 * float(jnp.max(jnp.abs(g_implicit))))
    flat, unravel = ravel_pytree(params)
    # the random Fourier frequencies are fixed (stop_gradient), so finite differences must not move them
    frozen = eqx.tree_at(
        lambda p: p.basis.net.frequencies, jax.tree_util.tree_map(jnp.ones_like, params), replace_fn=jnp.zeros_like
    )
    mask = ravel_pytree(frozen)[0]
    for k in range(2):
        d = mask * jax.random.normal(jax.random.PRNGKey(10 + k), flat.shape)
        d = d / jnp.linalg.norm(d)
        # central differences with h = 1e-5: O(h^2) truncation; the solves at the two points stop within
        # their tolerance, which adds ~tol / h to the quotient
        h = 1e-5
        fd = (loss(unravel(flat + h * d)) - loss(unravel(flat - h * d))) / (2 * h)
        dd = g_implicit @ d
        assert abs(float(fd - dd)) <= 1e-4 * abs(float(dd)) + 1e-5 * float(jnp.linalg.norm(g_implicit)), (fd, dd)


def test_constraints_hold_exactly_when_the_basis_is_rich_enough():
    # more basis functions than (independent) constraint values and a rich random-feature basis: the
    # linear constraints are met to solver precision, while the residual elsewhere is not (not constrained)
    pb = _toy(nonlinear=False)
    field = make_hard_constraint_field(pb, n_basis=40, width=32, depth=2, key=jax.random.PRNGKey(2))
    w, stats = field.coefficients()
    assert bool(stats.converged)
    pts = field._points()
    r = constraint_residuals(pb, tabulate(pb, field.basis, pts), pts, w)
    assert r.shape == (14,) and float(jnp.max(jnp.abs(r))) < 1e-5  # ridge 1e-6 with |w| ~ 0.7: ~3e-7
    other = pb.sample(jax.random.PRNGKey(9), n_points={"pde": 64})
    assert float(pb.term_loss(field.prepared(), "pde", other["pde"])) > 1e-3


def test_non_converging_solve_is_reported():
    field = make_hard_constraint_field(
        _toy(nonlinear=True), n_basis=6, width=8, depth=2, max_steps=2, key=jax.random.PRNGKey(1)
    )
    with pytest.raises(ConstraintNotConverged, match=r"2 Levenberg-Marquardt iterations .* residual \(rms\) \d"):
        field.solve()
    # inside training the coefficients become NaN, which the trainer stops on (never silent garbage)
    assert bool(jnp.all(jnp.isnan(field.prepared().coefficients)))


def test_diffusion_sorption_reference_converges_under_refinement():
    from pdejax.problems._benchmarks import _DiffusionSorptionReference

    pb = P.get("diffusion_sorption")
    assert pb.params == {"D": 5e-4, "T": 500.0} and set(pb.terms) == {"pde", "ic", "inflow", "outflow"}
    pts = P.Interval(0.0, 1.0, time=(0.0, 500.0)).grid((33, 3))
    coarse, mid, fine = (_DiffusionSorptionReference(5e-4, n)(pts) for n in (33, 65, 129))
    u = fine.reshape(33, 3)
    assert np.all(u[0, :] == 1.0) and np.all(u[1:, 0] == 0.0)  # inflow and initial state
    assert np.all((u >= -1e-9) & (u <= 1 + 1e-9))
    # second-order finite differences: halving h divides the change by about four
    e1, e2 = np.max(np.abs(coarse - mid)), np.max(np.abs(mid - fine))
    assert e2 < 0.3 * e1 and e2 < 1e-3, (e1, e2)  # measured: 2.6e-4 then 6.6e-5 (ratio 4.0)


def test_hard_constraint_field_trains_with_the_pinn_trainer():
    # the trainer solves the constraints once per step (Field.prepared) and differentiates implicitly
    from pdejax.pinns import TrainConfig, predict, train

    pb = _toy(nonlinear=False)
    field = make_hard_constraint_field(pb, n_basis=12, width=16, depth=2, key=jax.random.PRNGKey(4))
    res = train(pb, field, TrainConfig(steps=60, chunk=30, eval_every=0), progress=False, reference=False)
    hist = res.loss_history.sum(axis=1)
    assert np.all(np.isfinite(hist)) and hist[-1] < 0.5 * hist[0]
    x = jnp.linspace(0, 1, 5)[:, None]
    np.testing.assert_allclose(predict(res.field, x), np.asarray(jax.vmap(res.field.prepared())(x)), atol=1e-12)
