"""Multi-loss optimizers: ConFIG against the authors' package, properties, M-ConFIG, MultiAdam, LRA, PCGrad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pdejax.problems as P
from pdejax import pinns
from pdejax.pinns import config_direction, config_direction_two, pcgrad_direction


def _conflicting(m, n, seed):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(m, n))
    g[1] = -0.7 * g[0] + 0.3 * rng.normal(size=n)  # make at least one pair conflict
    return g


@pytest.mark.parametrize("m", [2, 3, 4, 5, 6])
def test_config_matches_the_authors_package(m):
    torch = pytest.importorskip("torch")
    cf = pytest.importorskip("conflictfree.grad_operator")
    g = _conflicting(m, 40, m)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the package's weights follow the default dtype
    try:
        ref64 = cf.ConFIG_update(torch.from_numpy(g)).numpy()
        torch.set_default_dtype(torch.float32)
        ref32 = cf.ConFIG_update(torch.from_numpy(g.astype(np.float32))).numpy()
    finally:
        torch.set_default_dtype(default)
    ours64 = np.asarray(config_direction(jnp.asarray(g)))
    np.testing.assert_allclose(ours64, ref64, rtol=1e-10, atol=1e-12 * np.abs(ref64).max())
    ours32 = np.asarray(config_direction(jnp.asarray(g, jnp.float32)))
    np.testing.assert_allclose(ours32, ref32, rtol=1e-4, atol=1e-4 * np.abs(ref32).max())


def test_config_known_values():
    # conflictfree 0.1.8 ConFIG_update on default_rng(0).standard_normal((3, 5)), float64
    g = np.random.default_rng(0).standard_normal((3, 5))
    expected = [
        -0.17191457271060287,
        0.01952251547776261,
        -0.2632022107735818,
        -0.11274343015442906,
        -3.1180197410669463,
    ]
    np.testing.assert_allclose(config_direction(jnp.asarray(g)), expected, rtol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_config_conflict_free_and_scale_invariant(seed):
    m = 2 + seed
    g = _conflicting(m, 30, seed)
    d = np.asarray(config_direction(jnp.asarray(g)))
    # equal positive cosines with every gradient (m <= n, so such a direction exists)
    cos = (g / np.linalg.norm(g, axis=1, keepdims=True)) @ (d / np.linalg.norm(d))
    assert np.all(cos > 0) and np.ptp(cos) < 1e-10
    assert np.any(g @ g.T < 0)  # the inputs really conflict
    scale = np.exp(np.random.default_rng(seed).normal(size=(m, 1)) * 3)
    d2 = np.asarray(config_direction(jnp.asarray(g * scale)))
    np.testing.assert_allclose(d2 / np.linalg.norm(d2), d / np.linalg.norm(d), atol=1e-10)
    # the projection length: the update's component along itself is the sum of projections
    np.testing.assert_allclose(np.linalg.norm(d), np.sum(g @ (d / np.linalg.norm(d))), rtol=1e-12)


def test_config_two_gradient_closed_form_and_zero_gradients():
    g = _conflicting(2, 10, 7)
    np.testing.assert_allclose(config_direction_two(*jnp.asarray(g)), config_direction(jnp.asarray(g)), rtol=1e-10)
    z = np.vstack([g, np.zeros(10)])  # a zero gradient is ignored (as in the reference)
    np.testing.assert_allclose(config_direction(jnp.asarray(z)), config_direction(jnp.asarray(g)), rtol=1e-10)
    with pytest.raises(ValueError, match="length"):
        config_direction(jnp.asarray(g), length="longest")


def test_pcgrad_removes_conflicts():
    g = np.array([[1.0, 0.0], [-1.0, 1.0]])
    # g1 projected off g2: [1,0] - (-1/2)[-1,1] = [0.5, 0.5]; g2 projected off g1: [0, 1]
    np.testing.assert_allclose(pcgrad_direction(jnp.asarray(g)), [0.5, 1.5], atol=1e-15)
    torch = pytest.importorskip("torch")
    cf = pytest.importorskip("conflictfree.grad_operator")
    h = _conflicting(4, 12, 3)
    ref = cf.PCGradOperator().calculate_gradient(torch.from_numpy(h)).numpy()
    np.testing.assert_allclose(pcgrad_direction(jnp.asarray(h)), ref, rtol=1e-12)


def _params():
    return {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(2)}


def _stack(*trees):
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *trees)


def test_multiadam_is_invariant_to_each_terms_scale():
    params = _params()
    opt = pinns.multiadam(1e-3)
    rng = np.random.default_rng(0)
    g1 = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape)), params)
    g2 = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape)), params)
    s1, s2 = opt.init(params, 2), opt.init(params, 2)
    for _ in range(3):
        u1, s1 = opt.update(_stack(g1, g2), s1, params)
        u2, s2 = opt.update(_stack(jax.tree_util.tree_map(lambda x: 1e4 * x, g1), g2), s2, params)
    for a, b in zip(jax.tree_util.tree_leaves(u1), jax.tree_util.tree_leaves(u2)):
        # equal up to eps = 1e-8 in the denominators (relative to steps of size lr = 1e-3)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    # first step equals the mean of the per-term Adam steps (bias-corrected m/sqrt(v) = sign(g))
    u, _ = opt.update(_stack(g1, g2), opt.init(params, 2), params)
    expected = jax.tree_util.tree_map(lambda a, b: -1e-3 * (jnp.sign(a) + jnp.sign(b)) / 2, g1, g2)
    for a, b in zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)


def test_multiadam_groups_sum_their_terms():
    # groups ((0,), (1, 2)) on three terms == two ungrouped terms (g0, g1 + g2); bad groups are refused
    params = _params()
    rng = np.random.default_rng(1)
    g = [jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape)), params) for _ in range(3)]
    grouped, plain = pinns.multiadam(1e-3, groups=((0,), (1, 2))), pinns.multiadam(1e-3)
    sg, sp = grouped.init(params, 3), plain.init(params, 2)
    g12 = jax.tree_util.tree_map(jnp.add, g[1], g[2])
    for _ in range(3):
        ug, sg = grouped.update(_stack(*g), sg, params)
        up, sp = plain.update(_stack(g[0], g12), sp, params)
    for a, b in zip(jax.tree_util.tree_leaves(ug), jax.tree_util.tree_leaves(up)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="beyond"):
        pinns.multiadam(1e-3, groups=((0,), (5,))).init(params, 3)
    with pytest.raises(ValueError, match="non-empty"):
        pinns.multiadam(1e-3, groups=((0,), ()))


def test_mconfig_round_robin_and_warm_up():
    params = _params()
    opt = pinns.mconfig(1e-3)
    state = opt.init(params, 3)
    seen = []
    for k in range(5):
        i = int(opt.select(state))
        seen.append(i)
        g = jax.tree_util.tree_map(lambda p: (i + 1.0) * jnp.ones_like(p) * (-1) ** i, params)
        upd, state = opt.update(g, state, params)
        norm = sum(float(jnp.sum(x**2)) for x in jax.tree_util.tree_leaves(upd))
        assert (norm == 0) == (k < 2)  # zero until every term has been seen once
    assert seen == [0, 1, 2, 0, 1]


def test_lra_weights_follow_gradient_statistics():
    params = {"w": jnp.zeros(4)}
    opt = pinns.lra(1e-3, reference=(0,), every=1, alpha=0.5)
    state = opt.init(params, 2)
    g_ref = {"w": jnp.array([4.0, -1.0, 0.5, 0.0])}
    g_bc = {"w": jnp.array([0.1, 0.1, -0.1, 0.1])}
    for _ in range(60):
        _, state = opt.update(_stack(g_ref, g_bc), state, params)
    # fixed point of lam = 0.5 lam + 0.5 max|g_ref| / (mean|g_bc| lam): lam^2 = 4 / 0.1
    np.testing.assert_allclose(state.weights, [1.0, np.sqrt(40.0)], rtol=1e-6)


@pytest.mark.parametrize("name", ["config", "mconfig", "multiadam", "lra", "pcgrad"])
def test_optimizers_train_a_pinn(name):
    pb = P.get("poisson2d")
    s = pinns.settings_for(pb, name, steps=150, width=16, depth=2, constraints="soft", learning_rate=5e-3)
    sol = pinns.solve(pb, s, progress=False)
    h = sol.result.loss_history
    assert h.shape == (150, 2) and np.all(np.isfinite(h))
    assert h[-10:].sum(axis=1).mean() < 0.5 * h[:10].sum(axis=1).mean()


def test_trainer_passes_exact_per_term_gradients():
    # a multi-loss optimizer that records the per-term gradients it receives
    pb = P.get("poisson2d")
    field, tp = pinns.make_field(pb, width=8, depth=2, constraints="soft", key=jax.random.PRNGKey(0))
    n_terms = len(tp.term_names)

    # the recorder keeps what it receives in its state, read back after the jitted step
    def init(params, n):
        zeros = jax.tree_util.tree_map(lambda p: jnp.zeros((n,) + p.shape, p.dtype), params)
        return (zeros, jnp.zeros((n,)))

    def update(grads, state, params, losses):
        return jax.tree_util.tree_map(jnp.zeros_like, params), (grads, losses)

    recorder = pinns.MultiLossTransformation(init, update)
    cfg = pinns.TrainConfig(steps=1, weights={"bc": 3.0}, n_points={"pde": 16, "bc": 8})
    trainer = pinns.Trainer(tp, field, cfg, recorder)
    state = trainer.init_state()
    new_state, (rows, ok, _) = trainer.step(state, 1)
    got = {"grads": new_state.opt_state[0], "losses": new_state.opt_state[1]}
    assert got["losses"].shape == (n_terms,)
    assert np.all(ok)
    import equinox as eqx

    params, static = eqx.partition(field, eqx.is_inexact_array)
    for k, name in enumerate(tp.term_names):
        w = 3.0 if name == "bc" else 1.0
        g = jax.grad(lambda p: w * tp.losses(eqx.combine(p, static), state.points)[k])(params)
        for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(got["grads"])):
            np.testing.assert_allclose(np.asarray(b)[k], a, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(rows[0], tp.losses(field, state.points), rtol=1e-12)


def test_multi_loss_optimizer_needs_several_terms_and_reports_nan_gradients():
    pb = P.get("burgers")
    field, tp = pinns.make_field(pb, width=8, depth=2, key=jax.random.PRNGKey(0))  # hard: only "pde" left
    with pytest.raises(ValueError, match="'config' balances several loss terms.*\\['pde'\\]"):
        pinns.Trainer(tp, field, pinns.TrainConfig(steps=1), pinns.config())
    # a residual whose gradient is NaN while its value is finite: sqrt at 0
    bad = P.Problem(
        name="nan_grad",
        domain=P.Interval(0.0, 1.0),
        terms={
            "a": P.Term(lambda u, x: u(x) - 1.0, n_points=8),
            "b": P.Term(lambda u, x: jnp.sqrt(jnp.abs(u(x)) * 0.0), n_points=8),
        },
    )
    field, tp = pinns.make_field(bad, width=8, depth=2, key=jax.random.PRNGKey(0))
    with pytest.raises(pinns.TrainingDiverged, match="gradient of loss term 'b' became NaN/Inf at step 0"):
        pinns.train(tp, field, pinns.TrainConfig(steps=5, chunk=5), optimizer=pinns.config(), progress=False)
