"""pdejax's PINN and operator programs are traced with full-precision float32 matrix products (not GPUs' TF32
default) unless the user chose a precision, which is kept."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import pdejax.problems as P
from pdejax import operators, pinns
from pdejax._precision import full_matmul_precision


class _Log:
    """What ``jax_default_matmul_precision`` was each time a wrapped module was traced (hashable by identity,
    so a module can hold it as a static field)."""

    def __init__(self):
        self.seen = []


class _Recording(eqx.Module):
    inner: eqx.Module
    log: _Log = eqx.field(static=True)

    def __call__(self, *args):
        self.log.seen.append(jax.config.jax_default_matmul_precision)
        return self.inner(*args)


def _trainer_precisions(log) -> set:
    pb = P.get("poisson2d")
    field, tp = pinns.make_field(pb, width=8, depth=2, key=jax.random.PRNGKey(0))
    trainer = pinns.Trainer(tp, _Recording(field, log), pinns.TrainConfig(steps=1, n_points={"pde": 16}))
    trainer.step(trainer.init_state(), 1)
    pinns.predict(_Recording(field, log), np.zeros((4, 2)))
    return set(log.seen)


def test_pinn_programs_trace_at_full_precision_unless_the_user_chose():
    assert jax.config.jax_default_matmul_precision is None  # the test relies on JAX's own default being unset
    assert _trainer_precisions(_Log()) == {"float32"}
    with jax.default_matmul_precision("tensorfloat32"):
        assert _trainer_precisions(_Log()) == {"tensorfloat32"}
    assert jax.config.jax_default_matmul_precision is None  # nothing leaks out of pdejax's calls


def test_operator_prediction_traces_at_full_precision_and_lowers_to_highest():
    log = _Log()
    net = _Recording(lambda a, x: 2.0 * a, log)
    out = operators.predict_batched(net, np.ones((3, 1, 4)), np.zeros((4, 1)), batch=2)
    np.testing.assert_array_equal(out, 2.0)
    assert set(log.seen) == {"float32"}
    with full_matmul_precision():
        hlo = jax.jit(lambda a: a @ a).lower(jnp.ones((2, 2), jnp.float32)).as_text()
    assert "HIGHEST" in hlo


class _Scale(eqx.Module):
    w: jax.Array

    def __call__(self, a, x):
        return self.w * a


def test_operator_training_traces_at_full_precision():
    log = _Log()
    a = np.random.default_rng(0).normal(size=(4, 1, 4)).astype(np.float32)
    data = operators.OperatorDataset(a, 3.0 * a, np.linspace(0, 1, 4, dtype=np.float32)[:, None], "custom")
    cfg = operators.OperatorConfig(epochs=1, batch_size=4, eval_every=1, checkpoint_every=0)
    operators.train_operator(_Recording(_Scale(jnp.ones(())), log), data, data, cfg, progress=False)
    assert log.seen and set(log.seen) == {"float32"}
