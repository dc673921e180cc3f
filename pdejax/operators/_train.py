"""Operator training: relative-L2 data loss, optional PINO physics loss, data-parallel over devices, checkpoints."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float

from .._io import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from .._precision import full_precision
from .._sharding import data_mesh
from ._data import OperatorDataset


class OperatorTrainingDiverged(RuntimeError):
    """The training loss became NaN/Inf; the last finite checkpoint (if any) was kept."""


class Normalised(eqx.Module):
    """An operator between normalised fields: ``G(a) = s_u * net((a - m_a) / s_a) + m_u`` per channel.

    The statistics are per-channel scalars of the training set (static, never trained), so the wrapped
    operator stays resolution-independent. Call: ``model(a, x)`` as the wrapped ``net``.
    """

    net: Any
    a_mean: tuple[float, ...] = eqx.field(static=True)
    a_std: tuple[float, ...] = eqx.field(static=True)
    u_mean: tuple[float, ...] = eqx.field(static=True)
    u_std: tuple[float, ...] = eqx.field(static=True)

    def __call__(self, a: Float[Array, " cin *grid"], x: Float[Array, "*grid d"]) -> Float[Array, " cout *grid"]:
        return self.batched(a[None], x)[0]

    def batched(self, a: Float[Array, "b cin *grid"], x: Float[Array, "*grid d"]) -> Float[Array, "b cout *grid"]:
        """The operator on a batch (the wrapped net's own batched path when it has one)."""
        d = a.ndim - 2

        def col(v):
            return jnp.asarray(v, a.dtype).reshape((1, -1) + (1,) * d)

        u = apply_batch(self.net, (a - col(self.a_mean)) / col(self.a_std), x)
        return u * col(self.u_std) + col(self.u_mean)


def apply_batch(
    model, a: Float[Array, "b cin *grid"], x: Array, in_axes: tuple = (0, None)
) -> Float[Array, "b cout *grid"]:
    """``model(a_i, x)`` for every sample of ``a``: its ``batched`` method if it has one (FNO), else ``jax.vmap``
    with ``in_axes``. ``x``: the grid ``(*grid, d)`` shared by all samples (operators), or with
    ``in_axes=(0, 0)`` one value per sample (a diffusion backbone's steps ``t``, ``(b,)``)."""
    batched = getattr(model, "batched", None)
    return batched(a, x) if batched is not None else jax.vmap(model, in_axes)(a, x)


def channel_stats(v: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of ``v`` (shape ``(n, c, *grid)``); std floored at 1e-12."""
    axes = (0,) + tuple(range(2, v.ndim))
    mean = np.mean(v, axis=axes, dtype=np.float64)
    std = np.maximum(np.std(v, axis=axes, dtype=np.float64), 1e-12)
    return tuple(map(float, mean)), tuple(map(float, std))


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    """Settings of :func:`train_operator` (the FNO paper's schedule by default).

    Attributes:
        epochs: passes over the training samples; batch_size: samples per step (the last partial batch
            of an epoch is dropped).
        learning_rate, weight_decay: Adam with L2 weight decay added to the gradient (PyTorch's Adam).
        lr_step_epochs, lr_gamma: multiply the learning rate by ``lr_gamma`` every ``lr_step_epochs``.
        n_labelled: use the outputs of only the first ``n_labelled`` training samples (None: all).
        physics_weight: weight of the physics loss (mean square PDE residual of the prediction, PINO) on
            every training input, labelled or not; 0 trains on data alone (then only labelled samples are
            visited).
        eval_every: epochs between evaluations of the test error (the last epoch is always evaluated).
        checkpoint_every: epochs between checkpoints (with an output directory; the end always writes one).
        devices: shard each batch over this many devices (data parallel; parameters replicated);
            None or 1: one device. ``batch_size`` must be a multiple.
        seed: seed of the shuffling key.
        grad_clip: clip each step's gradient to this global norm before Adam (0: no clipping).
        warmup: steps over which the learning rate ramps up linearly, ``(k + 1) / warmup`` of the schedule's at
            step ``k`` (0: none).
        normalise: wrap the model in :class:`Normalised` with the training set's channel statistics (False:
            the model sees and returns physical values, as a constraint layer that enforces the input needs).
    """

    epochs: int = 500
    batch_size: int = 20
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    lr_step_epochs: int = 100
    lr_gamma: float = 0.5
    n_labelled: int | None = None
    physics_weight: float = 0.0
    eval_every: int = 10
    checkpoint_every: int = 50
    devices: int | None = None
    seed: int = 0
    grad_clip: float = 0.0
    warmup: int = 0
    normalise: bool = True

    def __post_init__(self):
        for k in ("epochs", "batch_size", "lr_step_epochs", "eval_every"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        for k in ("learning_rate", "lr_gamma"):
            if not getattr(self, k) > 0:
                raise ValueError(f"{k} must be > 0, got {getattr(self, k)}")
        nonneg = (self.weight_decay, self.physics_weight, self.checkpoint_every, self.warmup)
        if min(nonneg) < 0 or not self.grad_clip >= 0:
            raise ValueError("weight_decay, physics_weight, checkpoint_every, grad_clip and warmup must be >= 0")
        if self.n_labelled is not None and self.n_labelled < 0:
            raise ValueError(f"n_labelled must be >= 0, got {self.n_labelled}")
        if self.devices is not None and self.devices < 1:
            raise ValueError(f"devices must be >= 1, got {self.devices}")


@dataclasses.dataclass
class OperatorResult:
    """Outcome of :func:`train_operator`.

    Attributes:
        model: the trained (normalised) operator.
        epochs: epochs done in total; history: per epoch ``loss`` (total), ``data``, ``physics``;
        eval_epochs, eval_rel_l2: test error (mean relative L2 over the test samples) when evaluated;
        test_rel_l2: the final test error; wall_time_s: seconds of this call (compilation included);
        eval_times: training seconds at each evaluation (summed over resumed calls; NaN for evaluations
        of checkpoints written before these were recorded).
    """

    model: Normalised
    epochs: int
    history: dict[str, list[float]]
    eval_epochs: list[int]
    eval_rel_l2: list[float]
    test_rel_l2: float
    wall_time_s: float
    eval_times: list[float] = dataclasses.field(default_factory=list)


def _rel_l2(pred, true):
    axes = tuple(range(1, true.ndim))
    return jnp.sqrt(jnp.sum((pred - true) ** 2, axes)) / jnp.sqrt(jnp.sum(true**2, axes))


@full_precision
def predict_batched(model, inputs: np.ndarray, coords: np.ndarray, batch: int = 50) -> np.ndarray:
    """``model`` applied to every input (``(n, c_in, *grid)``), in jitted vmapped batches; ``(n, c_out, *grid)``."""
    f = eqx.filter_jit(apply_batch)
    x = jnp.asarray(coords)
    return np.concatenate(
        [np.asarray(f(model, jnp.asarray(inputs[i : i + batch]), x)) for i in range(0, len(inputs), batch)]
    )


def relative_l2_per_sample(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """``||pred_i - true_i|| / ||true_i||`` for each sample ``i`` (float64)."""
    return np.asarray(_rel_l2(np.asarray(pred, np.float64), np.asarray(true, np.float64)))


def operator_optimizer(config: OperatorConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optax transformation :func:`train_operator` steps with: the gradient clipped to ``config.grad_clip``
    (global norm; 0: not clipped), plus L2 weight decay, then Adam at a learning rate that drops by ``lr_gamma``
    every ``lr_step_epochs`` epochs of ``steps_per_epoch`` steps, ramped up linearly over the first
    ``config.warmup`` steps. Updates have the parameters' pytree shapes."""
    decay = optax.exponential_decay(
        config.learning_rate, config.lr_step_epochs * steps_per_epoch, config.lr_gamma, staircase=True
    )
    warmup = config.warmup

    def schedule(k):
        return decay(k) * jnp.minimum(1.0, (k + 1.0) / warmup) if warmup else decay(k)

    # clipped before the decay term, as PyTorch's clip_grad_norm_ acts before Adam's weight_decay
    clip = [optax.clip_by_global_norm(config.grad_clip)] if config.grad_clip > 0 else []
    return optax.chain(*clip, optax.add_decayed_weights(config.weight_decay), optax.adam(schedule))


@full_precision
def train_operator(
    model: Any,
    train: OperatorDataset,
    test: OperatorDataset,
    config: OperatorConfig = OperatorConfig(),
    *,
    physics: Callable[[Array, Array], Array] | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> OperatorResult:
    """Train ``model`` (FNO, DeepONet, MultiONet: ``model(a, x) -> u``) on ``train``; report ``test`` error.

    Loss per step: mean relative L2 error of the labelled samples in the batch, plus ``physics_weight``
    times the mean over the batch of ``physics(a, u_pred)`` (a per-sample scalar, e.g. the mean square
    Darcy residual). Inputs and outputs are normalised per channel (:class:`Normalised`). Each epoch is
    one jitted ``lax.scan`` over shuffled batches; with ``config.devices > 1`` the batch axis is sharded
    over a device mesh and parameters replicated (gradients are all-reduced by XLA). With ``out_dir`` a
    checkpoint (parameters, optimizer state, key, epoch, history) is written atomically every
    ``checkpoint_every`` epochs; ``resume`` continues from it.

    Args:
        model: an operator module; train, test: datasets on the same grid.
        config: :class:`OperatorConfig`; physics: per-sample physics loss ``(a, u) -> scalar`` in physical
            units (``a``: ``(c_in, *grid)``, ``u``: ``(c_out, *grid)``); required if ``physics_weight > 0``.
        out_dir, resume, progress: checkpoint directory, continue from it, show a progress bar.
    """
    if config.physics_weight > 0 and physics is None:
        raise ValueError("physics_weight > 0 needs a physics loss for this dataset")
    if train.grid != test.grid:
        raise ValueError(f"train grid {train.grid} differs from test grid {test.grid}")
    n_lab = len(train) if config.n_labelled is None else min(config.n_labelled, len(train))
    use_physics = config.physics_weight > 0
    n_items = len(train) if use_physics else n_lab
    if n_items < config.batch_size:
        raise ValueError(f"{n_items} training samples are fewer than one batch of {config.batch_size}")
    mesh = data_mesh(config.devices, "batch")
    if mesh is not None and config.batch_size % config.devices:
        raise ValueError(f"batch_size {config.batch_size} is not a multiple of devices={config.devices}")
    a_stats = channel_stats(train.inputs)
    u_stats = channel_stats(train.outputs[:n_lab]) if n_lab else ((0.0,) * train.outputs.shape[1],) * 2
    if not n_lab:
        u_stats = (u_stats[0], tuple(1.0 for _ in u_stats[0]))
    if not config.normalise:
        a_stats = tuple(tuple(v for _ in range(train.inputs.shape[1])) for v in (0.0, 1.0))
        u_stats = tuple(tuple(v for _ in range(train.outputs.shape[1])) for v in (0.0, 1.0))
    model = Normalised(model, *a_stats, *u_stats)
    steps_per_epoch = n_items // config.batch_size
    opt = operator_optimizer(config, steps_per_epoch)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    dtype = jnp.zeros(()).dtype
    A = jnp.asarray(train.inputs[:n_items], dtype)
    U = jnp.asarray(train.outputs[:n_items], dtype)
    labelled = jnp.arange(n_items) < n_lab
    x = jnp.asarray(train.coords, dtype)
    if mesh is not None:
        rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        params, A, U, labelled, x = jax.device_put((params, A, U, labelled, x), rep)
        batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    w_phys = config.physics_weight

    def loss_fn(p, a, u, lab):
        m = eqx.combine(p, static)
        pred = apply_batch(m, a, x)
        rel = _rel_l2(pred, u)
        data = jnp.sum(jnp.where(lab, rel, 0.0)) / jnp.maximum(jnp.sum(lab), 1)
        phys = jnp.mean(jax.vmap(physics)(a, pred)) if use_physics else jnp.zeros((), rel.dtype)
        return data + w_phys * phys, (data, phys)

    def step(carry, idx):
        p, s = carry
        a, u, lab = A[idx], U[idx], labelled[idx]
        if mesh is not None:
            a, u, lab = (jax.lax.with_sharding_constraint(v, batch_sharding) for v in (a, u, lab))
        (loss, (data, phys)), g = jax.value_and_grad(loss_fn, has_aux=True)(p, a, u, lab)
        upd, s = opt.update(g, s, p)
        return (optax.apply_updates(p, upd), s), jnp.stack([loss, data, phys])

    @jax.jit
    def epoch(p, s, key):
        key, sub = jax.random.split(key)
        perm = jax.random.permutation(sub, n_items)[: steps_per_epoch * config.batch_size]
        (p, s), rows = jax.lax.scan(step, (p, s), perm.reshape(steps_per_epoch, config.batch_size))
        return p, s, key, jnp.mean(rows, axis=0), rows

    state = (params, opt.init(params), jax.random.PRNGKey(config.seed))
    start, history, eval_epochs, eval_vals = 0, {"loss": [], "data": [], "physics": []}, [], []
    eval_times: list[float] = []
    ckpt = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    if resume:
        if ckpt is None:
            raise ValueError("resume needs out_dir")
        state, meta, extra = load_checkpoint(ckpt, state)
        start = int(meta["epoch"])
        history = {k: [float(v) for v in extra.get(f"history_{k}", [])] for k in history}
        eval_epochs = [int(v) for v in extra.get("eval_epochs", [])]
        eval_vals = [float(v) for v in extra.get("eval_rel_l2", [])]
        eval_times = [float(v) for v in extra.get("eval_times", [np.nan] * len(eval_epochs))]
        if mesh is not None:
            state = jax.device_put(state, rep)

    def evaluate(p):
        pred = predict_batched(eqx.combine(p, static), test.inputs, test.coords)
        return float(np.mean(relative_l2_per_sample(pred, test.outputs)))

    def save(st, ep):
        if ckpt is None:
            return
        extra = {f"history_{k}": np.asarray(v) for k, v in history.items()}
        extra.update(eval_epochs=np.asarray(eval_epochs, np.int64), eval_rel_l2=np.asarray(eval_vals),
                     eval_times=np.asarray(eval_times))  # fmt: skip
        save_checkpoint(ckpt, st, {"epoch": ep, "kind": "operator"}, extra)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, initial=start, unit="epoch", dynamic_ncols=True)
    t0 = time.perf_counter()
    # a resumed run's clock continues from its last recorded evaluation
    base = next((t for t in reversed(eval_times) if np.isfinite(t)), 0.0)

    def clock():
        return base + time.perf_counter() - t0

    ep = start
    try:
        for ep in range(start + 1, config.epochs + 1):
            p, s, key, means, rows = epoch(*state)
            bad = ~np.isfinite(np.asarray(rows))  # (steps, [loss, data, physics]) before each update
            if bad.any():
                i = int(np.argmax(bad.any(axis=1)))
                term = "data" if bad[i, 1] else "physics" if bad[i, 2] else "total"
                save(state, ep - 1)  # the last finite state, for --resume with other settings
                kept = f"; last finite checkpoint kept at {ckpt} (epoch {ep - 1})" if ckpt is not None else ""
                raise OperatorTrainingDiverged(
                    f"training diverged: the {term} loss term became NaN/Inf at step "
                    f"{(ep - 1) * steps_per_epoch + i} (epoch {ep}, batch {i + 1}){kept}"
                )
            state = (p, s, key)
            for k, v in zip(history, np.asarray(means)):
                history[k].append(float(v))
            if ep % config.eval_every == 0 or ep == config.epochs:
                eval_epochs.append(ep)
                eval_vals.append(evaluate(p))
                eval_times.append(clock())
            if bar is not None:
                post = {"loss": f"{history['loss'][-1]:.3e}"}
                if eval_vals:
                    post["test_rel_l2"] = f"{eval_vals[-1]:.3e}"
                bar.set_postfix(post, refresh=False)
                bar.update(1)
            if config.checkpoint_every and ep % config.checkpoint_every == 0 and ep != config.epochs:
                save(state, ep)
    finally:
        if bar is not None:
            bar.close()
    if not eval_epochs or eval_epochs[-1] != ep:
        eval_epochs.append(ep)
        eval_vals.append(evaluate(state[0]))
        eval_times.append(clock())
    save(state, ep)
    return OperatorResult(
        model=eqx.combine(state[0], static),
        epochs=ep,
        history=history,
        eval_epochs=eval_epochs,
        eval_rel_l2=eval_vals,
        test_rel_l2=eval_vals[-1],
        wall_time_s=time.perf_counter() - t0,
        eval_times=eval_times,
    )
