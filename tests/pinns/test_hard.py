"""PI-HC constraint layer: implicit gradients (vs unrolled and finite differences), hard satisfaction, errors."""

import dataclasses

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


# jitted: eager dispatch of the solver's loop costs seconds per call
_prepared = eqx.filter_jit(lambda f: f.prepared())


def _loss_fn(field):
    xe = jnp.linspace(0, 1, 17)[:, None]
    params, static = eqx.partition(field, eqx.is_inexact_array)

    def loss(p, adjoint=None):
        g = eqx.combine(p, static)
        w, _ = g.coefficients(adjoint)
        return jnp.sum(jax.vmap(lambda x: g.basis(x) @ w[0])(xe) ** 2)

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
    # jitted: eager dispatch of the solver's loop costs seconds per call
    g_implicit = ravel_pytree(jax.jit(jax.grad(loss))(params))[0]
    g_unrolled = ravel_pytree(jax.jit(jax.grad(lambda p: loss(p, optx.RecursiveCheckpointAdjoint())))(params))[0]
    loss = jax.jit(loss)
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
    assert w.shape == (1, 40) and bool(jnp.all(stats.converged))
    pts = {k: v[0] if k == "pde" else v for k, v in field._points().items()}
    r = constraint_residuals(pb, tabulate(pb, field.basis, pts), pts, w[0])
    assert r.shape == (14,) and float(jnp.max(jnp.abs(r))) < 1e-5  # ridge 1e-6 with |w| ~ 0.7: ~3e-7
    other = pb.sample(jax.random.PRNGKey(9), n_points={"pde": 64})
    assert float(pb.term_loss(field.prepared(), "pde", other["pde"])) > 1e-3


def test_periodic_axes_are_built_into_the_basis_not_constrained():
    # convection is periodic in x: the basis embeds x as (cos, sin), so the periodicity term leaves the
    # constraints and every prediction is periodic to rounding, whatever the coefficients
    pb = P.get("convection", beta=1.0)
    field = make_hard_constraint_field(pb, n_basis=8, width=16, depth=2, key=jax.random.PRNGKey(0))
    assert field.basis.periodic == (0,) and "periodic" not in field.problem.terms and "periodic" in pb.terms
    u = field.prepared()
    t = jnp.linspace(0.0, 1.0, 7)
    left = jax.vmap(lambda s: u(jnp.stack([0.0, s])))(t)
    right = jax.vmap(lambda s: u(jnp.stack([2 * jnp.pi, s])))(t)
    np.testing.assert_allclose(left, right, rtol=1e-12, atol=1e-12)
    assert float(jnp.std(left)) > 0  # not trivially constant


def test_non_converging_solve_is_reported():
    from pdejax.pinns import TrainConfig, TrainingDiverged, train

    pb = _toy(nonlinear=True)
    field = make_hard_constraint_field(pb, n_basis=6, width=8, depth=2, max_steps=2, key=jax.random.PRNGKey(1))
    with pytest.raises(ConstraintNotConverged, match=r"2 Levenberg-Marquardt iterations .* residual \(rms\) \d"):
        field.solve()
    # 'keep' (default): training goes on with the last (finite) iterate and counts the unconverged solves
    assert bool(jnp.all(jnp.isfinite(_prepared(field).coefficients)))
    cfg = TrainConfig(steps=4, chunk=2, eval_every=0)
    res = train(pb, field, cfg, progress=False, reference=False)
    assert res.unconverged_solves == 4
    # 'nan': the coefficients become NaN, the trainer stops and reports the solve (never silent garbage)
    strict = dataclasses.replace(field, on_failure="nan")
    assert bool(jnp.all(jnp.isnan(_prepared(strict).coefficients)))
    with pytest.raises(TrainingDiverged, match=r"constraint solve: 2 Levenberg-Marquardt iterations.*NOT converged"):
        train(pb, strict, cfg, progress=False, reference=False)


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


def test_expert_split_cells_points_and_prediction():
    from pdejax.pinns import expert_split

    pb = P.get("diffusion_sorption")
    split = expert_split(pb, 4)
    assert split.counts == (4, 1) and split.size == 4
    assert expert_split(P.get("heat2d"), 4).counts == (2, 2, 1)
    assert expert_split(pb, (2, 3)).counts == (2, 3)
    with pytest.raises(ValueError, match="experts needs 2 piece counts"):
        expert_split(pb, (2, 2, 2))
    x = jnp.array([[0.0, 0.0], [0.24, 10.0], [0.25, 10.0], [0.6, 499.0], [1.0, 500.0]])
    assert jax.vmap(split.index)(x).tolist() == [0, 0, 1, 2, 3]
    field = make_hard_constraint_field(
        pb, n_basis=8, width=16, depth=2, experts=4, n_constraint={"pde": 64}, key=jax.random.PRNGKey(0)
    )
    pts = field._points()
    # interior points divided by cell; initial and boundary points shared by every expert; with
    # exact_initial the initial condition is built into the field instead (u = u0 + t/T b . w)
    assert pts["pde"].shape == (4, 16, 2) and pts["ic"].shape == (8, 2) and pts["inflow"].shape == (4, 2)
    exact = make_hard_constraint_field(
        pb, n_basis=8, experts=4, n_constraint={"pde": 64}, exact_initial=True, key=jax.random.PRNGKey(0)
    )
    assert "ic" not in exact._points() and exact.basis.initial is not None and field.basis.initial is None
    lin = _prepared(exact)
    for k in range(4):
        y = jnp.array([split.cell(k)[0][0] + 0.1, 0.0])
        assert float(lin(y)) == 0.0  # u0 = 0 exactly at t = 0, whatever w
    for k in range(4):
        lo, hi = split.cell(k)
        assert np.all((pts["pde"][k] >= lo) & (pts["pde"][k] <= hi))
    # the prediction uses expert k's coefficients in cell k
    lin = _prepared(field)
    w = lin.coefficients
    assert w.shape == (4, 8) and bool(jnp.all(jnp.isfinite(w)))
    for k in range(4):
        y = jnp.array([split.cell(k)[0][0] + 0.1, 250.0])
        np.testing.assert_allclose(lin(y), field.basis(y) @ w[k], rtol=1e-12)


def test_expert_solves_equal_separate_solves_and_differentiate_implicitly():
    # u_xx + u^3 = sin 3x with two experts on [0, 0.5] and [0.5, 1] (10 interior points each, the 4 boundary
    # points shared): the batched solves equal separate solves on each expert's points, and the implicit
    # gradient through them equals the unrolled one
    from pdejax.pinns import solve_coefficients

    pb = _toy(nonlinear=True)
    # the float64 defaults: at 1e-12 the stopping test sits at the rounding floor of this ill-conditioned
    # least-squares problem, so whether an expert "converges" depends on the last bits of its tables
    tol = dict(rtol=1e-8, atol=1e-10)
    field = make_hard_constraint_field(
        pb, n_basis=6, width=8, depth=2, experts=2, n_constraint={"pde": 20}, **tol, key=jax.random.PRNGKey(3)
    )
    w, stats = eqx.filter_jit(lambda f: f.coefficients())(field)  # jitted: eager solves cost seconds each
    assert w.shape == (2, 6) and bool(jnp.all(stats.converged))
    solve_one = eqx.filter_jit(lambda basis, pts: solve_coefficients(pb, basis, pts, **tol))  # one compile
    for k in range(2):
        pts = {n: v[k] if v.ndim == 3 else v for n, v in field._points().items()}
        wk, _ = solve_one(field.basis, pts)
        np.testing.assert_allclose(w[k], wk, rtol=1e-6, atol=1e-9)  # both stop within the solver tolerance
    assert float(jnp.max(jnp.abs(w[0] - w[1]))) > 1e-3  # two different fits, not one
    xe = jnp.linspace(0, 1, 13)[:, None]
    params, static = eqx.partition(field, eqx.is_inexact_array)

    def loss(p, adjoint=None):
        g = eqx.combine(p, static)
        w, _ = g.coefficients(adjoint)
        lin = eqx.tree_at(lambda f: f.coefficients, g.prepared(), w)
        return jnp.sum(jax.vmap(lin)(xe) ** 2)

    g_imp = ravel_pytree(jax.jit(jax.grad(loss))(params))[0]
    g_unr = ravel_pytree(jax.jit(jax.grad(lambda p: loss(p, optx.RecursiveCheckpointAdjoint())))(params))[0]
    np.testing.assert_allclose(g_imp, g_unr, rtol=0, atol=1e-6 * float(jnp.max(jnp.abs(g_imp))))


_SHARDED = """
import equinox as eqx, jax, numpy as np
jax.config.update("jax_enable_x64", True)
import pdejax.problems as P
from pdejax.pinns import TrainConfig, Trainer, make_hard_constraint_field
pb = P.get("diffusion_sorption")
field = make_hard_constraint_field(pb, n_basis=8, width=16, depth=2, experts=4, n_constraint={"pde": 64},
                                   max_steps=50, key=jax.random.PRNGKey(0))
w, _ = eqx.filter_jit(lambda f: f.coefficients())(field)
trainer = Trainer(pb, field, TrainConfig(steps=3, chunk=3, n_points={"pde": 64, "ic": 16, "inflow": 8, "outflow": 8}))
state, (rows, *_) = trainer.step(trainer.init_state(), 3)
np.savez(OUT, w=np.asarray(w), rows=np.asarray(rows), devices=len(w.sharding.device_set), n=jax.device_count())
"""


@pytest.mark.long
def test_experts_shard_one_per_device_and_match_the_single_device_run(on_host_devices):
    runs = on_host_devices(_SHARDED)
    assert int(runs[1]["n"]) == 1 and int(runs[4]["n"]) == 4
    assert int(runs[1]["devices"]) == 1 and int(runs[4]["devices"]) == 4  # one expert per device
    # the same solves and training steps up to the solver's tolerance: the sharded program orders its
    # reductions differently, and Levenberg-Marquardt stops anywhere within rtol of the optimum (measured 2e-7)
    np.testing.assert_allclose(runs[4]["w"], runs[1]["w"], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(runs[4]["rows"], runs[1]["rows"], rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("name", ["diffusion_sorption", "allen_cahn"])
def test_stacked_basis_tables_equal_nested_jvps(name, monkeypatch):
    # tabulate() takes the basis and its derivatives from one stacked pass; the tables must be those of
    # nested JVPs (also with the initial condition built into the basis, as on periodic allen_cahn)
    import pdejax.pinns._hard as H

    pb = P.get(name)
    field = make_hard_constraint_field(pb, n_basis=5, width=8, depth=2, key=jax.random.PRNGKey(2))
    pts = {k: jnp.asarray(v[:16]) for k, v in pb.sample(jax.random.PRNGKey(1)).items()}
    fast = tabulate(pb, field.basis, pts)
    monkeypatch.setattr(H, "_stacked_table", lambda *a: None)
    slow = tabulate(pb, field.basis, pts)
    assert fast.keys() == slow.keys()
    for term in fast:
        assert fast[term].keys() == slow[term].keys()
        for k in fast[term]:
            scale = 1 + float(jnp.max(jnp.abs(slow[term][k])))
            np.testing.assert_allclose(fast[term][k], slow[term][k], rtol=1e-12, atol=1e-13 * scale)
