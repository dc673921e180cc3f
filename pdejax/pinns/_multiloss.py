"""Multi-loss optimizers for PINNs: ConFIG, M-ConFIG, MultiAdam, learning-rate annealing and PCGrad.

They follow optax (``init(params) -> state``, ``update(grads, state, params, ...) -> (updates, state)``) but
receive the *per-term* gradients: a pytree whose leaves have a leading axis of size ``m`` (one slice per
named loss term, as ``jax.jacrev`` of the loss vector gives), plus the loss values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

LENGTHS = ("projection", "min", "max", "mean", "geometric", "harmonic")


class MultiLossTransformation(NamedTuple):
    """An optax-style optimizer that consumes per-term gradients.

    Attributes:
        init: ``(params, n_terms) -> state``.
        update: ``(grads, state, params, losses) -> (updates, state)``; ``grads`` is stacked per term
            (leading axis ``m``, or for ``one_term`` optimizers the gradient of the single term
            ``select(state)``), ``losses`` the ``(m,)`` loss values.
        select: for optimizers that need one term's gradient per step (M-ConFIG): ``state -> index``;
            ``None`` when every term's gradient is needed.
    """

    init: Callable
    update: Callable
    select: Callable | None = None
    name: str = "multi-loss"


def _flat(grads) -> tuple[Float[Array, "m n"], Callable]:
    """Stack per-term gradient pytrees (leading axis m) into an ``(m, n)`` matrix and an unflattener."""
    one = jax.tree_util.tree_map(lambda x: x[0], grads)
    _, unravel = ravel_pytree(one)
    mat = jax.vmap(lambda g: ravel_pytree(g)[0])(grads)
    return mat, unravel


def _unit_rows(g: Float[Array, "m n"]) -> Float[Array, "m n"]:
    norm = jnp.linalg.norm(g, axis=1, keepdims=True)
    return jnp.where(norm > 0, g / jnp.where(norm > 0, norm, 1), 0.0)


def _rescale(direction, grads, length: str):
    """Scale the unit vector of ``direction`` by ConFIG's length model."""
    n = jnp.linalg.norm(direction)
    unit = jnp.where(n > 0, direction / jnp.where(n > 0, n, 1), 0.0)
    if length == "projection":
        return unit * jnp.sum(grads @ unit)
    norms = jnp.linalg.norm(grads, axis=1)
    proj = jnp.sum(_unit_rows(grads) @ unit)
    scale = {
        "min": jnp.min(norms),
        "max": jnp.max(norms),
        "mean": jnp.mean(norms),
        "geometric": jnp.exp(jnp.mean(jnp.log(norms))),
        "harmonic": norms.shape[0] / jnp.sum(1.0 / norms),
    }[length]
    return unit * proj * scale


def config_direction(
    grads: Float[Array, "m n"], weights: Float[Array, " m"] | None = None, length: str = "projection"
) -> Float[Array, " n"]:
    """The ConFIG conflict-free update direction for stacked per-loss gradients ``g_i`` (rows).

    With unit gradients ``u_i = g_i / |g_i|`` (zero rows stay zero), the direction solves ``U v = w`` in
    the least-squares / minimum-norm sense (``v = pinv(U) w``, equal weights ``w = 1`` by default), so it
    makes equal angles with every gradient (a positive dot product with each whenever such a direction
    exists). Its unit vector ``v_hat`` is scaled by the length model: ``'projection'`` (default) gives
    ``(sum_i g_i . v_hat) v_hat``; ``'min'``, ``'max'``, ``'mean'``, ``'geometric'``, ``'harmonic'`` give
    ``(sum_i u_i . v_hat) T v_hat`` with ``T`` that statistic of the gradient norms.
    Liu, Chu & Thuerey, "ConFIG: Towards Conflict-free Training of Physics Informed Neural Networks",
    ICLR 2025; matches ``conflictfree.grad_operator.ConFIG_update``.

    Args:
        grads: ``(m, n)`` per-loss gradients; weights: ``(m,)`` target cosines (relative).
        length: the length model.

    Returns:
        ``(n,)`` update direction (to be followed like a gradient).
    """
    if length not in LENGTHS:
        raise ValueError(f"unknown ConFIG length model {length!r}; choose one of {LENGTHS}")
    grads = jnp.asarray(grads)
    if grads.ndim != 2:
        raise ValueError(f"grads must be a stacked (m, n) array, got shape {grads.shape}")
    w = jnp.ones(grads.shape[0], grads.dtype) if weights is None else jnp.asarray(weights, grads.dtype)
    units = _unit_rows(grads)
    # pinv(U) w through the thin QR of U^T = Q R: U = R^T Q^T, so pinv(U) = Q pinv(R^T), whose m x m pinv
    # has U's singular values (the same cut-off as pinv(U)'s default). An SVD of the wide (m, n) matrix
    # inside the training loop cost as much as the rest of a ConFIG step (measured on a 50x5 MLP: 14.3 vs
    # 7.7 ms per step for PCGrad, which shares everything else).
    q, r = jnp.linalg.qr(units.T)
    cutoff = 10 * max(units.shape) * jnp.finfo(units.dtype).eps
    direction = q @ (jnp.linalg.pinv(r.T, rtol=cutoff) @ w)
    return _rescale(direction, grads, length)


def config_direction_two(g1: Float[Array, " n"], g2: Float[Array, " n"], weights=(1.0, 1.0), length="projection"):
    """Closed form of ConFIG for two gradients: the sum of each gradient's unit component orthogonal to the
    other, ``o1 + (w1/w2-weighted) o2`` with ``o1 = unit(g2 - (g2 . u1) u1)``, ``o2 = unit(g1 - (g1 . u2) u2)``,
    scaled by the length model (ConFIG paper, Sec. 3.2). Undefined for (anti)parallel gradients, where
    :func:`config_direction` should be used."""
    u1, u2 = g1 / jnp.linalg.norm(g1), g2 / jnp.linalg.norm(g2)
    o1 = g2 - jnp.dot(g2, u1) * u1
    o2 = g1 - jnp.dot(g1, u2) * u2
    o1, o2 = o1 / jnp.linalg.norm(o1), o2 / jnp.linalg.norm(o2)
    coef1 = jnp.dot(o2, u1) / (weights[0] / weights[1] * jnp.dot(o1, u2))
    return _rescale(coef1 * o1 + o2, jnp.stack([g1, g2]), length)


def _direction_transform(direction_fn: Callable, inner: optax.GradientTransformation, name: str):
    def init(params, n_terms):
        return inner.init(params)

    def update(grads, state, params, losses=None):
        mat, unravel = _flat(grads)
        combined = unravel(direction_fn(mat).astype(mat.dtype))
        return inner.update(combined, state, params)

    return MultiLossTransformation(init, update, name=name)


def config(
    learning_rate: float | optax.Schedule = 1e-3,
    *,
    inner: optax.GradientTransformation | None = None,
    weights: Float[Array, " m"] | None = None,
    length: str = "projection",
) -> MultiLossTransformation:
    """ConFIG: the conflict-free direction of the per-term gradients fed to ``inner`` (Adam by default)."""
    if length not in LENGTHS:
        raise ValueError(f"unknown ConFIG length model {length!r}; choose one of {LENGTHS}")
    inner = inner or optax.adam(learning_rate)
    return _direction_transform(lambda g: config_direction(g, weights, length), inner, "config")


class MConfigState(NamedTuple):
    m: Any  # per-term first moments, leading axis m
    counts: Array  # per-term update counts t_i
    step: Array  # global step (after every term has been seen once)
    prev: Any  # previous pseudo first moment
    s: Any  # shared second moment
    turn: Array  # index of the term whose gradient is taken next


def mconfig(
    learning_rate: float | optax.Schedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weights: Float[Array, " m"] | None = None,
    length: str = "projection",
) -> MultiLossTransformation:
    """M-ConFIG: ConFIG on per-term momenta, one term's gradient per step in turn (round robin).

    Per term ``i`` a first moment ``m_i = b1 m_i + (1 - b1) g_i`` is updated when that term's gradient is
    taken; the bias-corrected moments ``m_i / (1 - b1^{t_i})`` are combined by :func:`config_direction`;
    a shared second moment of the implied "pseudo gradient" normalises the result, Adam-style, and it is
    applied with step ``learning_rate`` (the reference implementation's ``PseudoMomentumOperator`` with
    SGD). Until every term has been seen once the update is zero.
    """

    def init(params, n_terms):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        stacked = jax.tree_util.tree_map(lambda z: jnp.zeros((n_terms,) + z.shape, z.dtype), params)
        return MConfigState(
            stacked, jnp.zeros(n_terms, jnp.int32), jnp.zeros((), jnp.int32), zeros, zeros, jnp.zeros((), jnp.int32)
        )

    def select(state):
        return state.turn

    def update(grad_i, state: MConfigState, params, losses=None):
        i = state.turn
        m = jax.tree_util.tree_map(lambda mm, g: mm.at[i].set(b1 * mm[i] + (1 - b1) * g), state.m, grad_i)
        counts = state.counts.at[i].add(1)
        ready = jnp.all(counts > 0)
        step = state.step + ready.astype(jnp.int32)
        mat, unravel = _flat(m)
        t = jnp.maximum(step, 1).astype(mat.dtype)
        corr = 1 - b1 ** counts.astype(mat.dtype)
        mat = mat / jnp.where(corr > 0, corr, 1.0)[:, None]
        gc = config_direction(mat, weights, length)
        fm = gc * (1 - b1**t)
        prev, _ = ravel_pytree(state.prev)
        fg = (fm - b1 * prev) / (1 - b1)
        s_flat, _ = ravel_pytree(state.s)
        s_new = b2 * s_flat + (1 - b2) * fg**2
        s_hat = s_new / (1 - b2**t)
        direction = gc / (jnp.sqrt(s_hat) + eps)
        lr = learning_rate(state.step) if callable(learning_rate) else learning_rate
        upd = jnp.where(ready, -lr * direction, 0.0)
        new = MConfigState(
            m,
            counts,
            step,
            jax.tree_util.tree_map(lambda a, b: jnp.where(ready, b, a), state.prev, unravel(fm)),
            jax.tree_util.tree_map(lambda a, b: jnp.where(ready, b, a), state.s, unravel(s_new)),
            (i + 1) % counts.shape[0],
        )
        return unravel(upd), new

    return MultiLossTransformation(init, update, select, "mconfig")


class MultiAdamState(NamedTuple):
    m: Any
    v: Any
    count: Array


def multiadam(
    learning_rate: float | optax.Schedule = 1e-3,
    b1: float = 0.99,
    b2: float = 0.99,
    eps: float = 1e-8,
    group_weights: Float[Array, " m"] | None = None,
    groups: tuple[tuple[int, ...], ...] | None = None,
) -> MultiLossTransformation:
    """MultiAdam (Yao et al., ICML 2023): Adam moments per loss group, combined after normalisation.

    For each group ``k``: ``m_k = b1 m_k + (1 - b1) g_k``, ``v_k = b2 v_k + (1 - b2) g_k^2``; the update is
    ``-lr / (1 - b1^t) * sum_k w_k m_k / (sqrt(v_k / (1 - b2^t)) + eps)`` with ``w_k = 1/K`` (the paper's
    defaults ``b1 = b2 = 0.99``). Each group's step is invariant to that group's scale, so none dominates.

    Args:
        groups: term indices per group (a group's gradient is the sum of its terms'); ``None``: one group
            per term. The paper groups the PDE residual(s) apart from the boundary/initial terms, which is
            what ``pdejax.pinns.solve`` passes.
    """
    if groups is not None:
        groups = tuple(tuple(int(i) for i in g) for g in groups)
        if not groups or any(not g for g in groups):
            raise ValueError(f"multiadam groups must be non-empty tuples of term indices, got {groups}")

    def regroup(grads):
        if groups is None:
            return grads
        return jax.tree_util.tree_map(lambda g: jnp.stack([g[jnp.asarray(ix)].sum(axis=0) for ix in groups]), grads)

    def init(params, n_terms):
        if groups is not None:
            if max(max(g) for g in groups) >= n_terms:
                raise ValueError(f"multiadam groups {groups} refer to terms beyond the {n_terms} there are")
            n_terms = len(groups)
        zeros = jax.tree_util.tree_map(lambda p: jnp.zeros((n_terms,) + p.shape, p.dtype), params)
        return MultiAdamState(zeros, zeros, jnp.zeros((), jnp.int32))

    def update(grads, state: MultiAdamState, params, losses=None):
        grads = regroup(grads)
        n_terms = jax.tree_util.tree_leaves(grads)[0].shape[0]
        m = jax.tree_util.tree_map(lambda a, g: b1 * a + (1 - b1) * g, state.m, grads)
        v = jax.tree_util.tree_map(lambda a, g: b2 * a + (1 - b2) * g * g, state.v, grads)
        t = state.count + 1
        w = jnp.full((n_terms,), 1.0 / n_terms) if group_weights is None else jnp.asarray(group_weights)
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate

        def leaf(mm, vv):
            tt = t.astype(mm.dtype)
            w_b = w.astype(mm.dtype).reshape((-1,) + (1,) * (mm.ndim - 1))
            step = jnp.sum(w_b * mm / (jnp.sqrt(vv / (1 - b2**tt)) + eps), axis=0)
            return -(lr / (1 - b1**tt)) * step

        return jax.tree_util.tree_map(leaf, m, v), MultiAdamState(m, v, t)

    return MultiLossTransformation(init, update, name="multiadam")


def pcgrad_direction(grads: Float[Array, "m n"]) -> Float[Array, " n"]:
    """PCGrad (Yu et al., NeurIPS 2020): each ``g_i`` is projected onto the normal plane of every other
    original ``g_j`` it conflicts with (``g_i . g_j < 0``), in a fixed order ``j != i``; the projected
    gradients are summed (as ``conflictfree.grad_operator.PCGradOperator``)."""
    grads = jnp.asarray(grads)
    m = grads.shape[0]
    out = []
    for i in range(m):
        gi = grads[i]
        for j in range(m):
            if j == i:
                continue
            gj = grads[j]
            dot = jnp.dot(gi, gj)
            gi = jnp.where(dot < 0, gi - dot / jnp.maximum(jnp.dot(gj, gj), 1e-30) * gj, gi)
        out.append(gi)
    return jnp.sum(jnp.stack(out), axis=0)


def pcgrad(learning_rate: float | optax.Schedule = 1e-3, *, inner=None) -> MultiLossTransformation:
    """PCGrad's combined gradient fed to ``inner`` (Adam by default)."""
    return _direction_transform(pcgrad_direction, inner or optax.adam(learning_rate), "pcgrad")


class LRAState(NamedTuple):
    inner: Any
    weights: Array
    count: Array


def lra(
    learning_rate: float | optax.Schedule = 1e-3,
    *,
    reference: tuple[int, ...] = (0,),
    alpha: float = 0.1,
    every: int = 10,
    inner=None,
) -> MultiLossTransformation:
    """Learning-rate annealing (Wang, Teng & Perdikaris, SIAM J. Sci. Comput. 43, 2021): weights for the
    non-reference terms from gradient statistics, ``lambda_i_hat = max |grad L_ref| / mean |grad (lambda_i L_i)|``,
    smoothed as ``lambda_i = (1 - alpha) lambda_i + alpha lambda_i_hat`` every ``every`` steps (as the
    authors' code: ``alpha = 0.1`` on the new value, every 10 steps, starting from 1). The reference
    terms (the PDE residuals, indices ``reference``) keep weight 1. The weighted sum goes to ``inner``
    (Adam by default). ``state.weights`` holds the current weights."""
    inner = inner or optax.adam(learning_rate)

    def init(params, n_terms):
        dtype = jax.tree_util.tree_leaves(params)[0].dtype
        return LRAState(inner.init(params), jnp.ones(n_terms, dtype), jnp.zeros((), jnp.int32))

    def update(grads, state: LRAState, params, losses=None):
        mat, unravel = _flat(grads)
        n_terms = mat.shape[0]
        ref = jnp.zeros(n_terms, bool).at[jnp.asarray(reference)].set(True)
        lam = state.weights
        top = jnp.max(jnp.where(ref[:, None], jnp.abs(mat), 0.0))
        mean = jnp.mean(jnp.abs(mat), axis=1) * lam
        hat = top / jnp.maximum(mean, 1e-30)
        new = (1 - alpha) * lam + alpha * hat
        lam = jnp.where(ref, 1.0, jnp.where(state.count % every == 0, new, lam))
        updates, inner_state = inner.update(unravel(lam @ mat), state.inner, params)
        return updates, LRAState(inner_state, lam, state.count + 1)

    return MultiLossTransformation(init, update, name="lra")
