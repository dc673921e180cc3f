"""Denoising diffusion models (DDPM training, DDPM/DDIM sampling) over grid fields, with the physics-informed
loss of PIDM (Bastek, Sun, Kochmann, "Physics-Informed Diffusion Models", ICLR 2025)."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._io import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from .._sharding import data_mesh, place_leading, place_replicated
from ..pinns._multiloss import config_direction
from ._train import apply_batch, channel_stats
from ._unet import ChannelSplit

# ---------------------------------------------------------------------------------------------- schedules


class NoiseSchedule(eqx.Module):
    """The forward noising ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` for steps ``t = 0..T-1``.

    Defined by ``abar_t`` (``alpha_bar``), which must lie in ``(0, 1)`` and decrease strictly: the noise
    grows with every step. ``beta_t = 1 - abar_t / abar_{t-1}`` (``abar_{-1} = 1``); the reverse step's
    variance is the posterior variance ``betatilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)`` (Ho et al.,
    NeurIPS 2020), with ``betatilde_0`` (zero) replaced by ``betatilde_1`` where it is used as a variance.
    """

    alpha_bar: tuple[float, ...] = eqx.field(static=True)
    name: str = eqx.field(static=True, default="custom")

    def __check_init__(self):
        ab = np.asarray(self.alpha_bar, np.float64)
        if ab.ndim != 1 or ab.size < 2:
            raise ValueError(f"a noise schedule needs at least 2 steps, got {ab.size}")
        if not np.all(np.isfinite(ab)) or np.any(ab <= 0) or np.any(ab >= 1):
            raise ValueError("alpha_bar (the signal fraction of each step) must lie in (0, 1)")
        rising = np.flatnonzero(np.diff(ab) >= 0)
        if rising.size:
            i = int(rising[0])
            raise ValueError(
                f"non-monotone noise schedule: the noise must grow with every step (alpha_bar decreasing "
                f"strictly), but alpha_bar[{i + 1}] = {ab[i + 1]:.6g} >= alpha_bar[{i}] = {ab[i]:.6g}"
            )

    @classmethod
    def from_betas(cls, betas, name: str = "custom") -> NoiseSchedule:
        """The schedule with per-step variances ``betas`` (each in ``(0, 1)``)."""
        b = np.asarray(betas, np.float64)
        if b.ndim != 1 or not np.all(np.isfinite(b)) or np.any(b <= 0) or np.any(b >= 1):
            raise ValueError("betas must be a 1D array of values in (0, 1): the noise must grow with every step")
        return cls(tuple(np.cumprod(1.0 - b).tolist()), name)

    @property
    def steps(self) -> int:
        return len(self.alpha_bar)

    def tables(self, dtype=None) -> dict[str, Array]:
        """Per-step constants as arrays of shape ``(T,)``: ``abar``, ``abar_prev``, ``beta``, ``var`` (posterior
        variance, clipped at t = 0), ``coef_x0``/``coef_xt`` (posterior mean ``coef_x0 x0 + coef_xt x_t``), ``snr``."""
        ab = np.asarray(self.alpha_bar, np.float64)
        prev = np.concatenate([[1.0], ab[:-1]])
        beta = 1.0 - ab / prev
        var = beta * (1.0 - prev) / (1.0 - ab)
        var[0] = var[1]
        t = dict(
            abar=ab,
            abar_prev=prev,
            beta=beta,
            var=var,
            coef_x0=beta * np.sqrt(prev) / (1.0 - ab),
            coef_xt=(1.0 - prev) * np.sqrt(1.0 - beta) / (1.0 - ab),
            snr=ab / (1.0 - ab),
        )
        dtype = dtype or jnp.zeros(()).dtype
        return {k: jnp.asarray(v, dtype) for k, v in t.items()}


def linear_schedule(steps: int = 100, beta_start: float | None = None, beta_end: float | None = None) -> NoiseSchedule:
    """Linearly increasing ``beta_t`` (Ho et al. 2020); the defaults ``1e-4 .. 2e-2`` are for 1000 steps and
    are scaled by ``1000 / steps`` (Nichol & Dhariwal 2021), so the final noise level is similar for any ``steps``."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    scale = 1000.0 / steps
    lo = 1e-4 * scale if beta_start is None else beta_start
    hi = min(2e-2 * scale, 0.999) if beta_end is None else beta_end
    return NoiseSchedule.from_betas(np.linspace(lo, hi, steps), "linear")


def cosine_schedule(steps: int = 100, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
    """``abar_t = cos^2(((t+1)/T + s) / (1 + s) pi/2) / cos^2(s / (1 + s) pi/2)`` with ``beta_t <= max_beta``
    (Nichol & Dhariwal, ICML 2021; the schedule of the PIDM paper's code)."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    x = np.arange(steps + 1) / steps
    f = np.cos((x + s) / (1 + s) * np.pi / 2) ** 2
    betas = np.clip(1.0 - f[1:] / f[:-1], 1e-8, max_beta)
    return NoiseSchedule.from_betas(betas, "cosine")


SCHEDULES: dict[str, Callable[[int], NoiseSchedule]] = {"linear": linear_schedule, "cosine": cosine_schedule}


def make_schedule(name: str, steps: int) -> NoiseSchedule:
    """The schedule ``name`` (one of :data:`SCHEDULES`) with ``steps`` diffusion steps."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown noise schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](steps)


def _col(v: Array, x: Array) -> Array:
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def q_sample(schedule: NoiseSchedule, x0: Float[Array, "b ..."], t: Int[Array, " b"], eps: Float[Array, "b ..."]):
    """Forward noising ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` per sample; shapes ``(b, ...)``."""
    ab = schedule.tables(x0.dtype)["abar"][t]
    return _col(jnp.sqrt(ab), x0) * x0 + _col(jnp.sqrt(1 - ab), x0) * eps


def x0_from_eps(schedule: NoiseSchedule, xt: Float[Array, "b ..."], t: Int[Array, " b"], eps: Float[Array, "b ..."]):
    """The clean sample implied by a noise estimate: ``(x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``."""
    ab = schedule.tables(xt.dtype)["abar"][t]
    return (xt - _col(jnp.sqrt(1 - ab), xt) * eps) / _col(jnp.sqrt(ab), xt)


def eps_from_x0(schedule: NoiseSchedule, xt: Float[Array, "b ..."], t: Int[Array, " b"], x0: Float[Array, "b ..."]):
    """The noise implied by a clean-sample estimate: ``(x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)``."""
    ab = schedule.tables(xt.dtype)["abar"][t]
    return (xt - _col(jnp.sqrt(ab), xt) * x0) / _col(jnp.sqrt(1 - ab), xt)


# ---------------------------------------------------------------------------------------------- model

PREDICTIONS = ("x0", "eps", "v")


class DiffusionModel(eqx.Module):
    """A denoiser of ``c``-channel fields: ``net(x_t, t)`` predicts the clean field (``prediction='x0'``, as in
    the PIDM paper's code), the noise (``'eps'``, Ho et al.) or the velocity ``v = sqrt(abar) eps -
    sqrt(1 - abar) x0`` (``'v'``, Salimans & Ho 2022); both estimates follow from any. With ``'v'``,
    ``x0_hat = sqrt(abar) x_t - sqrt(1 - abar) v_hat``: at low noise the input passes through exactly and the
    network's error reaches the estimate scaled by the noise level (0.025 at the first cosine step of 100),
    where an ``x0`` network must reproduce its input to that precision itself.

    The diffusion runs on fields normalised per channel (``(x - mean) / std`` of the training data); samples
    and the physics are in physical units. ``net``: a backbone with ``net(x, t)`` on ``(c, *grid)`` fields
    (:class:`UNet`, :class:`FNOBackbone`); ``field_shape``: ``(c, *grid)``.
    """

    net: Any
    schedule: NoiseSchedule
    field_shape: tuple[int, ...] = eqx.field(static=True)
    prediction: str = eqx.field(static=True, default="x0")
    mean: tuple[float, ...] = eqx.field(static=True, default=())
    std: tuple[float, ...] = eqx.field(static=True, default=())

    def __check_init__(self):
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        check = getattr(self.net, "check_shape", None)
        if check is not None:
            check(tuple(self.field_shape))
        c = self.field_shape[0]
        if len(self.mean) != c or len(self.std) != c:
            raise ValueError(f"mean and std need one value per channel ({c}); got {len(self.mean)}, {len(self.std)}")

    def check(self, x) -> None:
        """Raise ``ValueError`` unless ``x`` has shape ``(b, *field_shape)``."""
        if x.ndim != len(self.field_shape) + 1 or tuple(x.shape[1:]) != tuple(self.field_shape):
            raise ValueError(
                f"fields of shape {tuple(x.shape)} do not match the model, which takes (batch, "
                f"{', '.join(map(str, self.field_shape))})"
            )

    def _stats(self, x):
        d = len(self.field_shape) - 1
        shape = (1, -1) + (1,) * d
        return jnp.asarray(self.mean, x.dtype).reshape(shape), jnp.asarray(self.std, x.dtype).reshape(shape)

    def normalise(self, x: Float[Array, "b c *grid"]) -> Float[Array, "b c *grid"]:
        m, s = self._stats(x)
        return (x - m) / s

    def denormalise(self, z: Float[Array, "b c *grid"]) -> Float[Array, "b c *grid"]:
        m, s = self._stats(z)
        return z * s + m

    def denoise(self, xt: Float[Array, "b c *grid"], t: Int[Array, " b"]) -> tuple[Array, Array]:
        """The network's estimates ``(x0_hat, eps_hat)`` of the clean field and the noise (normalised units)."""
        out = apply_batch(self.net, xt, t.astype(xt.dtype), in_axes=(0, 0))
        if self.prediction == "x0":
            return out, eps_from_x0(self.schedule, xt, t, out)
        if self.prediction == "v":
            ab = self.schedule.tables(xt.dtype)["abar"][t]
            a, b = _col(jnp.sqrt(ab), xt), _col(jnp.sqrt(1 - ab), xt)
            return a * xt - b * out, b * xt + a * out
        return x0_from_eps(self.schedule, xt, t, out), out


NORMALISATIONS = ("channel", "none")


def build_diffusion(
    net, schedule: NoiseSchedule, fields: np.ndarray, prediction: str = "x0", normalise: str = "channel"
) -> DiffusionModel:
    """A :class:`DiffusionModel` for ``fields`` (``(n, c, *grid)``, physical units).

    ``normalise='channel'`` diffuses ``(x - mean) / std`` per channel of ``fields``; ``'none'`` diffuses the
    fields in their own units, as the PIDM authors' code does: a channel much smaller than the unit noise (the
    Darcy pressure, std ~0.07) is then hidden by the noise until the last few steps of the reverse process.
    """
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")
    if normalise == "channel":
        mean, std = channel_stats(np.asarray(fields))
    else:
        c = fields.shape[1]
        mean, std = (0.0,) * c, (1.0,) * c
    return DiffusionModel(net, schedule, tuple(fields.shape[1:]), prediction, mean, std)


# ---------------------------------------------------------------------------------------------- physics


@dataclasses.dataclass(frozen=True)
class FieldPhysics:
    """Constraints a generated field ``x`` (``(c, *grid)``, physical units) should satisfy.

    Attributes:
        equality: ``x -> r``, any array of residuals that vanish where the PDE (and boundary conditions)
            hold, e.g. the finite-difference residual of the governing equation.
        inequality: ``x -> g``, an array that is ``<= 0`` where the constraints hold (e.g. ``K_min - K``);
            only its positive part is penalised.
        name: for messages and metrics.
        through: the channels whose estimate the constraints' gradients train (None: all). ``(1,)`` for
            Darcy's ``(K, p)`` lets the residual correct the pressure given the permeability, leaving the
            permeability's distribution to the data term (otherwise lowering ``K`` is a cheap way to shrink
            ``K grad p`` residuals, and the generated permeabilities drift low).
    """

    equality: Callable[[Array], Array] | None = None
    inequality: Callable[[Array], Array] | None = None
    name: str = "custom"
    through: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.equality is None and self.inequality is None:
            raise ValueError("FieldPhysics needs an equality or an inequality constraint")

    def terms(self, x: Float[Array, " c *grid"]) -> tuple[Array, Array]:
        """``(r, max(g, 0))`` flattened (empty arrays for a missing constraint)."""
        z = jnp.zeros((0,), x.dtype)
        r = jnp.ravel(self.equality(x)) if self.equality is not None else z
        g = jax.nn.relu(jnp.ravel(self.inequality(x))) if self.inequality is not None else z
        return r, g

    def mean_abs_residual(self, fields: np.ndarray, batch: int = 64) -> np.ndarray:
        """Mean ``|r|`` of each field (``(n, c, *grid)`` -> ``(n,)``), the PIDM paper's metric."""
        if self.equality is None:
            raise ValueError(f"{self.name}: no equality constraint to evaluate")
        f = _mean_abs_residual_fn(self)
        return np.concatenate([np.asarray(f(jnp.asarray(fields[i : i + batch]))) for i in range(0, len(fields), batch)])


@functools.lru_cache(maxsize=32)
def _mean_abs_residual_fn(physics: FieldPhysics):
    # one compiled function per physics object, reused by every evaluation
    return jax.jit(jax.vmap(lambda x: jnp.mean(jnp.abs(physics.equality(x)))))


def diffusion_loss(
    model: DiffusionModel,
    x0: Float[Array, "b c *grid"],
    key: PRNGKeyArray,
    physics: FieldPhysics | None = None,
    physics_weight: float = 0.0,
    inequality_weight: float = 0.0,
    min_snr: float | None = 5.0,
    snr_floor: float | None = None,
    low_noise_mix: float = 0.0,
) -> tuple[Float[Array, ""], Float[Array, " 4"]]:
    """One Monte-Carlo estimate of the (physics-informed) denoising loss on a batch of normalised fields.

    With random steps ``t`` and noise ``eps``, ``x_t = q(x0, t, eps)`` and the network's estimates
    ``(x0_hat, eps_hat)``:

    * data term: ``|eps_hat - eps|^2`` (``prediction='eps'``, Ho et al.), or ``|x0_hat - x0|^2`` weighted by
      ``min(SNR_t, min_snr)`` (``'x0'`` and ``'v'``, min-SNR weighting of Hang et al. 2023, as in the PIDM
      code; for ``'v'`` that is ``min(SNR, 5) / (1 + SNR) |v_hat - v|^2``, the same objective), and with
      ``snr_floor`` at least that (``max(SNR_t, 1)`` is the truncated-SNR weighting of Salimans & Ho 2022): the
      plain weight vanishes at high noise, where a field's large scales are decided;
    * PIDM term (Bastek et al., eq. 8): the PDE residual ``r`` of ``x0_hat`` in physical units is a virtual
      observation ``r = 0`` with variance ``betatilde_t`` (the reverse step's), so its negative
      log-likelihood adds ``physics_weight * |r|^2 / (2 betatilde_t)`` — residuals count most where the
      estimate should be nearly clean. Inequalities ``g <= 0`` add ``inequality_weight * |max(g,0)|^2 /
      (2 betatilde_t)``. Squares are means over the field's entries.

    ``low_noise_mix`` ``lam`` in ``[0, 1)``: draw the steps from ``q_t = (1 - lam) / T + lam w_t / sum(w)``
    with ``w_t = 1 / betatilde_t`` (the PIDM term's weight) instead of uniformly, and weight each field's
    terms by ``(1 / T) / q_t``: the same expected loss, but the lowest-noise steps, whose tiny variance makes
    their residual terms ~20x heavier than the average step's (``T = 100`` cosine: steps 0 and 1 carry 38%
    of the total weight), are in 97% of the batches of 16 at ``lam = 0.5`` instead of one in four, so the
    physics gradient is a steady signal rather than rare spikes.
    Those steps are also the ones that decide the samples' residual (the last reverse step returns their
    ``x0_hat``). ``mean |r|`` in the returned terms is over the drawn fields, unweighted.

    Returns:
        The batch mean of the total, and the batch means of (data term, residual term, inequality term,
        mean ``|r|``).
    """
    T = model.schedule.steps
    tables = model.schedule.tables(x0.dtype)
    kt, ke = jax.random.split(key)
    if low_noise_mix > 0:
        q = step_distribution(model.schedule, low_noise_mix, x0.dtype)
        t = jax.random.choice(kt, T, (x0.shape[0],), p=q)
        iw = (1.0 / T) / q[t]
    else:
        t = jax.random.randint(kt, (x0.shape[0],), 0, T)
        iw = jnp.ones((x0.shape[0],), x0.dtype)
    eps = jax.random.normal(ke, x0.shape, x0.dtype)
    xt = q_sample(model.schedule, x0, t, eps)
    x0_hat, eps_hat = model.denoise(xt, t)
    axes = tuple(range(1, x0.ndim))
    if model.prediction != "eps":
        w = tables["snr"][t] if min_snr is None else jnp.minimum(tables["snr"][t], min_snr)
        if snr_floor is not None:
            w = jnp.maximum(w, snr_floor)
        data = w * jnp.mean((x0_hat - x0) ** 2, axes)
    else:
        data = jnp.mean((eps_hat - eps) ** 2, axes)
    zero = jnp.zeros_like(data)
    eq, ineq, rabs = zero, zero, zero
    if physics is not None and (physics_weight > 0 or inequality_weight > 0):
        x = model.denormalise(x0_hat)
        if physics.through is not None:
            keep = np.isin(np.arange(x.shape[1]), physics.through).reshape((1, -1) + (1,) * (x.ndim - 2))
            x = jnp.where(keep, x, jax.lax.stop_gradient(x))
        r, g = jax.vmap(physics.terms)(x)
        var = tables["var"][t]
        if r.shape[1]:
            eq = physics_weight * 0.5 * jnp.mean(r**2, 1) / var
            rabs = jnp.mean(jnp.abs(r), 1)
        if g.shape[1]:
            ineq = inequality_weight * 0.5 * jnp.mean(g**2, 1) / var
    data, eq, ineq = iw * data, iw * eq, iw * ineq
    total = data + eq + ineq
    return jnp.mean(total), jnp.stack([jnp.mean(data), jnp.mean(eq), jnp.mean(ineq), jnp.mean(rabs)])


def check_low_noise_mix(low_noise_mix: float) -> None:
    """Raise ``ValueError`` unless ``0 <= low_noise_mix < 1`` (at 1 the uniform share, and so the weight's
    bound, vanishes)."""
    if not 0 <= low_noise_mix < 1:
        raise ValueError(f"low_noise_mix must be in [0, 1), got {low_noise_mix}")


def check_combine(combine: str) -> None:
    """Raise ``ValueError`` unless ``combine`` is one of :data:`COMBINE`."""
    if combine not in COMBINE:
        raise ValueError(f"combine must be one of {COMBINE}, got {combine!r}")


def step_distribution(schedule: NoiseSchedule, low_noise_mix: float, dtype=None) -> Float[Array, " T"]:
    """The training steps' distribution ``q_t = (1 - lam) / T + lam w_t / sum(w)``, ``w_t = 1 / betatilde_t``,
    ``(T,)`` (``lam = low_noise_mix``; see :func:`diffusion_loss`)."""
    check_low_noise_mix(low_noise_mix)
    var = schedule.tables(dtype)["var"]
    w = 1.0 / var
    return (1.0 - low_noise_mix) / var.shape[0] + low_noise_mix * w / jnp.sum(w)


# ---------------------------------------------------------------------------------------------- training


class DiffusionTrainingDiverged(RuntimeError):
    """A loss term became NaN/Inf; the last finite checkpoint (if any) was kept."""


@dataclasses.dataclass(frozen=True)
class DiffusionConfig:
    """Settings of :func:`train_diffusion`.

    Attributes:
        steps: optimisation steps; batch_size: fields per step (drawn at random with replacement).
        learning_rate: Adam's peak rate, reached after ``warmup`` steps and decayed to 10% by a cosine over
            ``decay_steps`` (default: ``steps``); grad_clip: gradient-norm clipping (1 in the PIDM code).
        clip_per_backbone: with one backbone per channel (:class:`ChannelSplit`), clip each backbone's gradient
            to ``grad_clip`` on its own instead of the global norm. PIDM's residual gradient into the pressure's
            network is 50-100x the permeability network's data gradient (median over the first 300 steps at
            c = 1e-2), so a global clip scales the permeability's updates by whatever the pressure's physics
            term does at that step. One backbone: the same as the global clip.
        ema_decay: parameters used for sampling are an exponential moving average (0: none).
        ema_warmup: the average's decay at step ``k`` is ``min(ema_decay, (1 + k) / (10 + k))`` (the usual
            warm-up), so short runs do not sample from weights that still hold a share of the random
            initialisation (with a fixed 0.999 that share is ``0.999^k``: 13% after 2000 steps); False: fixed.
        physics_weight: ``c`` of the residual likelihood (the paper's ``c_residual``; 0: a plain DDPM).
        inequality_weight: weight of inequality constraints. min_snr, snr_floor: the x0-loss weight's cap and
            floor (None: none; see :func:`diffusion_loss`). low_noise_mix: share of training steps drawn in
            proportion to the PIDM term's weight, importance-weighted (0: uniform; see :func:`diffusion_loss`).
        combine: how the data term's and the physics terms' gradients make the update: ``'sum'`` (the
            gradient of the total loss, the paper's) or ``'config'``: the ConFIG conflict-free direction of
            the two (:func:`pdejax.pinns.config_direction`; Liu, Chu & Thuerey, ICLR 2025), which follows
            neither term against the other. At the lowest noise levels PIDM's residual gradient is ~60x the
            data gradient and opposes it (cosine -0.4, measured at 64x64), so the summed step trades the
            estimate's fit to the data for residual. Costs a second backward pass. ``'config_per_backbone'``:
            with one backbone per channel (:class:`ChannelSplit`), ConFIG within each backbone's parameters
            on its own, so a backbone the physics term does not reach (the permeability's, with the residual
            trained through the pressure) follows its data gradient exactly as without physics; one
            backbone: the same as ``'config'``.
        chunk: steps between progress-bar updates and NaN checks.
        checkpoint_every: steps between checkpoints (rounded up to whole chunks; 0: only at the end).
        devices: shard each batch over this many devices (data parallel), ``batch_size`` a multiple.
        seed: seed of the batch/noise key.
    """

    steps: int = 4000
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup: int = 100
    decay_steps: int | None = None
    grad_clip: float = 1.0
    clip_per_backbone: bool = False
    ema_decay: float = 0.999
    ema_warmup: bool = True
    physics_weight: float = 0.0
    inequality_weight: float = 0.0
    min_snr: float | None = 5.0
    snr_floor: float | None = None
    low_noise_mix: float = 0.0
    combine: str = "sum"
    chunk: int = 50
    checkpoint_every: int = 1000
    devices: int | None = None
    seed: int = 0

    def __post_init__(self):
        for k in ("steps", "batch_size", "chunk"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if not self.learning_rate > 0 or self.grad_clip <= 0:
            raise ValueError("learning_rate and grad_clip must be > 0")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.physics_weight < 0 or self.inequality_weight < 0 or self.warmup < 0 or self.checkpoint_every < 0:
            raise ValueError("physics_weight, inequality_weight, warmup and checkpoint_every must be >= 0")
        if self.devices is not None and self.devices < 1:
            raise ValueError(f"devices must be >= 1, got {self.devices}")
        cap = float("inf") if self.min_snr is None else self.min_snr
        if self.snr_floor is not None and not 0 < self.snr_floor <= cap:
            raise ValueError(f"snr_floor must be > 0 and <= min_snr, got {self.snr_floor} (min_snr {self.min_snr})")
        check_low_noise_mix(self.low_noise_mix)
        check_combine(self.combine)
        if self.combine != "sum" and not (self.physics_weight > 0 or self.inequality_weight > 0):
            raise ValueError(
                f"combine={self.combine!r} needs two loss terms: set physics_weight or inequality_weight > 0"
            )


COMBINE = ("sum", "config", "config_per_backbone")


@dataclasses.dataclass
class DiffusionResult:
    """Outcome of :func:`train_diffusion`.

    Attributes:
        model: the trained model with the EMA parameters (what to sample from).
        steps: steps done in total; history: per chunk means of ``loss``, ``data``, ``physics``,
            ``inequality``, ``residual_abs`` (mean ``|r|`` of the training estimates) and ``step``.
        wall_time_s: seconds of this call (compilation included).
    """

    model: DiffusionModel
    steps: int
    history: dict[str, list[float]]
    wall_time_s: float


_TERMS = ("loss", "data", "physics", "inequality", "residual_abs")


@dataclasses.dataclass(frozen=True)
class _StepSetup:
    """Everything a training step depends on besides its arrays (hashable: the jit cache key, so runs with the
    same model structure and settings share one compiled step, e.g. a run and its resumption)."""

    treedef: Any  # of the model's non-trainable part (hashable, unlike the part itself, which holds lists)
    static_leaves: tuple
    physics: FieldPhysics | None
    batch_size: int
    physics_weight: float
    inequality_weight: float
    min_snr: float | None
    snr_floor: float | None
    low_noise_mix: float
    ema_decay: float
    ema_warmup: bool
    grad_clip: float
    clip_groups: tuple[int, ...] | None  # per parameter leaf, its backbone (None: one global clip)
    combine: str
    backbones: tuple[int, ...] | None  # per parameter leaf, its backbone, for combine='config_per_backbone'
    learning_rate: float
    warmup: int
    decay_steps: int
    sharding: Any

    def optimizer(self) -> optax.GradientTransformation:
        peak = self.learning_rate
        lr = optax.warmup_cosine_decay_schedule(
            0.0, peak, max(self.warmup, 1), max(self.decay_steps, self.warmup + 1), peak / 10
        )
        clip = (optax.clip_by_global_norm(self.grad_clip) if self.clip_groups is None
                else _clip_by_group_norm(self.grad_clip, self.clip_groups))  # fmt: skip
        return optax.chain(clip, optax.adam(lr))


def _clip_by_group_norm(max_norm: float, groups: tuple[int, ...]) -> optax.GradientTransformation:
    """optax's global-norm clip to ``max_norm`` applied to each group of parameter leaves separately;
    ``groups[i]`` is the group of the ``i``-th leaf (in ``tree_leaves`` order of the parameters)."""

    def labels(params):
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), groups)

    return optax.multi_transform({g: optax.clip_by_global_norm(max_norm) for g in set(groups)}, labels)


def _backbone_groups(params) -> tuple[int, ...] | None:
    """For a model whose ``net`` is a :class:`ChannelSplit`: each parameter leaf's backbone index (-1 outside
    the backbones); None for one backbone."""
    if not isinstance(params.net, ChannelSplit):
        return None
    nets = params.net.nets
    marked = eqx.tree_at(lambda m: m.net.nets, params, replace=tuple(
        jax.tree_util.tree_map(lambda _, i=i: i, n) for i, n in enumerate(nets)))  # fmt: skip
    return tuple(x if isinstance(x, int) else -1 for x in jax.tree_util.tree_leaves(marked))


def _update_direction(loss_fn: Callable, p, combine: str, groups: tuple[int, ...] | None = None):
    """``(loss, terms, g)``: the loss, its terms (:func:`diffusion_loss`'s) and the direction the optimizer
    follows, for parameters ``p``: the total loss's gradient (``'sum'``), or (``'config'``) the ConFIG
    direction of the data term's gradient and the physics terms' (residual + inequality) gradient, or
    (``'config_per_backbone'``) that direction taken for each group of parameter leaves on its own
    (``groups[i]``: the group of leaf ``i``, see :func:`_backbone_groups`; None: one group)."""
    if combine == "sum":
        (loss, terms), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
        return loss, terms, g

    def term_fn(p):  # one forward pass, a backward pass per term
        loss, terms = loss_fn(p)
        return jnp.stack([terms[0], terms[1] + terms[2]]), (loss, terms)

    per_term, (loss, terms) = jax.jacrev(term_fn, has_aux=True)(p)  # leaves with a leading axis of 2
    if combine == "config" or groups is None:
        stacked = jax.vmap(lambda g: jax.flatten_util.ravel_pytree(g)[0])(per_term)
        unravel = jax.flatten_util.ravel_pytree(p)[1]
        return loss, terms, unravel(config_direction(stacked))
    # one ConFIG per backbone: a network the physics term does not reach (its gradient there is zero) follows
    # its data gradient unchanged (ConFIG of (g, 0) is g), instead of a step whose length both terms set
    leaves, treedef = jax.tree_util.tree_flatten(per_term)
    out = list(leaves)
    for group in sorted(set(groups)):
        idx = [i for i, gi in enumerate(groups) if gi == group]
        stacked = jnp.concatenate([leaves[i].reshape(2, -1) for i in idx], axis=1)
        d = config_direction(stacked)
        sizes = np.cumsum([leaves[i][0].size for i in idx])[:-1]
        for i, part in zip(idx, jnp.split(d, sizes)):
            out[i] = part.reshape(leaves[i].shape[1:])
    return loss, terms, jax.tree_util.tree_unflatten(treedef, out)


# one jitted step per call, not a lax.scan over a chunk: XLA:CPU runs convolutions inside a while loop about
# 7x slower (measured for the U-Net: 0.14 s per step jitted alone, 1.0 s inside scan), and a step is long
# enough that dispatching it from Python costs nothing
@functools.partial(jax.jit, static_argnums=2, donate_argnums=0)
def _train_step(state, data, setup: _StepSetup):
    p, s, ema, key = state
    key, kb, kl = jax.random.split(key, 3)
    x0 = data[jax.random.randint(kb, (setup.batch_size,), 0, data.shape[0])]
    if setup.sharding is not None:
        x0 = jax.lax.with_sharding_constraint(x0, setup.sharding)

    def loss_fn(p):
        m = eqx.combine(p, jax.tree_util.tree_unflatten(setup.treedef, setup.static_leaves))
        return diffusion_loss(m, x0, kl, setup.physics, setup.physics_weight, setup.inequality_weight, setup.min_snr,
                              setup.snr_floor, setup.low_noise_mix)  # fmt: skip

    loss, terms, g = _update_direction(loss_fn, p, setup.combine, setup.backbones)
    upd, s = setup.optimizer().update(g, s, p)
    p = optax.apply_updates(p, upd)
    if setup.ema_decay > 0:
        d = setup.ema_decay
        if setup.ema_warmup:
            k = _adam_count(s).astype(jnp.float32)  # steps done, this one included
            d = jnp.minimum(d, (1 + k) / (10 + k))
        ema = jax.tree_util.tree_map(lambda e, q: (d * e + (1 - d) * q).astype(q.dtype), ema, p)
    else:
        ema = p
    return (p, s, ema, key), jnp.concatenate([loss[None], terms])


def _adam_count(state) -> Array:
    """The step count kept in an optax state's Adam part."""
    found = [x for x in jax.tree_util.tree_leaves(state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
             if isinstance(x, optax.ScaleByAdamState)]  # fmt: skip
    return found[0].count


def train_diffusion(
    model: DiffusionModel,
    fields: np.ndarray,
    config: DiffusionConfig = DiffusionConfig(),
    *,
    physics: FieldPhysics | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> DiffusionResult:
    """Train a DDPM (PIDM with ``config.physics_weight > 0``) on ``fields`` of shape ``(n, *model.field_shape)``.

    Each step draws a batch, steps and noise, and descends :func:`diffusion_loss` with clipped Adam (one
    jitted call per step; losses are checked every ``config.chunk`` steps). With ``out_dir`` the parameters,
    optimizer state, EMA parameters, key, step and history are checkpointed atomically; ``resume`` continues
    bitwise.
    A NaN/Inf stops training with the step and the loss term that went bad.
    """
    fields = np.asarray(fields)
    model.check(fields)
    if (config.physics_weight > 0 or config.inequality_weight > 0) and physics is None:
        raise ValueError("physics_weight/inequality_weight > 0 needs the physics (FieldPhysics) of the fields")
    if not np.all(np.isfinite(fields)):
        raise ValueError("the training fields contain NaN or Inf")
    mesh = data_mesh(config.devices, "batch")
    if mesh is not None and config.batch_size % config.devices:
        raise ValueError(f"batch_size {config.batch_size} is not a multiple of devices={config.devices}")
    dtype = jnp.zeros(()).dtype
    data = model.normalise(jnp.asarray(fields, dtype))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    batch_sharding = None
    if mesh is not None:
        rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        params, data = jax.device_put((params, data), rep)
        batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    leaves, treedef = jax.tree_util.tree_flatten(static)
    c = config
    groups = _backbone_groups(params) if c.clip_per_backbone else None
    backbones = _backbone_groups(params) if c.combine == "config_per_backbone" else None
    setup = _StepSetup(treedef, tuple(leaves), physics, c.batch_size, c.physics_weight, c.inequality_weight,
                       c.min_snr, c.snr_floor, c.low_noise_mix, c.ema_decay, c.ema_warmup, c.grad_clip,
                       groups, c.combine, backbones, c.learning_rate, c.warmup, c.decay_steps or c.steps,
                       batch_sharding)  # fmt: skip

    def run_chunk(state, n):
        rows = []
        for _ in range(n):
            state, row = _train_step(state, data, setup)
            rows.append(row)
        return state, jnp.stack(rows)

    # the state is donated to each step: copies, so the caller's model (and the EMA, which starts equal to the
    # parameters) keep buffers of their own
    copy = functools.partial(jax.tree_util.tree_map, jnp.copy)
    state = (copy(params), setup.optimizer().init(params), copy(params), jax.random.PRNGKey(config.seed))
    start, history = 0, {k: [] for k in (*_TERMS, "step")}
    ckpt = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    if resume:
        if ckpt is None:
            raise ValueError("resume needs out_dir")
        state, meta, extra = load_checkpoint(ckpt, state)
        start = int(meta["step"])
        history = {k: [float(v) for v in extra.get(f"history_{k}", [])] for k in history}
        if mesh is not None:
            state = jax.device_put(state, rep)

    def save(st, done):
        if ckpt is not None:
            extra = {f"history_{k}": np.asarray(v) for k, v in history.items()}
            save_checkpoint(ckpt, st, {"step": done, "kind": "diffusion"}, extra)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=start, unit="step", dynamic_ncols=True)
    t0 = time.perf_counter()
    done, last_saved = start, start
    try:
        while done < config.steps:
            n = min(config.chunk, config.steps - done)
            new_state, rows = run_chunk(state, n)
            rows = np.asarray(rows)
            bad = ~np.isfinite(rows)
            if bad.any():
                i, j = np.argwhere(bad)[0]
                term = _TERMS[j] if j > 0 else next((_TERMS[k] for k in range(1, 5) if bad[i, k]), "loss")
                kept = f"; last finite checkpoint kept at {ckpt}" if ckpt is not None and ckpt.exists() else ""
                raise DiffusionTrainingDiverged(
                    f"training diverged: the {term} term became NaN/Inf at step {done + i + 1}{kept}"
                )
            state, done = new_state, done + n
            for k, v in zip(_TERMS, rows.mean(0)):
                history[k].append(float(v))
            history["step"].append(float(done))
            if bar is not None:
                bar.set_postfix(loss=f"{history['loss'][-1]:.3e}", refresh=False)
                bar.update(n)
            if config.checkpoint_every and done - last_saved >= config.checkpoint_every and done < config.steps:
                save(state, done)
                last_saved = done
    finally:
        if bar is not None:
            bar.close()
    save(state, done)
    return DiffusionResult(eqx.combine(state[2], static), done, history, time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------- sampling

SAMPLERS = ("ddpm", "ddim")
VARIANCES = ("posterior", "data")  # the DDPM reverse step's noise, see sample()


def sample(
    model: DiffusionModel,
    key: PRNGKeyArray,
    n: int,
    *,
    sampler: str = "ddpm",
    steps: int | None = None,
    eta: float = 0.0,
    batch: int = 64,
    devices: int | None = None,
    variance: str = "posterior",
    fields: np.ndarray | None = None,
    cov_samples: int = 64,
) -> np.ndarray:
    """Draw ``n`` fields from the model, in physical units; ``(n, *field_shape)``.

    ``'ddpm'``: ancestral sampling through all ``T`` steps, ``x_{t-1} = mean(x0_hat, x_t) + noise`` (Ho et al.
    2020); the last step returns ``x0_hat`` without noise. ``'ddim'``: ``steps`` evenly spaced
    steps of the DDIM update (Song, Meng, Ermon, ICLR 2021), deterministic for ``eta = 0``, DDPM-like for
    ``eta = 1``. One jitted call per step, in batches of ``batch``. ``devices``: split each batch over this
    many devices (``jax.sharding``; the network replicated); the same draws as on one device.

    ``variance`` (DDPM): the reverse step's noise. ``'posterior'``: ``sqrt(betatilde_t) z``, the variance of
    ``q(x_{t-1} | x_t, x0)`` as if ``x0_hat`` were exact. The true reverse kernel's covariance is
    ``betatilde_t I + c_t^2 Cov[x0 | x_t]`` (``c_t``: the posterior mean's coefficient of ``x0``); dropping the
    second term under-disperses the directions of large data variance, where ``x0`` is still uncertain while
    the steps are coarse: for the Darcy log-permeability on 64x64 (64 modes of variance up to ~330 in
    channel-standardised units), ``T = 100`` cosine steps give its std 6.5% low even with the exact denoiser.
    ``'data'`` adds it: ``Cov[x0 | x_t]`` averaged over the data (exact for Gaussian data, whose posterior
    covariance does not depend on ``x_t``) is estimated at every step from the model's own errors
    ``e_i = x0_i - x0_hat(x_t,i)`` on ``cov_samples`` of the training ``fields`` (physical units, ``(m,
    *field_shape)``) noised to that step, and the step adds ``c_t / sqrt(cov_samples) sum_i w_i e_i`` with
    ``w ~ N(0, I)``: an unbiased draw of that covariance, at the cost of ``cov_samples`` more network
    evaluations per step. It is the full-covariance form of the optimal reverse variance of Analytic-DPM
    (Bao, Li, Zhu, Zhang, ICLR 2022), whose isotropic average barely helps here (most directions of these
    fields carry no variance).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    if n < 1 or batch < 1:
        raise ValueError(f"need n >= 1 and batch >= 1, got {n}, {batch}")
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; choose one of {VARIANCES}")
    data = None
    if variance == "data":
        if sampler != "ddpm":
            raise ValueError("variance='data' is a DDPM reverse step's noise; DDIM sets its own with eta")
        if fields is None:
            raise ValueError("variance='data' estimates the posterior covariance from training fields: pass fields")
        model.check(np.asarray(fields))
        if cov_samples < 2:
            raise ValueError(f"cov_samples must be >= 2, got {cov_samples}")
        data = model.normalise(jnp.asarray(fields, jnp.zeros(()).dtype))
    T = model.schedule.steps
    if sampler == "ddim":
        steps = min(T, 50) if steps is None else steps
        if not 1 <= steps <= T:
            raise ValueError(f"DDIM steps must be in [1, {T}], got {steps}")
        if not 0 <= eta <= 1:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        seq = np.unique(np.round(np.linspace(0, T - 1, steps)).astype(int))
    else:
        seq = np.arange(T)
    prev = np.concatenate([[-1], seq[:-1]])
    mesh = data_mesh(devices, "batch")
    arrays, rest = eqx.partition(model, eqx.is_array)
    model = eqx.combine(place_replicated(arrays, mesh), rest)
    if data is not None:
        data = place_replicated(data, mesh)
    dtype = jnp.zeros(()).dtype
    out, keys = [], jax.random.split(key, -(-n // batch))
    for i, k in enumerate(keys):
        m = min(batch, n - i * batch)
        k, k0 = jax.random.split(k)
        x = place_leading(jax.random.normal(k0, (m, *model.field_shape), dtype), mesh)
        # a Python loop over jitted steps, not lax.scan: see _train_step (convolutions in loops on XLA:CPU)
        for t, tp in zip(seq[::-1], prev[::-1]):
            k, kz = jax.random.split(k)
            x = _reverse_step(model, x, kz, jnp.asarray(t), jnp.asarray(tp), sampler, eta, data, cov_samples)
        out.append(np.asarray(model.denormalise(x)))
    return np.concatenate(out)


def posterior_sampler_spread(schedule: NoiseSchedule, variances: Float[np.ndarray, " k"]) -> Float[np.ndarray, " k"]:
    """What DDPM sampling with the posterior variance (``sample(variance='posterior')``) keeps of Gaussian data's
    spread when the denoiser is exact: the samples' std over the data's along eigen-directions of data variance
    ``variances`` (standardised units), from the linear recursion of each direction's variance through the
    reverse steps (NumPy, float64). 1 would be exact; the large-variance directions of smooth random fields
    come out low at ``T = 100`` (0.90 for a variance of 300 on the cosine schedule; see :func:`sample`)."""
    lam = np.asarray(variances, np.float64)
    ab = np.asarray(schedule.alpha_bar, np.float64)
    prev = np.concatenate([[1.0], ab[:-1]])
    beta = 1 - ab / prev
    var = beta * (1 - prev) / (1 - ab)
    c0, ct = beta * np.sqrt(prev) / (1 - ab), (1 - prev) * np.sqrt(1 - beta) / (1 - ab)
    v = np.ones_like(lam)  # x_T ~ N(0, 1)
    for t in range(len(ab) - 1, 0, -1):
        gain = np.sqrt(ab[t]) * lam / (ab[t] * lam + 1 - ab[t])  # the exact E[x0 | x_t] per direction
        v = (c0[t] * gain + ct[t]) ** 2 * v + var[t]
    gain = np.sqrt(ab[0]) * lam / (ab[0] * lam + 1 - ab[0])  # the last step returns x0_hat
    return np.sqrt(gain**2 * v / lam)


@eqx.filter_jit
def _reverse_step(model: DiffusionModel, x, key, t, tp, sampler: str, eta: float, data=None, cov_samples: int = 0):
    """One reverse step from step ``t`` to step ``tp`` (``tp < 0``: the end, which returns ``x0_hat``);
    ``data`` (normalised training fields): add the data-averaged posterior covariance (see :func:`sample`)."""
    tab = model.schedule.tables(x.dtype)
    if data is not None:
        key, k_pick, k_noise, k_mix = jax.random.split(key, 4)
    z = jax.random.normal(key, x.shape, x.dtype)
    x0, eps = model.denoise(x, jnp.full((x.shape[0],), t))
    last = tp < 0
    if sampler == "ddpm":
        mean = tab["coef_x0"][t] * x0 + tab["coef_xt"][t] * x
        x_new = mean + jnp.sqrt(tab["var"][t]) * z
        if data is not None:
            x0_d = data[jax.random.randint(k_pick, (cov_samples,), 0, data.shape[0])]
            tt = jnp.full((cov_samples,), t)
            xt_d = q_sample(model.schedule, x0_d, tt, jax.random.normal(k_noise, x0_d.shape, x.dtype))
            err = x0_d - model.denoise(xt_d, tt)[0]
            w = jax.random.normal(k_mix, (x.shape[0], cov_samples), x.dtype)
            x_new = x_new + tab["coef_x0"][t] / jnp.sqrt(cov_samples) * jnp.tensordot(w, err, axes=1)
    else:
        ab_t = tab["abar"][t]
        ab_p = jnp.where(last, 1.0, tab["abar"][jnp.maximum(tp, 0)])
        sigma = eta * jnp.sqrt((1 - ab_p) / (1 - ab_t) * (1 - ab_t / ab_p))
        x_new = jnp.sqrt(ab_p) * x0 + jnp.sqrt(jnp.maximum(1 - ab_p - sigma**2, 0.0)) * eps + sigma * z
    return jnp.where(last, x0, x_new)
