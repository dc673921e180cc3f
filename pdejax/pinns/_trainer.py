"""PINN training loop: jitted ``lax.scan`` chunks of Adam (optax) then L-BFGS, with checkpoints and evaluation."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PyTree

from .._io import CHECKPOINT_NAME, load_checkpoint, read_checkpoint_meta, save_checkpoint
from .._precision import full_precision
from .._sharding import constrain_leading, constrain_replicated, data_mesh, place_leading, place_replicated
from ..problems import SAMPLING_METHODS, Problem, sample
from ._field import predict, ready
from ._multiloss import MultiLossTransformation


class TrainingDiverged(RuntimeError):
    """The loss became NaN/Inf. ``step`` and ``term`` say where; the last finite state was kept."""

    def __init__(self, step: int, term: str, checkpoint: str | None, what: str = "loss term"):
        self.step, self.term, self.checkpoint = step, term, checkpoint
        kept = f"; last finite checkpoint kept at {checkpoint}" if checkpoint else ""
        super().__init__(f"training diverged: {what} {term!r} became NaN/Inf at step {step}{kept}")


class TrainConfig(eqx.Module):
    """Settings of :func:`train` (all plain data).

    Attributes:
        steps: first-order (Adam) steps.
        learning_rate: initial Adam learning rate.
        decay_rate, decay_steps: exponential decay ``lr * decay_rate ** (step / decay_steps)``.
        lbfgs_steps: L-BFGS iterations after Adam (each with a zoom line search).
        lbfgs_resample_every: draw fresh points (``sampler``/``adaptive`` as in the first phase) and restart
            the L-BFGS memory every this many iterations, from the first one (0: keep the last points).
        chunk: steps per jitted ``lax.scan`` call (progress, evaluation and NaN checks happen between).
        sampler: 'uniform', 'sobol' or 'lhs'.
        resample_every: draw fresh collocation points every this many Adam steps (0: never).
        adaptive: 'none', or 'rad': when resampling, draw ``rad_candidates`` times more candidates for
            each PDE-residual term and keep ``n`` of them with probability ``|r|^k / mean |r|^k + c``
            (residual-based adaptive distribution, Wu et al., CMAME 403, 2023).
        rad_k, rad_c, rad_candidates: the RAD exponent, floor and oversampling factor.
        n_points: per-term overrides of the number of points.
        weights: per-term loss weights (default: each term's own weight).
        eval_every: evaluate rel. L2 against the reference every this many steps (0: only at the end).
        checkpoint_every: write a checkpoint every this many steps (0: only at the end).
        seed: seed of the sampling key (the model's key is separate).
        devices: split the collocation points of every term over this many devices (``jax.sharding``,
            data parallel; parameters replicated; all processes' devices under ``jax.distributed``).
            ``None`` or 1: one device. Results equal the one-device run up to the order of the sums.
    """

    steps: int = 5000
    learning_rate: float = 1e-3
    decay_rate: float = 0.9
    decay_steps: int = 1000
    lbfgs_steps: int = 0
    lbfgs_resample_every: int = 0
    chunk: int = 250
    sampler: str = "uniform"
    resample_every: int = 0
    adaptive: str = "none"
    rad_k: float = 1.0
    rad_c: float = 1.0
    rad_candidates: int = 8
    n_points: dict[str, int] | None = None
    weights: dict[str, float] | None = None
    eval_every: int = 1000
    checkpoint_every: int = 1000
    seed: int = 0
    devices: int | None = None

    def __check_init__(self):
        names = ("steps", "lbfgs_steps", "lbfgs_resample_every", "resample_every", "eval_every", "checkpoint_every")
        for name in names:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.steps + self.lbfgs_steps <= 0:
            raise ValueError(f"steps + lbfgs_steps must be > 0, got {self.steps} + {self.lbfgs_steps}")
        if self.chunk < 1 or self.decay_steps < 1:
            raise ValueError(f"chunk and decay_steps must be >= 1, got {self.chunk}, {self.decay_steps}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a finite number > 0, got {self.learning_rate}")
        if not 0 < self.decay_rate <= 1:
            raise ValueError(f"decay_rate must be in (0, 1], got {self.decay_rate}")
        if self.adaptive not in ("none", "rad"):
            raise ValueError(f"unknown adaptive sampling {self.adaptive!r}; choose 'none' or 'rad'")
        if self.adaptive == "rad" and not (self.rad_k >= 0 and self.rad_c >= 0 and self.rad_candidates >= 1):
            raise ValueError("RAD needs rad_k >= 0, rad_c >= 0 and rad_candidates >= 1")
        if self.devices is not None and self.devices < 1:
            raise ValueError(f"devices must be >= 1, got {self.devices}")
        if self.sampler not in SAMPLING_METHODS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {SAMPLING_METHODS}")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class TrainState(eqx.Module):
    """Everything that evolves during training (arrays only, so it checkpoints and scans)."""

    params: PyTree
    opt_state: PyTree
    key: Array
    points: dict[str, Array]
    step: Array


@dataclasses.dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        field: the trained field.
        loss_history: ``(steps, m)`` loss-term values per step (columns: ``term_names``).
        term_names: names of the loss terms.
        eval_steps, eval_rel_l2: steps at which rel. L2 was measured and its values.
        eval_times: wall-clock seconds since the start of this call at each evaluation.
        rel_l2: final relative L2 error against the reference (``None`` without a reference).
        steps: total steps done (Adam + L-BFGS).
        wall_time_s: wall-clock seconds of this call (compilation included).
        unconverged_solves: steps of this call whose inner solve (hard-constraint fields) stopped before its
            tolerance and went on with its last iterate (``on_failure='keep'``); 0 for plain fields.
    """

    field: Any
    loss_history: np.ndarray
    term_names: tuple[str, ...]
    eval_steps: list[int]
    eval_rel_l2: list[float]
    eval_times: list[float]
    rel_l2: float | None
    steps: int
    wall_time_s: float
    unconverged_solves: int = 0


def relative_l2(pred: np.ndarray, ref: np.ndarray) -> float:
    """``||pred - ref||_2 / ||ref||_2`` over all entries (all points and components)."""
    pred = np.asarray(pred, np.float64).reshape(ref.shape)
    return float(np.linalg.norm(pred - ref) / np.linalg.norm(ref))


def _weights(problem: Problem, weights: Mapping[str, float] | None) -> np.ndarray:
    weights = dict(weights or {})
    unknown = set(weights) - set(problem.terms)
    if unknown:
        raise ValueError(f"weights name unknown terms {sorted(unknown)}; terms are {list(problem.terms)}")
    return np.array([weights.get(n, t.weight) for n, t in problem.terms.items()])


def _adam(config: TrainConfig) -> optax.GradientTransformation:
    schedule = optax.exponential_decay(config.learning_rate, config.decay_steps, config.decay_rate)
    return optax.adam(schedule)


def _lbfgs() -> optax.GradientTransformation:
    return optax.lbfgs(memory_size=50, linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=25))


class Trainer:
    """The compiled training programs for one problem, field and configuration.

    ``init_state()`` gives the initial :class:`TrainState`; ``step(state, n)`` runs ``n`` steps of the
    current phase (first-phase optimizer while ``state.step < config.steps``, then L-BFGS) in one jitted
    ``lax.scan`` and returns ``(state, (loss_rows, grad_finite, solved))`` with ``loss_rows`` of shape
    ``(n, m)``; ``field(state)`` rebuilds the field. :func:`train` drives this loop; use it directly for
    custom loops or timing.
    """

    def __init__(
        self,
        problem: Problem,
        field: eqx.Module,
        config: TrainConfig = TrainConfig(),
        optimizer: optax.GradientTransformation | None = None,
    ):
        self.problem, self.config = problem, config
        self.weights = jnp.asarray(_weights(problem, config.weights), jnp.zeros(()).dtype)
        self.params, self.static = eqx.partition(field, eqx.is_inexact_array)
        self.mesh = data_mesh(config.devices, "points")
        self.first = optimizer if optimizer is not None else _adam(config)
        self.lbfgs = _lbfgs()
        static = self.static

        def losses(p, points):
            field = ready(eqx.combine(p, static))
            return problem.losses(field, points), _solved(field)

        def draw(key, p):
            return _draw(problem, config, key, ready(eqx.combine(p, static)))

        if isinstance(self.first, MultiLossTransformation) and len(problem.terms) < 2:
            raise ValueError(
                f"optimizer {self.first.name!r} balances several loss terms, but this problem has only "
                f"{list(problem.terms)}; keep more terms (e.g. constraints='soft') or use a plain optimizer"
            )
        # traced with full-precision float32 products unless the user chose a precision (TF32 on GPUs costs
        # PINNs digits: see pdejax._precision)
        self._first_chunk = full_precision(jax.jit(
            _adam_scan(losses, self.weights, self.first, draw, config, problem, static, self.mesh), static_argnums=1
        ))  # fmt: skip
        self._lbfgs_chunk = full_precision(jax.jit(
            _lbfgs_scan(losses, self.weights, self.lbfgs, draw, config, self.mesh), static_argnums=1
        ))  # fmt: skip

    @property
    def total_steps(self) -> int:
        return self.config.steps + self.config.lbfgs_steps

    def init_state(self) -> TrainState:
        """Initial parameters and optimizer state, the sampling key and the first collocation points."""
        key = jax.random.PRNGKey(self.config.seed)
        key, sub = jax.random.split(key)
        points = self.problem.sample(sub, self.config.sampler, self.config.n_points)
        zero = jnp.zeros((), jnp.int32)
        if isinstance(self.first, MultiLossTransformation):
            opt_state = self.first.init(self.params, len(self.problem.terms))
        else:
            opt_state = self.first.init(self.params)
        return self.place(TrainState(self.params, opt_state, key, points, zero))

    def place(self, state: TrainState) -> TrainState:
        """``state`` on this trainer's devices: points split along their first axis, the rest replicated."""
        if self.mesh is None:
            return state
        rest = place_replicated((state.params, state.opt_state, state.key, state.step), self.mesh)
        return TrainState(rest[0], rest[1], rest[2], place_leading(state.points, self.mesh), rest[3])

    def lbfgs_state(self, state: TrainState) -> TrainState:
        """``state`` with a fresh L-BFGS optimizer state (the switch between the two phases)."""
        opt_state = place_replicated(self.lbfgs.init(state.params), self.mesh)
        return TrainState(state.params, opt_state, state.key, state.points, state.step)

    def in_first_phase(self, state: TrainState) -> bool:
        """Whether ``state.opt_state`` still belongs to the first-phase optimizer."""
        return _is_first_phase(state, self.lbfgs)

    def step(self, state: TrainState, n: int) -> tuple[TrainState, tuple[Float[Array, "n m"], Array, Array]]:
        """Run ``n`` steps of the current phase; the phase must not change within them.

        Returns the new state and ``(loss_rows, grad_finite, solved)``: the ``(n, m)`` loss values before each
        step, whether each term's gradient was finite ``(n, m)``, and whether the field's inner solve (a
        hard-constraint field's; always true for plain fields) reached its tolerance ``(n,)``.
        """
        step = int(state.step)
        if step >= self.config.steps and self.in_first_phase(state):
            state = self.lbfgs_state(state)
        if step < self.config.steps:
            if step + n > self.config.steps:
                raise ValueError(f"{n} steps from step {step} cross the end of the first phase")
            return self._first_chunk(state, n)
        return self._lbfgs_chunk(state, n)

    def field(self, state: TrainState) -> eqx.Module:
        """The field with the parameters of ``state``."""
        return eqx.combine(state.params, self.static)


def train(
    problem: Problem,
    field: eqx.Module,
    config: TrainConfig = TrainConfig(),
    *,
    optimizer: optax.GradientTransformation | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
    on_chunk: Callable[[int, np.ndarray], None] | None = None,
    predictor: Callable[[Any, np.ndarray], np.ndarray] = predict,
) -> TrainResult:
    """Train ``field`` to minimise the weighted sum of ``problem``'s loss terms.

    Adam (or ``optimizer``, any optax transformation) runs for ``config.steps`` steps, then L-BFGS for
    ``config.lbfgs_steps``. Steps run in jitted ``lax.scan`` chunks (:class:`Trainer`); between chunks the
    progress bar is updated, the loss is checked for NaN/Inf, rel. L2 is evaluated and checkpoints are
    written.

    Args:
        problem: the problem whose loss terms are minimised (from :func:`make_field`).
        field: the neural field (an Equinox module ``(d,) -> ()`` or ``(c,)``).
        config: :class:`TrainConfig`.
        optimizer: first-phase optimizer (default: Adam with exponential decay): any optax transformation
            (on the weighted sum) or a :class:`MultiLossTransformation` (on the per-term gradients).
        out_dir: where ``checkpoint.npz`` is written (``None``: no checkpoints).
        resume: continue from the checkpoint in ``out_dir`` if there is one.
        progress: show a tqdm progress bar.
        reference: ``(points (n, d), values)`` to measure rel. L2 on (default: the problem's eval grid
            and reference, if it has one; ``False``: no evaluation).
        on_chunk: called as ``on_chunk(step, loss_rows)`` after every chunk.
        predictor: ``predictor(field, points) -> values`` compared with the reference (default
            :func:`predict`; an LPINN maps its Lagrangian field back to the Eulerian grid here).

    Returns:
        :class:`TrainResult`. Raises :class:`TrainingDiverged` on NaN/Inf (after saving the last finite
        state when ``out_dir`` is given).
    """
    start = time.perf_counter()
    trainer = Trainer(problem, field, config, optimizer)
    names = problem.term_names
    weights = np.asarray(trainer.weights)
    ckpt = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    if reference is None and problem.reference_fn is not None:
        pts, _ = problem.eval_points()
        reference = (pts, problem.reference(pts))
    elif reference is False:
        reference = None

    state = trainer.init_state()
    history: list[np.ndarray] = []
    eval_steps: list[int] = []
    eval_vals: list[float] = []
    eval_times: list[float] = []
    if resume and ckpt is not None and ckpt.exists():
        state, history, eval_steps, eval_vals = _resume(ckpt, state, trainer.lbfgs, config)
        state = trainer.place(state)

    total = trainer.total_steps
    bar = _progress(total, int(state.step), progress)
    last_saved = int(state.step)
    unconverged = 0
    try:
        while int(state.step) < total:
            step = int(state.step)
            end = config.steps if step < config.steps else total
            n = min(config.chunk, end - step)
            new_state, (rows, ok, solved) = trainer.step(state, n)
            rows, ok = np.asarray(rows), np.asarray(ok)
            unconverged += int(np.sum(~np.asarray(solved)))
            bad_val, bad_grad = ~np.isfinite(rows), ~ok
            row_bad = (bad_val | bad_grad).any(axis=1)
            if row_bad.any() or not _finite(new_state.params):
                i = int(np.argmax(row_bad)) if row_bad.any() else n - 1
                if bad_val[i].any():
                    term, what = names[int(np.argmax(bad_val[i]))], "loss term"
                elif bad_grad[i].all() and len(names) > 1:  # one gradient of the weighted sum
                    term, what = "+".join(names), "gradient of the weighted loss"
                elif bad_grad[i].any():
                    term, what = names[int(np.argmax(bad_grad[i]))], "gradient of loss term"
                else:
                    term, what = "parameters", "the"
                saved = None
                if ckpt is not None:
                    _save(ckpt, state, config, history, eval_steps, eval_vals, trainer.lbfgs)
                    saved = str(ckpt)
                err = TrainingDiverged(step + i, term, saved, what)
                diagnose = getattr(trainer.field(state), "diagnose", None)
                if callable(diagnose):  # e.g. a hard-constraint solve that stopped converging
                    err.args = (f"{err.args[0]}; at the last finite parameters, {diagnose()}",)
                raise err
            state = new_state
            history.append(rows)
            step = int(state.step)
            if on_chunk is not None:
                on_chunk(step, rows)
            msg = {"loss": f"{float(np.dot(weights, rows[-1])):.3e}"}
            due = config.eval_every and step // config.eval_every > (step - n) // config.eval_every
            if reference is not None and (step == total or due):
                err = relative_l2(predictor(trainer.field(state), reference[0]), reference[1])
                eval_steps.append(step)
                eval_vals.append(err)
                eval_times.append(time.perf_counter() - start)
            if eval_vals:
                msg["rel_l2"] = f"{eval_vals[-1]:.2e}"
            if unconverged:
                msg["unconverged_solves"] = unconverged
            if bar is not None:
                bar.set_postfix(msg, refresh=False)
                bar.update(n)
            due = config.checkpoint_every and step - last_saved >= config.checkpoint_every
            if ckpt is not None and (step == total or due):
                _save(ckpt, state, config, history, eval_steps, eval_vals, trainer.lbfgs)
                last_saved = step
    finally:
        if bar is not None:
            bar.close()
    hist = np.concatenate(history, axis=0) if history else np.zeros((0, len(names)))
    return TrainResult(
        field=trainer.field(state),
        loss_history=hist,
        term_names=names,
        eval_steps=eval_steps,
        eval_rel_l2=eval_vals,
        eval_times=eval_times,
        rel_l2=eval_vals[-1] if eval_vals else None,
        steps=int(state.step),
        wall_time_s=time.perf_counter() - start,
        unconverged_solves=unconverged,
    )


def _draw(problem: Problem, config: TrainConfig, key, field) -> dict:
    """Fresh collocation points; with ``adaptive='rad'`` residual terms are drawn in proportion to the
    current residual of ``field`` (Wu et al. 2023)."""
    kbase, kad = jax.random.split(key)
    points = problem.sample(kbase, config.sampler, config.n_points)
    if config.adaptive != "rad":
        return points
    n_points = config.n_points or {}
    for name, term in problem.terms.items():
        if term.kind != "residual" or term.points is not None:
            continue
        kad, kc, ks = jax.random.split(kad, 3)
        n = n_points.get(name, term.n_points)
        cand = sample(problem.domain, term.region, kc, n * config.rad_candidates, config.sampler)
        r = jax.lax.stop_gradient(problem.term_residuals(field, name, cand))
        err = jnp.sqrt(jnp.sum(r**2, axis=1)) ** config.rad_k
        prob = err / jnp.mean(err) + config.rad_c
        idx = jax.random.choice(ks, cand.shape[0], (n,), replace=False, p=prob / jnp.sum(prob))
        points[name] = cand[idx]
    return points


def _outputs(st: TrainState, out, mesh):
    """Pin a scan step's shardings: points split, everything else replicated (keeps the jitted chunk's
    input and output shardings equal, so it compiles once, and the host can read the loss rows)."""
    if mesh is None:
        return st, out
    params, opt_state, key, step, out = constrain_replicated((st.params, st.opt_state, st.key, st.step, out), mesh)
    return TrainState(params, opt_state, key, constrain_leading(st.points, mesh), step), out


def _adam_scan(losses, weights, opt, draw, config: TrainConfig, problem: Problem, static, mesh=None):
    resample = config.resample_every

    def run(state: TrainState, n: int):
        def body(st: TrainState, _):
            key, sub = jax.random.split(st.key)
            points = st.points
            if resample:
                points = jax.lax.cond(
                    (st.step > 0) & (st.step % resample == 0),
                    lambda k: draw(k, st.params),
                    lambda k: st.points,
                    sub,
                )
                points = constrain_leading(points, mesh)

            if isinstance(opt, MultiLossTransformation):
                vec, g, ok, solved = _per_term_gradients(problem, static, weights, opt, st, points)
                updates, opt_state = opt.update(g, st.opt_state, st.params, vec)
            else:

                def total(p):
                    vec, solved = losses(p, points)
                    return jnp.dot(weights, vec), (vec, solved)

                (_, (vec, solved)), g = jax.value_and_grad(total, has_aux=True)(st.params)
                ok = jnp.broadcast_to(_all_finite(g), vec.shape)
                updates, opt_state = opt.update(g, st.opt_state, st.params)
            params = optax.apply_updates(st.params, updates)
            return _outputs(TrainState(params, opt_state, key, points, st.step + 1), (vec, ok, solved), mesh)

        return jax.lax.scan(body, state, None, length=n)

    return run


def _solved(field) -> Array:
    """Whether a prepared field's inner solve reached its tolerance (fields without one: true)."""
    stats = getattr(field, "stats", None)
    return jnp.all(stats.converged) if stats is not None else jnp.ones((), bool)


def _all_finite(tree) -> Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


def _per_term_gradients(problem: Problem, static, weights, opt, st: TrainState, points):
    """Loss values and per-term gradients (stacked, leading axis m) of the weighted terms.

    Each term's gradient is the backward pass of that term alone, so all of them together cost about one
    forward and one backward pass of the whole loss, the price of a plain Adam step (a Jacobian of the
    loss vector by ``jax.jacrev`` would run m backward passes through every term). For an optimizer that
    needs one term per step (M-ConFIG) only that term's backward pass runs (``lax.switch``).
    Also returns whether each term's gradient is finite and whether the field's inner solve converged.
    """
    names = problem.term_names

    def term(k):
        def value(p):
            field = ready(eqx.combine(p, static))
            return weights[k] * problem.term_loss(field, names[k], points[names[k]]), _solved(field)

        return value

    if opt.select is None:
        outs = [jax.value_and_grad(term(k), has_aux=True)(st.params) for k in range(len(names))]
        g = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *(gk for _, gk in outs))
        ok = jnp.stack([_all_finite(gk) for _, gk in outs])
        vec = jnp.stack([v for (v, _), _ in outs])
        solved = jnp.all(jnp.stack([s for (_, s), _ in outs]))
    else:
        vals = [term(k)(st.params) for k in range(len(names))]
        vec = jnp.stack([v for v, _ in vals])
        solved = jnp.all(jnp.stack([s for _, s in vals]))
        i = opt.select(st.opt_state)
        g = jax.lax.switch(i, [jax.grad(lambda p, k=k: term(k)(p)[0]) for k in range(len(names))], st.params)
        ok = jnp.ones(len(names), bool).at[i].set(_all_finite(g))
    return vec / jnp.where(weights != 0, weights, 1.0), g, ok, solved


def _lbfgs_scan(losses, weights, opt, draw, config: TrainConfig, mesh=None):
    every, start = config.lbfgs_resample_every, config.steps

    def run(state: TrainState, n: int):
        def body(st: TrainState, _):
            key, points, opt_state = st.key, st.points, st.opt_state
            if every:
                # fresh points (and a fresh L-BFGS memory, since the objective changes) every `every`
                # iterations, starting with the switch from the first phase
                key, sub = jax.random.split(key)
                points, opt_state = jax.lax.cond(
                    (st.step - start) % every == 0,
                    lambda k: (draw(k, st.params), opt.init(st.params)),
                    lambda k: (st.points, st.opt_state),
                    sub,
                )
                points = constrain_leading(points, mesh)

            def total(p):
                return jnp.dot(weights, losses(p, points)[0])

            vec, solved = losses(st.params, points)
            value, g = optax.value_and_grad_from_state(total)(st.params, state=opt_state)
            updates, new_state = opt.update(g, opt_state, st.params, value=value, grad=g, value_fn=total)
            # In float32 the zoom line search can fail to find a decrease; optax's L-BFGS then repeats the
            # same failed step forever (its curvature memory stays empty). Reject such a step and restart
            # from a fresh state (a scaled gradient step) instead.
            failed = optax.tree.get(new_state, "info").decrease_error > 0
            params = jax.lax.cond(failed, lambda: st.params, lambda: optax.apply_updates(st.params, updates))
            new_state = jax.lax.cond(failed, lambda: opt.init(st.params), lambda: new_state)
            ok = jnp.broadcast_to(_all_finite(g), vec.shape)
            return _outputs(TrainState(params, new_state, key, points, st.step + 1), (vec, ok, solved), mesh)

        return jax.lax.scan(body, state, None, length=n)

    return run


def _finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(tree))


def _is_first_phase(state: TrainState, lbfgs) -> bool:
    """Whether ``state.opt_state`` is still the first optimizer's (not yet L-BFGS's)."""
    ref = jax.tree_util.tree_structure(lbfgs.init(state.params))
    return jax.tree_util.tree_structure(state.opt_state) != ref


def _save(path: Path, state: TrainState, config: TrainConfig, history, eval_steps, eval_vals, lbfgs):
    hist = np.concatenate(history, axis=0) if history else np.zeros((0, 0))
    phase = "first" if _is_first_phase(state, lbfgs) else "lbfgs"
    meta = {"step": int(state.step), "phase": phase, "config": config.to_dict()}
    extra = {
        "loss_history": hist,
        "eval_steps": np.asarray(eval_steps, np.int64),
        "eval_rel_l2": np.asarray(eval_vals, np.float64),
    }
    save_checkpoint(path, state, meta, extra)


def _resume(path: Path, fresh: TrainState, lbfgs, config: TrainConfig):
    """Load the checkpoint at ``path`` into the structure of ``fresh`` (or of its L-BFGS variant)."""
    like = fresh
    if read_checkpoint_meta(path).get("phase") == "lbfgs":
        like = TrainState(fresh.params, lbfgs.init(fresh.params), fresh.key, fresh.points, fresh.step)
    state, _, extra = load_checkpoint(path, like)
    hist = extra.get("loss_history")
    history = [hist] if hist is not None and hist.size else []
    eval_steps = [int(s) for s in extra.get("eval_steps", [])]
    eval_vals = [float(v) for v in extra.get("eval_rel_l2", [])]
    return state, history, eval_steps, eval_vals


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, smoothing=0.3)
