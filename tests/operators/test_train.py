"""Operator training: learning a known operator, checkpoint/resume, PINO residual loss, data-parallel sharding."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pdejax import operators as O


def _heat_data(n, s=32, nu=0.01, t=1.0, seed=0):
    # u0 with random modes 1..4 on [0, 1) -> heat flow to time t: a linear operator, diagonal in Fourier space
    rng = np.random.default_rng(seed)
    x = np.arange(s) / s
    k = np.arange(1, 5)
    c, d = rng.normal(size=(2, n, 4))
    u0 = c @ np.sin(2 * np.pi * np.outer(k, x)) + d @ np.cos(2 * np.pi * np.outer(k, x))
    decay = np.exp(-nu * (2 * np.pi * k) ** 2 * t)
    u1 = (c * decay) @ np.sin(2 * np.pi * np.outer(k, x)) + (d * decay) @ np.cos(2 * np.pi * np.outer(k, x))
    return O.OperatorDataset(u0[:, None], u1[:, None], x[:, None], "heat")


def test_fno_learns_the_heat_semigroup_and_generalises():
    data = _heat_data(120)
    train, test = data.split(100, 20)
    fno = O.FNO(1, 1, 6, width=16, depth=2, proj=32, key=jax.random.PRNGKey(0))
    cfg = O.OperatorConfig(epochs=60, batch_size=10, learning_rate=3e-3, lr_step_epochs=20, eval_every=2)
    res = O.train_operator(fno, train, test, cfg, progress=False)
    assert res.eval_rel_l2[0] > 2 * res.test_rel_l2  # the test error falls during training
    assert res.test_rel_l2 < 3e-2, res.test_rel_l2  # measured 4.5e-3; an untrained FNO is at ~1
    assert res.history["loss"][-1] < 0.1 * res.history["loss"][0]


def test_resume_continues_bitwise_and_checkpoints_are_checked(tmp_path):
    data = _heat_data(40)
    train, test = data.split(30, 10)
    net = O.DeepONet(32, 1, width=16, depth=2, p=8, key=jax.random.PRNGKey(1))
    cfg = O.OperatorConfig(epochs=4, batch_size=10, checkpoint_every=1, eval_every=2)
    full = O.train_operator(net, train, test, cfg, out_dir=tmp_path / "a", progress=False)
    half = O.OperatorConfig(epochs=2, batch_size=10, checkpoint_every=1, eval_every=2)
    O.train_operator(net, train, test, half, out_dir=tmp_path / "b", progress=False)
    rest = O.train_operator(net, train, test, cfg, out_dir=tmp_path / "b", resume=True, progress=False)
    assert rest.epochs == 4 and rest.history["loss"] == full.history["loss"]
    for x, y in zip(jax.tree_util.tree_leaves(eqx.filter(full.model, eqx.is_array)),
                    jax.tree_util.tree_leaves(eqx.filter(rest.model, eqx.is_array))):  # fmt: skip
        np.testing.assert_array_equal(x, y)
    other = O.MultiONet(32, 1, width=8, depth=3, key=jax.random.PRNGKey(1))
    with pytest.raises(ValueError, match="different model or optimizer"):
        O.train_operator(other, train, test, cfg, out_dir=tmp_path / "b", resume=True, progress=False)


def test_physics_loss_alone_learns_darcy_without_labels():
    # PINO with no labelled outputs at all: the preconditioned residual is the only signal; an operator
    # that predicts u = 0 has rel L2 1
    data = O.generate("darcy", 44, resolution=17, batch=44)
    train, test = data.split(40, 4)
    fno = O.FNO(1, 1, (4, 4), width=12, depth=2, proj=24, padding=2, key=jax.random.PRNGKey(0))
    cfg = O.OperatorConfig(epochs=60, batch_size=10, n_labelled=0, physics_weight=1.0, lr_step_epochs=20, eval_every=60)
    res = O.train_operator(fno, train, test, cfg, physics=O.darcy_physics, progress=False)
    phys = res.history["physics"]
    assert phys[-1] < 0.1 * phys[0], (phys[0], phys[-1])  # measured 1.39 -> 0.095
    assert res.test_rel_l2 < 0.3, res.test_rel_l2  # measured 0.18
    with pytest.raises(ValueError, match="needs a physics loss"):
        O.train_operator(fno, train, test, cfg, progress=False)


_SHARDED = """
import jax, numpy as np
jax.config.update("jax_enable_x64", True)
from pdejax import operators as O
train, test = O.load_dataset(DATA).split(16, 8)
fno = O.FNO(1, 1, (4, 4), width=8, depth=2, proj=16, padding=2, key=jax.random.PRNGKey(0))
cfg = O.OperatorConfig(epochs=3, batch_size=8, eval_every=1, physics_weight=0.1, n_labelled=8,
                       devices=jax.device_count())
res = O.train_operator(fno, train, test, cfg, physics=O.darcy_physics, progress=False)
w = res.model.net.lift.weight
np.savez(OUT, loss=np.asarray(res.history["loss"]), test=np.asarray(res.eval_rel_l2), w=np.asarray(w),
         devices=len(w.sharding.device_set))
"""


def test_data_parallel_training_on_4_devices_matches_one_device(tmp_path, on_host_devices):
    # Darcy-shaped data (a in {3, 12}, smooth u): the physics loss runs sharded too; no solves needed here
    rng = np.random.default_rng(0)
    s = np.linspace(0, 1, 17)
    bump = np.outer(np.sin(np.pi * s), np.sin(np.pi * s))
    a = np.where(rng.normal(size=(24, 1, 17, 17)) > 0, 12.0, 3.0)
    u = bump * rng.uniform(0.5, 1.5, size=(24, 1, 1, 1)) / 50
    coords = np.stack(np.meshgrid(s, s, indexing="ij"), -1)
    O.save_dataset(tmp_path / "data.npz", O.OperatorDataset(a, u, coords, "darcy"))
    runs = on_host_devices(_SHARDED, DATA=str(tmp_path / "data.npz"))
    one, four = runs[1], runs[4]
    assert int(one["devices"]) == 1 and int(four["devices"]) == 4  # parameters replicated on all 4
    # the same batches and updates; only the order of the cross-device sums differs (float64 rounding)
    np.testing.assert_allclose(four["loss"], one["loss"], rtol=1e-10)
    np.testing.assert_allclose(four["test"], one["test"], rtol=1e-9)
    np.testing.assert_allclose(four["w"], one["w"], rtol=1e-9, atol=1e-12)


def test_nan_stops_operator_training_naming_the_term_and_step(tmp_path):
    rng = np.random.default_rng(0)
    s = np.linspace(0, 1, 9)
    a = rng.uniform(1, 2, size=(12, 1, 9, 9))
    coords = np.stack(np.meshgrid(s, s, indexing="ij"), -1)
    train, test = O.OperatorDataset(a, a**2, coords, "darcy").split(8, 4)
    fno = O.FNO(1, 1, (3, 3), width=4, depth=1, proj=8, padding=0, key=jax.random.PRNGKey(0))
    cfg = O.OperatorConfig(epochs=3, batch_size=4, physics_weight=1.0, n_labelled=8)

    def physics(a, u):  # finite at first, NaN once the prediction's mean square passes 1e-9 (from step 0)
        return jnp.sqrt(1e-9 - jnp.mean(u**2))

    with pytest.raises(O.OperatorTrainingDiverged, match=r"the physics loss term became NaN/Inf at step 0 \(epoch 1"):
        O.train_operator(fno, train, test, cfg, physics=physics, out_dir=tmp_path, progress=False)
    assert (tmp_path / "checkpoint.npz").exists()  # the initial (finite) state, kept for --resume


def test_gradient_clipping_rescales_each_step_before_decay_and_adam():
    # two steps with gradients of norms 10 and 0.5: clipped to 1, Adam sees g1 / 10 and g2 unchanged, so its
    # moments weigh the two steps unlike an unclipped run (Adam is invariant to one common scale, not to this)
    p = {"a": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array([0.5])}
    g1 = {"a": jnp.array([6.0, 0.0, -8.0]), "b": jnp.array([0.0])}
    g2 = {"a": jnp.array([0.3, 0.0, 0.0]), "b": jnp.array([-0.4])}
    cfg = O.OperatorConfig(learning_rate=1e-2, weight_decay=0.1, grad_clip=1.0)
    opt = O.operator_optimizer(cfg, steps_per_epoch=4)
    ref = optax.chain(optax.add_decayed_weights(0.1), optax.adam(1e-2))  # the schedule is flat over 2 steps

    def run(o, grads):
        q, s = p, o.init(p)
        for g in grads:
            u, s = o.update(g, s, q)
            q = optax.apply_updates(q, u)
        return q

    scaled = jax.tree_util.tree_map(lambda v: v / 10.0, g1)
    got, want = run(opt, [g1, g2]), run(ref, [scaled, g2])
    moved = lambda q: np.concatenate([np.asarray(q[k] - p[k]) for k in p])  # noqa: E731
    np.testing.assert_allclose(moved(got), moved(want), rtol=1e-5)  # float32 rounding of the clip's scale
    unclipped = moved(run(O.operator_optimizer(dataclasses.replace(cfg, grad_clip=0.0), 4), [g1, g2]))
    np.testing.assert_allclose(unclipped, moved(run(ref, [g1, g2])), rtol=1e-5)
    assert np.max(np.abs(unclipped - moved(got))) > 0.1 * np.max(np.abs(moved(got)))
    with pytest.raises(ValueError, match="grad_clip and warmup must be >= 0"):
        O.OperatorConfig(grad_clip=-1.0)


def test_warmup_scales_the_first_steps_learning_rate_linearly():
    # Adam's moments do not depend on the rate, so with fixed gradients and no decay each update of the
    # warmed-up run is (k + 1) / warmup times the plain run's until step warmup - 1
    p = {"a": jnp.array([1.0, -2.0, 3.0])}
    grads = [{"a": jnp.array([0.1 * k - 0.2, 1.0, -0.5 * k])} for k in range(6)]

    def updates(cfg):
        o = O.operator_optimizer(cfg, steps_per_epoch=100)
        s, out = o.init(p), []
        for g in grads:
            u, s = o.update(g, s, p)
            out.append(np.asarray(u["a"]))
        return np.stack(out)

    plain = updates(O.OperatorConfig(learning_rate=1e-2, weight_decay=0.0))
    warm = updates(O.OperatorConfig(learning_rate=1e-2, weight_decay=0.0, warmup=4))
    ratio = np.minimum(1.0, (np.arange(6) + 1.0) / 4)
    np.testing.assert_allclose(warm, plain * ratio[:, None], rtol=1e-6)
    with pytest.raises(ValueError, match="and warmup must be >= 0"):
        O.OperatorConfig(warmup=-1)
