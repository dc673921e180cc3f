"""PI-HC neural operators on a grid: residual rows, constraint solves (experts, subsets), implicit gradients."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest

from pdejax.operators import FNO
from pdejax.operators._pihc import (
    GridResidual,
    HardConstrainedOperator,
    InitialValueField,
    diffusion_sorption_grid,
    diffusion_sorption_pairs,
    diffusion_sorption_residual,
    grid_physics,
    navier_stokes_grid,
    navier_stokes_pairs,
    navier_stokes_residual,
    solve_summary,
)
from pdejax.solvers import retardation

D, T = 5e-4, 500.0


def test_diffusion_sorption_rows_are_exact_on_quadratics():
    # centred, one-sided second-order and backward second-order differences are exact on quadratics, so
    # every row equals its analytic value to rounding
    nx, nt = 9, 6
    res = diffusion_sorption_residual(nx, nt, D, T)
    g = diffusion_sorption_grid(nx, nt)
    x, tau = g[..., 0], g[..., 1]
    u = 0.3 + 0.2 * x**2 + 0.1 * tau**2 + 0.05 * x * tau
    u0 = np.broadcast_to((0.3 + 0.2 * x[:, 0] ** 2)[:, None] + 0.01, (nx, nt))[None]
    r = np.asarray(res(jnp.asarray(u), jnp.asarray(u0)))
    i, j = res.where[:, 0], res.where[:, 1]
    xv, tv, uv = x[i, j], tau[i, j], u[i, j]
    exact = {
        "pde": (0.2 * tv + 0.05 * xv) - T * D / np.asarray(retardation(jnp.asarray(uv))) * 0.4,
        "ic": uv - (0.3 + 0.2 * xv**2 + 0.01),
        "inflow": uv - 1.0,
        "outflow": uv + D * (0.4 * xv + 0.05 * tv),
    }
    for name, s in res.terms.items():
        np.testing.assert_allclose(r[s] * np.sqrt(s.stop - s.start), exact[name][s], rtol=1e-10, atol=1e-12)
    assert sorted(res.terms) == ["ic", "inflow", "outflow", "pde"] and res.rows == (nx - 2) * (nt - 1) + (
        nx - 1
    ) + 2 * (nt - 1)


def test_diffusion_sorption_pairs_meet_their_rows_up_to_discretisation():
    a, u = jax.jit(lambda k: diffusion_sorption_pairs(k, 2, 16, 11))(jax.random.PRNGKey(0))
    assert a.shape == u.shape == (2, 1, 16, 11)
    u0 = np.asarray(a[:, 0, :, 0])
    assert np.all(u0[:, 1:] >= 0) and np.all(u0[:, 1:] <= 0.2 + 1e-12) and np.all(u0[:, 0] == 1.0)
    np.testing.assert_allclose(u[:, 0, :, 0], u0)  # the trajectory starts at u0
    res = diffusion_sorption_residual(16, 11, D, T)
    r = np.asarray(jax.vmap(res)(u[:, 0], a))
    np.testing.assert_allclose(r[:, res.terms["inflow"]], 0.0, atol=1e-12)
    # the reference's own Robin closure (ghost node) differs from the rows' one-sided u_x by O(h^2)
    assert np.abs(r[:, res.terms["outflow"]]).max() < 1e-4
    # away from the start-up corner (first two time rows) the PDE rows are ~1% of those of u0 held still
    pde = r[:, res.terms["pde"]].reshape(2, 14, 10)[:, :, 2:]
    still = np.asarray(jax.vmap(res)(a[:, 0], a))[:, res.terms["pde"]].reshape(2, 14, 10)[:, :, 2:]
    assert np.sqrt(np.mean(pde**2)) < 0.02 * np.sqrt(np.mean(still**2))


def _fit_rows(nx=6, nt=4):
    """Rows ``u - target`` at every node (a linear least-squares fit), for exact comparisons."""
    where = np.stack(np.meshgrid(np.arange(nx), np.arange(nt), indexing="ij"), -1).reshape(-1, 2)
    return GridResidual(
        linear=lambda u: u.reshape(1, -1),
        data=lambda a: a[0].reshape(1, -1),
        pointwise=lambda f, d, rows: f[0] - d[0],
        where=where,
        terms={"pde": slice(0, nx * nt)},
        grid=(nx, nt),
    )


class _Fixed(eqx.Module):
    """A 'backbone' that returns fixed basis fields (so the solve can be checked exactly)."""

    b: jax.Array

    def __call__(self, a, x):
        return self.b + 0.0 * a[0]


def test_experts_solve_their_own_blocks_exactly():
    nx, nt, n = 6, 4, 3
    res = _fit_rows(nx, nt)
    key = jax.random.PRNGKey(1)
    b = jax.random.normal(key, (n, nx, nt))
    target = jax.random.normal(jax.random.fold_in(key, 1), (1, nx, nt))
    x = jnp.zeros((nx, nt, 2))
    grid_blocks = [np.s_[2 * i : 2 * i + 2, 2 * j : 2 * j + 2] for i in range(3) for j in range(2)]
    for experts, blocks in (((1, 1), [np.s_[:, :]]), ((2, 1), [np.s_[:3, :], np.s_[3:, :]]), ((3, 2), grid_blocks)):
        # stopping tolerances 1e3 above rounding: at rtol 1e-11 the global solve, exact after a few steps,
        # kept taking rounding-sized steps to the 100-step cap on some CPUs / XLA optimisation levels
        op = HardConstrainedOperator(_Fixed(b), res, experts, rtol=1e-9, atol=1e-11, ridge=0.0)
        u, stats = eqx.filter_jit(lambda o: o.solve(target[None], x))(op)
        assert stats.converged.shape == (1, len(blocks)) and bool(jnp.all(stats.converged))
        for blk in blocks:
            A = np.asarray(b)[(slice(None),) + blk].reshape(n, -1).T
            w, *_ = np.linalg.lstsq(A, np.asarray(target[0])[blk].ravel(), rcond=None)
            np.testing.assert_allclose(np.asarray(u[0, 0])[blk].ravel(), A @ w, atol=1e-10)


def test_constraint_subset_keeps_boundary_rows_and_divides_pde_rows():
    res = diffusion_sorption_residual(16, 6, D, T)
    net = _Fixed(jnp.zeros((2, 16, 6)))
    pde = res.terms["pde"]
    boundary = set(range(res.rows)) - set(range(pde.start, pde.stop))
    for shared in (False, True):
        op = HardConstrainedOperator(net, res, (4, 1), n_constraint=20, seed=3, shared=shared)
        rows = op._rows.data
        for k in range(4):
            r = rows[k][rows[k] >= 0]
            assert np.sum((r >= pde.start) & (r < pde.stop)) == 5 and len(set(r)) == len(r)
            owned = set(np.flatnonzero(res.where[:, 0] * 4 // 16 == k))
            assert set(r) - boundary <= owned  # its PDE rows lie in its block
            assert set(r) & boundary == (boundary if shared else boundary & owned)
    with pytest.raises(ValueError, match="experts"):
        HardConstrainedOperator(net, res, (4,))
    with pytest.raises(ValueError, match="no PDE row"):
        HardConstrainedOperator(net, res, (4, 1), n_constraint=3)


def _small(nx=8, nt=5, n=4, key=0):
    res = diffusion_sorption_residual(nx, nt, D, T)
    net = FNO(1, n, (3, 3), 4, 1, proj=8, key=jax.random.PRNGKey(key))
    a, _ = diffusion_sorption_pairs(jax.random.PRNGKey(5), 1, nx, nt)
    x = jnp.asarray(diffusion_sorption_grid(nx, nt))
    return res, net, a, x


@pytest.mark.long
@pytest.mark.parametrize(
    "schwarz,passes,order", [("none", 1, "additive"), ("lower", 2, "additive"), ("lower", 1, "multiplicative")]
)
def test_constraint_layer_gradient_is_implicit_and_matches_unrolled_and_finite_differences(schwarz, passes, order):
    # two experts (one expert is the same code with one block); the unrolled gradient differentiates
    # through every Levenberg-Marquardt iteration, the implicit one solves one linear system at the solution.
    # With a Schwarz pass the second solves' edge values depend on the first solves' coefficients: both
    # chains of implicit derivatives must be there (with two passes, three chains; multiplicative: a chain
    # through each expert solved before)
    res, net, a, x = _small()
    # the warm-started second solve creeps at rounding level under rtol 1e-12 (100 steps, same residual)
    tol = dict(rtol=1e-12, atol=1e-14, overlap=0.0) if schwarz == "none" else dict(rtol=1e-10, atol=1e-12, overlap=1.0)
    op = HardConstrainedOperator(net, res, (2, 1), max_steps=100, ridge=1e-6, schwarz=schwarz, passes=passes,
                                 order=order, **tol)  # fmt: skip
    physics = grid_physics(res)
    params, static = eqx.partition(op, eqx.is_inexact_array)

    def loss(p, adjoint=None):
        m = eqx.combine(p, static)
        b = m.basis(a, x)[0]
        w, stats = m.coefficients(b, a[0], adjoint)
        return physics(a[0], m.combine(b, w)[None]), stats

    g_imp, stats = jax.jit(jax.grad(loss, has_aux=True))(params)
    # the implicit gradient is exact only at a converged solve, and the unrolled one then agrees with it:
    # a solve stopped at max_steps (as one platform's rounding can cause) fails here, not in the comparison
    assert bool(jnp.all(stats.converged)), (stats.steps, stats.residual)
    flat_i, unravel = jax.flatten_util.ravel_pytree(g_imp)
    if schwarz == "none":
        # (not with a Schwarz pass: its second solves start from the first ones' coefficients, held fixed,
        # and stop after a few iterations, so unrolling them has not converged to the derivative: measured
        # 14.1 against finite differences' 1.678 along the direction below, where the implicit one gives 1.678)
        g_unr, _ = jax.jit(jax.grad(lambda p: loss(p, optx.RecursiveCheckpointAdjoint()), has_aux=True))(params)
        flat_u, _ = jax.flatten_util.ravel_pytree(g_unr)
        np.testing.assert_allclose(flat_i, flat_u, rtol=1e-6, atol=1e-9 * np.abs(flat_u).max())
    # central finite differences along a random direction
    flat_p, unravel_p = jax.flatten_util.ravel_pytree(params)
    v = jax.random.normal(jax.random.PRNGKey(9), flat_p.shape)
    f = jax.jit(lambda s: loss(unravel_p(flat_p + s * v))[0])
    eps = 1e-5
    fd = (f(eps) - f(-eps)) / (2 * eps)
    np.testing.assert_allclose(float(flat_i @ v), float(fd), rtol=1e-5)


def test_gauss_newton_first_step_reaches_the_same_coefficients_in_fewer_iterations():
    # the layer's default first damping (1e-10) against optimistix's (1): the same minimiser, since only the
    # path differs, in fewer iterations (the basis rows here span a few decades, as a learned basis's do)
    res, net, a, x = _small(nx=16, nt=9, n=6)
    ops = {d: HardConstrainedOperator(net, res, (2, 1), rtol=1e-10, atol=1e-12, max_steps=200, damping=d)
           for d in (1.0, 1e-10)}  # fmt: skip
    out = {d: eqx.filter_jit(lambda o: o.solve(a, x))(o) for d, o in ops.items()}
    for d, (_, stats) in out.items():
        assert bool(jnp.all(stats.converged)), (d, stats)
    np.testing.assert_allclose(out[1e-10][0], out[1.0][0], rtol=1e-7, atol=1e-9)
    assert int(out[1e-10][1].steps.sum()) < int(out[1.0][1].steps.sum()), (out[1e-10][1].steps, out[1.0][1].steps)
    with pytest.raises(ValueError, match="damping > 0"):
        HardConstrainedOperator(net, res, (2, 1), damping=0.0)


def test_unconverged_solves_are_reported_in_the_stats():
    res, net, a, x = _small()
    op = HardConstrainedOperator(net, res, (2, 1), rtol=1e-12, atol=1e-14, max_steps=1)
    _, stats = eqx.filter_jit(lambda o: o.solve(a, x))(op)
    assert stats.steps.shape == (1, 2) and not bool(jnp.any(stats.converged))
    assert np.all(np.asarray(stats.steps) == 1) and np.all(np.asarray(stats.residual) > 0)
    # the summary the CLI writes: the same fields as solve, and the failures counted
    u, _ = eqx.filter_jit(lambda o: o.solve(a, x))(op)
    fields, summary = solve_summary(op, np.asarray(a), np.asarray(x))
    np.testing.assert_array_equal(fields, np.asarray(u))
    assert summary["solves"] == 2 and summary["converged_fraction"] == 0 and summary["iterations_max"] == 1


def test_overlapping_experts_blend_their_fits_with_a_partition_of_unity():
    from pdejax.operators._pihc import _expert_weights

    pts = np.stack(np.meshgrid(np.arange(12), np.arange(5), indexing="ij"), -1).reshape(-1, 2)
    for counts, ov in (((3, 1), 0.0), ((3, 1), 1.5), ((2, 2), 1.0)):
        wts = _expert_weights(pts, (12, 5), counts, ov)
        assert wts.shape == (60, np.prod(counts)) and np.all(wts >= 0)
        np.testing.assert_allclose(wts.sum(1), 1.0, atol=1e-15)
        if ov == 0:  # a hard partition: each point belongs to the block holding its index
            assert np.all(wts.max(1) == 1.0) and np.all(np.argmax(wts, 1) == pts[:, 0] // 4)
    nx, nt, n = 6, 4, 3
    res = _fit_rows(nx, nt)
    key = jax.random.PRNGKey(4)
    b = jax.random.normal(key, (n, nx, nt))
    target = jax.random.normal(jax.random.fold_in(key, 1), (1, nx, nt))
    # interface at x index 2.5, ramp over [1.5, 3.5]: expert 0 fits x <= 3, expert 1 fits x >= 2
    fits = []
    for blk in (np.s_[:4], np.s_[2:]):
        A = np.asarray(b)[:, blk].reshape(n, -1).T
        w, *_ = np.linalg.lstsq(A, np.asarray(target[0])[blk].ravel(), rcond=None)
        fits.append(np.tensordot(w, np.asarray(b), 1))
    s = np.clip(0.5 + (np.arange(nx) - 2.5) / 2, 0, 1)[:, None]
    for ramp, s1 in (("linear", s), ("smooth", s * s * (3 - 2 * s)), ("smoother", s**3 * (10 - 15 * s + 6 * s * s))):
        op = HardConstrainedOperator(_Fixed(b), res, (2, 1), rtol=1e-12, atol=1e-14, ridge=0.0, overlap=1.0, ramp=ramp)
        u, _ = eqx.filter_jit(lambda o: o.solve(target[None], jnp.zeros((nx, nt, 2))))(op)
        np.testing.assert_allclose(np.asarray(u[0, 0]), (1 - s1) * fits[0] + s1 * fits[1], atol=1e-10)
    with pytest.raises(ValueError, match="ramp must be one of linear, smooth, smoother"):
        HardConstrainedOperator(_Fixed(b), res, (2, 1), ramp="cosine")


def test_schwarz_edges_lie_where_each_experts_support_meets_its_neighbours():
    from pdejax.operators._pihc import _expert_weights, _support_edges

    grid = (12, 3)
    pts = np.stack(np.meshgrid(np.arange(12), np.arange(3), indexing="ij"), -1).reshape(-1, 2)

    def columns(edges):  # the x indices of each expert's edge points (every time of such a column is one)
        assert all(np.sum(e >= 0) % 3 == 0 for e in edges)
        return [sorted({int(i) for i in np.unravel_index(e[e >= 0], grid)[0]}) for e in edges]

    # blocks [0, 4), [4, 8), [8, 12) widened by 2: supports [0, 5], [2, 9], [6, 11]
    own = _expert_weights(pts, grid, (3, 1), 2.0).reshape(grid + (3,))
    assert _support_edges(own, (3, 1), (), "none").shape == (3, 0)
    assert columns(_support_edges(own, (3, 1), (), "lower")) == [[], [2], [6]]
    assert columns(_support_edges(own, (3, 1), (), "upper")) == [[5], [9], []]
    assert columns(_support_edges(own, (3, 1), (), "both")) == [[5], [2, 9], [6]]
    # periodic in x: the first block's support wraps round to [10, 11] and [0, 5]
    own = _expert_weights(pts, grid, (3, 1), 2.0, (0,)).reshape(grid + (3,))
    assert columns(_support_edges(own, (3, 1), (0,), "lower")) == [[10], [2], [6]]


def test_schwarz_pass_meets_the_neighbours_first_fields_at_the_support_edge():
    nx, nt, n = 12, 3, 3
    res = _fit_rows(nx, nt)
    key = jax.random.PRNGKey(6)
    b = jax.random.normal(key, (n, nx, nt))
    target = jax.random.normal(jax.random.fold_in(key, 1), (1, nx, nt))
    kw = dict(rtol=1e-12, atol=1e-14, ridge=0.0, overlap=2.0)
    first, _ = HardConstrainedOperator(_Fixed(b), res, (3, 1), **kw).coefficients(b, target)
    op = HardConstrainedOperator(_Fixed(b), res, (3, 1), schwarz="lower", **kw)
    w, stats = op.coefficients(b, target)
    assert bool(jnp.all(stats.converged))
    B = np.asarray(b).reshape(n, -1).T
    own = np.asarray(op._owner.data).reshape(-1, 3)

    def schwarz_pass(prev, multiplicative=False):
        # the reference by numpy: expert k fits the target on its support and, at its lower edge (x = 2 for
        # expert 1, x = 6 for expert 2), the other experts' blend of their previous fits, as one more
        # mean-square term; multiplicative: the fits of the experts before k in this pass instead
        fields, out = B @ prev.T, []
        for k, edge_x in ((0, None), (1, 2), (2, 6)):
            if multiplicative and out:
                fields = B @ np.concatenate([np.stack(out), prev[len(out) :]]).T
            rows, rhs = [B[own[:, k] > 0]], [np.asarray(target[0]).ravel()[own[:, k] > 0]]
            if edge_x is not None:
                e = np.ravel_multi_index((np.full(nt, edge_x), np.arange(nt)), (nx, nt))
                g = ((fields * own).sum(1)[e] - fields[e, k] * own[e, k]) / (1 - own[e, k])
                rows.append(B[e] / np.sqrt(nt))
                rhs.append(g / np.sqrt(nt))
            out.append(np.linalg.lstsq(np.concatenate(rows), np.concatenate(rhs), rcond=None)[0])
        return np.stack(out)

    once = schwarz_pass(np.asarray(first))
    np.testing.assert_allclose(np.asarray(w), once, rtol=1e-9, atol=1e-12)
    # a second pass starts from the first pass's fields: expert 2 now sees expert 1's corrected field
    w2, stats2 = HardConstrainedOperator(_Fixed(b), res, (3, 1), schwarz="lower", passes=2, **kw).coefficients(
        b, target
    )
    assert bool(jnp.all(stats2.converged)) and bool(jnp.all(stats2.steps > stats.steps))
    twice = schwarz_pass(once)
    np.testing.assert_allclose(np.asarray(w2), twice, rtol=1e-9, atol=1e-12)
    assert not np.allclose(twice[2], once[2])
    # multiplicative: expert 2 meets expert 1's field of this pass, so one pass carries what took two
    w_m, stats_m = HardConstrainedOperator(_Fixed(b), res, (3, 1), schwarz="lower", order="multiplicative",
                                           **kw).coefficients(b, target)  # fmt: skip
    assert bool(jnp.all(stats_m.converged))
    sweep = schwarz_pass(np.asarray(first), multiplicative=True)
    np.testing.assert_allclose(np.asarray(w_m), sweep, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sweep[:2], once[:2], rtol=1e-9, atol=1e-12)  # experts 0, 1 see the same fields
    np.testing.assert_allclose(sweep[2], twice[2], rtol=1e-9, atol=1e-12)  # expert 2: as after two passes
    assert not np.allclose(np.asarray(w[1]), np.asarray(first[1]))  # the edge rows did move expert 1
    np.testing.assert_allclose(np.asarray(w[0]), np.asarray(first[0]), rtol=1e-9)  # expert 0 has no lower edge
    with pytest.raises(ValueError, match="schwarz must be one of none, lower, upper, both"):
        HardConstrainedOperator(_Fixed(b), res, (3, 1), overlap=2.0, schwarz="left")
    with pytest.raises(ValueError, match="needs several experts and overlap > 0"):
        HardConstrainedOperator(_Fixed(b), res, (3, 1), schwarz="lower")
    with pytest.raises(ValueError, match="order must be one of additive, multiplicative, got 'random'"):
        HardConstrainedOperator(_Fixed(b), res, (3, 1), overlap=2.0, schwarz="lower", order="random")
    with pytest.raises(ValueError, match="passes must be >= 1, got 0"):
        HardConstrainedOperator(_Fixed(b), res, (3, 1), overlap=2.0, schwarz="lower", passes=0)


@pytest.mark.long
def test_solves_one_after_another_give_the_batched_fields_and_gradients():
    # loop="map" runs each sample's and expert's solve as its own loop (each stops at its own count),
    # loop="vmap" as one batched loop: the same minimisers, so the same fields and implicit gradients
    res = diffusion_sorption_residual(8, 5, D, T)
    net = FNO(1, 4, (3, 3), 4, 1, proj=8, key=jax.random.PRNGKey(0))
    a, _ = diffusion_sorption_pairs(jax.random.PRNGKey(5), 2, 8, 5)
    x = jnp.asarray(diffusion_sorption_grid(8, 5))
    physics = grid_physics(res)
    out = {}
    for loop in ("vmap", "map"):
        op = HardConstrainedOperator(net, res, (2, 1), rtol=1e-10, atol=1e-12, ridge=1e-6, overlap=1.0,
                                     schwarz="lower", loop=loop)  # fmt: skip
        assert op._sequential() == (loop == "map")
        p, s = eqx.partition(op, eqx.is_inexact_array)

        def loss(p, s=s):
            u, stats = eqx.combine(p, s).solve(a, x)
            return jnp.mean(jax.vmap(physics)(a, u)), (u, stats)

        g, (u, stats) = jax.jit(jax.grad(loss, has_aux=True))(p)
        assert stats.steps.shape == (2, 2) and bool(jnp.all(stats.converged))
        out[loop] = u, jax.flatten_util.ravel_pytree(g)[0]
    np.testing.assert_allclose(out["map"][0], out["vmap"][0], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(out["map"][1], out["vmap"][1], rtol=1e-6, atol=1e-8 * np.abs(out["vmap"][1]).max())
    # auto: one after another with Schwarz passes on one CPU device; batched without passes
    auto = HardConstrainedOperator(net, res, (2, 1), overlap=1.0, schwarz="lower")
    plain = HardConstrainedOperator(net, res, (2, 1), overlap=1.0)
    assert auto.loop == "auto" and auto._sequential() == (jax.default_backend() == "cpu" and jax.device_count() == 1)
    assert not plain._sequential()
    with pytest.raises(ValueError, match="loop must be one of auto, vmap, map, got 'scan'"):
        HardConstrainedOperator(net, res, (2, 1), loop="scan")


def test_smooth_ramps_partition_unity_on_the_same_rows_without_the_linear_ramps_kinks():
    from pdejax.operators._pihc import _expert_weights

    pts = np.arange(64)[:, None]
    lin = _expert_weights(pts, (64,), (4,), 12.0)
    for ramp in ("smooth", "smoother"):
        w = _expert_weights(pts, (64,), (4,), 12.0, ramp=ramp)
        np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-15)
        # the same support, so each expert constrains the same rows whatever the ramp's shape
        np.testing.assert_array_equal(w > 0, lin > 0)
        # the first expert's weight is one falling ramp. A linear ramp over 2 L = 24 cells bends by
        # 1 / (2 L) at each end, within a cell (second difference 1/48 on these nodes: a spike); the smooth
        # ramps spread their curvature over the ramp, at most 6 / (2 L)^2 = 1/96 (smoothstep) and
        # 5.77 / (2 L)^2 (smootherstep) per cell^2
        peak = np.abs(np.diff(w[:, 0], 2)).max()
        assert np.abs(np.diff(lin[:, 0], 2)).max() == pytest.approx(1 / 48)
        assert peak < 6 / 24**2 + 1e-12 and peak < 0.5 / 48


def test_experts_on_a_periodic_axis_blend_across_the_wrap():
    from pdejax.operators._pihc import _expert_weights

    n, c = 16, 4
    pts = np.arange(n)[:, None]
    hard = _expert_weights(pts, (n,), (c,), 0.0)
    # no overlap: the periodic partition is the plain one
    np.testing.assert_array_equal(_expert_weights(pts, (n,), (c,), 0.0, periodic=(0,)), hard)
    for ov in (1.0, 2.5, 4.0):
        w = _expert_weights(pts, (n,), (c,), ov, periodic=(0,))
        assert np.all(w >= 0)
        np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-15)
        # on a ring the partition is shift-equivariant: one block's shift moves every weight to the next
        # expert, including across the wrap, where the non-periodic partition has a jump
        np.testing.assert_allclose(np.roll(w, n // c, axis=0), np.roll(w, -1, axis=1), atol=1e-15)
        lin = _expert_weights(pts, (n,), (c,), ov)
        # the wrap's interface (at -1/2) is blended like the inner ones: mirror-symmetric about it
        assert lin[0, -1] == 0 and w[0, -1] > 0
        np.testing.assert_allclose(w[::-1, ::-1], w, atol=1e-15)
    # the Navier-Stokes rows declare their periodic axes, so hc-moe's blocks there are blended over the wrap
    assert navier_stokes_residual(8, 3).periodic == (0, 1)


_SHARDED = """
import equinox as eqx, jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from pdejax.operators import FNO
from pdejax.operators._pihc import (HardConstrainedOperator, diffusion_sorption_grid, diffusion_sorption_pairs,
                                    diffusion_sorption_residual, grid_physics)
res = diffusion_sorption_residual(8, 5)
net = FNO(1, 4, (3, 3), 4, 1, proj=8, key=jax.random.PRNGKey(0))
a, _ = diffusion_sorption_pairs(jax.random.PRNGKey(5), 2, 8, 5)
x = jnp.asarray(diffusion_sorption_grid(8, 5))
op = HardConstrainedOperator(net, res, (4, 1), rtol=1e-10, atol=1e-12, max_steps=50, ridge=1e-6)
w, _ = eqx.filter_jit(lambda o: jax.vmap(o.coefficients)(o.basis(a, x), a))(op)
p, s = eqx.partition(op, eqx.is_inexact_array)
loss = lambda p: jnp.mean(jax.vmap(grid_physics(res))(a, eqx.combine(p, s).batched(a, x)))
g = jax.flatten_util.ravel_pytree(jax.jit(jax.grad(loss))(p))[0]
np.savez(OUT, w=np.asarray(w), g=np.asarray(g), devices=len(w.sharding.device_set), n=jax.device_count())
"""


@pytest.mark.long
def test_operator_experts_shard_one_per_device_and_match_the_single_device_run(on_host_devices):
    runs = on_host_devices(_SHARDED)
    assert int(runs[1]["n"]) == 1 and int(runs[4]["n"]) == 4
    assert int(runs[1]["devices"]) == 1 and int(runs[4]["devices"]) == 4  # the experts' axis over 4 devices
    # equal up to the solver's tolerance (the sharded program orders its reductions differently)
    np.testing.assert_allclose(runs[4]["w"], runs[1]["w"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(runs[4]["g"], runs[1]["g"], rtol=1e-6, atol=1e-9 * np.abs(runs[1]["g"]).max())


def test_navier_stokes_rows_are_exact_on_a_two_mode_field():
    # spectral space derivatives are exact on trigonometric polynomials below the Nyquist mode, and the time
    # differences (centred, backward second order) on quadratics in t: every row is its analytic value.
    # Two modes of different |k|, so the advection term u . grad w does not vanish.
    s, nt, nu, T = 8, 5, 1e-2, 2.0
    res = navier_stokes_residual(s, nt, nu, T)
    g = navier_stokes_grid(s, nt)
    x, y, tau = g[..., 0], g[..., 1], g[..., 2]
    A, dA = 1 + 0.5 * tau - 0.3 * tau**2, (0.5 - 0.6 * tau) / T
    B, dB = 0.7 - 0.2 * tau + 0.4 * tau**2, (-0.2 + 0.8 * tau) / T
    sx, cx, s4, c4 = np.sin(2 * np.pi * x), np.cos(2 * np.pi * x), np.sin(4 * np.pi * y), np.cos(4 * np.pi * y)
    w = A * sx * c4 + B * cx
    wx = A * 2 * np.pi * cx * c4 - B * 2 * np.pi * sx
    wy = -A * 4 * np.pi * sx * s4
    # psi = A sx c4 / (20 pi^2) + B cx / (4 pi^2); u = psi_y, v = -psi_x
    u = -A * 4 * np.pi * sx * s4 / (20 * np.pi**2)
    v = -(A * 2 * np.pi * cx * c4 / (20 * np.pi**2) - B * 2 * np.pi * sx / (4 * np.pi**2))
    lap = -20 * np.pi**2 * A * sx * c4 - 4 * np.pi**2 * B * cx
    exact_pde = dA * sx * c4 + dB * cx + u * wx + v * wy - nu * lap
    assert np.abs(u * wx + v * wy).max() > 0.1  # the nonlinear term is really exercised
    w0 = np.broadcast_to(w[..., :1] + 0.01, w.shape)[None]
    r = np.asarray(res(jnp.asarray(w), jnp.asarray(w0)))
    i, j, k = res.where.T
    for name, exact in (("pde", exact_pde[i, j, k]), ("ic", np.full(res.rows, -0.01))):
        sl = res.terms[name]
        np.testing.assert_allclose(r[sl] * np.sqrt(sl.stop - sl.start), exact[sl], rtol=1e-9, atol=1e-10)
    assert res.rows == s * s * nt and sorted(res.terms) == ["ic", "pde"]
    # without initial rows (fields that hold w0 by construction): the same PDE rows, nothing else
    bare = navier_stokes_residual(s, nt, nu, T, initial=False)
    assert list(bare.terms) == ["pde"] and bare.rows == s * s * (nt - 1)
    np.testing.assert_allclose(np.asarray(bare(jnp.asarray(w), jnp.asarray(w0))), r[res.terms["pde"]], rtol=1e-12)
    with pytest.raises(ValueError, match="even s >= 8"):
        navier_stokes_residual(9, 5)


def test_navier_stokes_pairs_meet_their_rows_up_to_discretisation():
    rel = {}
    for s in (16, 32):
        a, w = jax.jit(lambda k, s=s: navier_stokes_pairs(k, 2, s, 11))(jax.random.PRNGKey(0))
        assert a.shape == w.shape == (2, 1, s, s, 11)
        np.testing.assert_allclose(w[..., 0], a[..., 0])  # the trajectory starts at w0
        np.testing.assert_allclose(np.abs(a[..., 0]).max(axis=(1, 2, 3)), 3.0)  # max |w0| = amplitude
        res = navier_stokes_residual(s, 11)
        r = np.asarray(jax.vmap(res)(w[:, 0], a))
        wt = np.asarray(jax.vmap(res.linear)(w[:, 0]))[:, 1, res.terms["pde"]]
        np.testing.assert_allclose(r[:, res.terms["ic"]], 0.0, atol=1e-12)
        n = res.terms["pde"].stop
        rel[s] = np.sqrt(np.mean(r[:, res.terms["pde"]] ** 2) * n) / np.sqrt(np.mean(wt**2))
        # the field really evolves: relative L2 change over [0, T] (so small rows are not a still field's)
        assert np.linalg.norm(w[..., -1] - w[..., 0]) > 0.4 * np.linalg.norm(w[..., 0])
    # measured 0.19 at 16 x 16 (aliasing of the products), 1.0e-2 at 32 x 32 (6.5e-3 at 64 x 64, where the
    # time differences' error is left)
    assert rel[32] < 0.02 and rel[32] < 0.2 * rel[16]


def test_navier_stokes_experts_split_x_and_y_and_solve():
    from pdejax.operators._solve import expert_split

    # the PINN experts' convention (pdejax.pinns.expert_split): near-square, smaller factors first
    assert expert_split(4, 2) == (2, 2, 1)
    assert expert_split(6, 2) == (2, 3, 1)
    assert expert_split(2, 2) == (1, 2, 1)
    assert expert_split(4, 1) == (4, 1)
    s, nt = 8, 5
    res = navier_stokes_residual(s, nt, initial=False)
    a, _ = navier_stokes_pairs(jax.random.PRNGKey(1), 1, s, nt)
    net = FNO(1, 3, (2, 2, 2), 4, 1, proj=8, padding=(0, 0, 2), key=jax.random.PRNGKey(0))
    x = jnp.asarray(navier_stokes_grid(s, nt))
    op = HardConstrainedOperator(net, res, (2, 2, 1), rtol=1e-8, atol=1e-10, max_steps=60, initial=True)
    u, stats = eqx.filter_jit(lambda o: o.solve(a, x))(op)
    assert u.shape == (1, 1, s, s, nt) and stats.converged.shape == (1, 4) and bool(jnp.all(stats.converged))
    # u = w0 + (t / T) basis . w: the initial state exactly, and the solve lowered the PDE rows below those
    # of the initial state held still (the coefficients' starting point, w = 0)
    np.testing.assert_array_equal(u[..., 0], a[..., 0])
    full = navier_stokes_residual(s, nt)
    assert float(jnp.sum(full(u[0, 0], a[0]) ** 2)) < float(jnp.sum(full(a[0, 0], a[0]) ** 2))
    one = FNO(1, 1, (2, 2, 2), 4, 1, proj=8, padding=(0, 0, 2), key=jax.random.PRNGKey(2))
    v = InitialValueField(one).batched(a, x)
    np.testing.assert_array_equal(v[..., 0], a[..., 0])
    np.testing.assert_allclose(v - a, x[..., 2] * one.batched(a, x), rtol=1e-12, atol=1e-14)
    # each expert's rows are its own quarter of the (x, y) square, at every time
    for e, rows in enumerate(op._rows.data):
        where = res.where[rows[rows >= 0]]
        assert set(map(tuple, where[:, :2] * 2 // s)) == {(e // 2, e % 2)}
