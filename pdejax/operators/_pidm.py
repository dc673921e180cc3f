"""Physics-informed diffusion on Darcy flow: the PDE constraints of generated (permeability, pressure) pairs
and one PIDM run from plain settings (what ``pdejax solve darcy --method pidm`` calls)."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import solvers
from ._data import OperatorDataset, darcy_flux_free_residual, source_sink
from ._diffusion import (
    NORMALISATIONS,
    PREDICTIONS,
    SAMPLERS,
    SCHEDULES,
    VARIANCES,
    DiffusionConfig,
    DiffusionResult,
    FieldPhysics,
    build_diffusion,
    check_combine,
    check_low_noise_mix,
    make_schedule,
    sample,
    train_diffusion,
)
from ._solve import operator_data
from ._unet import ChannelSplit, FNOBackbone, UNet


def _neumann_inverse_laplacian(n: int):
    """``r -> (-Lap_h)^-1 r`` on ``n x n`` cells with no-flux walls (zero-mean part), by the orthonormal DCT-II
    that diagonalises the cell-centred 5-point Neumann Laplacian (eigenvalues ``4 n^2 sin^2(pi k / 2n)``)."""
    k, i = np.arange(n)[:, None], np.arange(n)[None]
    C = np.sqrt(2.0 / n) * np.cos(np.pi * k * (i + 0.5) / n)
    C[0] /= np.sqrt(2.0)
    lam1 = 4 * n**2 * np.sin(np.pi * np.arange(n) / (2 * n)) ** 2
    lam = lam1[:, None] + lam1[None]
    inv = np.where(lam > 0, 1.0 / np.where(lam > 0, lam, 1.0), 0.0)

    def apply(r):
        c = jnp.asarray(C, r.dtype)
        return c.T @ ((c @ r @ c.T) * jnp.asarray(inv, r.dtype)) @ c

    return apply


def darcy_lognormal_physics(
    n: int,
    k_min: float = 0.0,
    log_permeability: bool = False,
    through: tuple[int, ...] | None = None,
    precondition: bool = False,
) -> FieldPhysics:
    """Constraints of a generated field ``x = (K, p)`` on ``n x n`` cells (the PIDM paper's Darcy case).

    Equality: the cell-centred finite-volume residual ``-div(K grad p) - f`` with the paper's source and sink
    (:func:`source_sink`) and no flux through the walls (:class:`pdejax.solvers.DarcyFluxFreeOperator`; the
    solver's data make it vanish). Inequality: ``K >= k_min`` (a permeability is positive). With
    ``log_permeability`` the first channel is ``log K`` (then ``K > 0`` holds by construction: no inequality).
    ``through``: see :class:`FieldPhysics`. ``precondition``: the residual mapped back by the inverse
    Laplacian, relative to the source's, ``(-Lap_h)^-1 r / rms((-Lap_h)^-1 f)`` — about the pressure's relative
    error in every grid mode; the raw residual weights the finest modes ``h^-4`` times more, which makes
    gradient descent on its square ill-conditioned (as for the PINO loss, :func:`darcy_physics`).
    """
    f = source_sink(n)
    inv_lap = _neumann_inverse_laplacian(n)
    f_scale = float(np.sqrt(np.mean(np.asarray(inv_lap(jnp.asarray(f))) ** 2)))

    def equality(x):
        K = jnp.exp(x[0]) if log_permeability else x[0]
        r = darcy_flux_free_residual(K, x[1], jnp.asarray(f, x.dtype))
        return inv_lap(r) / f_scale if precondition else r

    if log_permeability:
        return FieldPhysics(equality, None, "darcy_lognormal", through)
    return FieldPhysics(equality, lambda x: k_min - x[0], "darcy_lognormal", through)


def darcy_dirichlet_physics(n: int, f: float = 1.0) -> FieldPhysics:
    """Constraints of a generated field ``x = (a, u)`` on ``n x n`` vertices (the FNO paper's Darcy case).

    Equality: the finite-volume residual ``-div(a grad u) - f`` at the interior vertices
    (:class:`pdejax.solvers.DarcyOperator`) and the boundary values ``u = 0``, as one
    ``(n, n)`` map. Inequality: ``a >= 0``.
    """

    def equality(x):
        a, u = x[0], x[1]
        # a residual map: the PDE's inside, the boundary values themselves on the boundary
        return u.at[1:-1, 1:-1].set(solvers.DarcyOperator(a)(u[1:-1, 1:-1]) - f)

    return FieldPhysics(equality, lambda x: -x[0], "darcy")


# dataset -> constraints of its (input, output) fields on an n-point grid
PIDM_PHYSICS = {"darcy_lognormal": darcy_lognormal_physics, "darcy": darcy_dirichlet_physics}
PIDM_DATASET = {"darcy": "darcy_lognormal"}  # what `pdejax solve darcy --method pidm` generates
BACKBONES = ("unet", "fno")
SPLIT_CHANNELS = (True, False, "cascade", "ordered")  # values of the split_channels setting

# about 25 minutes for both models on 2 CPU cores (the paper: 64x64, 300k steps of a larger U-Net on a GPU);
# benchmarks/pidm_darcy.py runs longer settings
PIDM_DEFAULTS: dict[str, Any] = dict(
    n_train=1000,
    resolution=32,
    steps=2000,
    batch_size=16,
    learning_rate=1e-3,
    width=16,
    depth=3,
    modes=12,
    backbone="unet",
    diffusion_steps=100,
    schedule="cosine",
    prediction="x0",
    physics_weight=1e-2,
    samples=64,
    sampler="ddpm",
    sample_steps=None,
    sample_variance=None,  # 'data' for ddpm (K's std within a few % where 'posterior' left it ~11% low)
    baseline=True,
    log_permeability=True,
    physics_through="pressure",
    precondition=False,
    normalise="channel",
    ema_warmup=True,
    split_channels="ordered",
    snr_floor=1.0,
    low_noise_mix=0.5,
    clip_per_backbone=True,
    combine="sum",
    devices=1,
    seed=0,
    data=None,
)


def pidm_settings(dataset: str = "darcy", **overrides) -> dict[str, Any]:
    """Complete, validated settings of a PIDM run (``None`` overrides keep :data:`PIDM_DEFAULTS`).

    Keys: ``n_train`` fields, ``resolution`` (cells per axis), ``steps`` (training steps of each model),
    ``batch_size``, ``learning_rate``, ``width``/``depth`` (U-Net base channels and levels; FNO width and
    layers), ``modes`` (FNO), ``backbone`` (unet, fno), ``diffusion_steps`` ``T``, ``schedule`` (cosine, linear),
    ``prediction`` (x0, eps), ``physics_weight`` (``c`` of the residual likelihood), ``samples`` to draw,
    ``sampler`` (ddpm, ddim), ``sample_steps`` (ddim), ``sample_variance`` (ddpm's reverse noise,
    ``'posterior'`` or ``'data'``, the default with ddpm: with the data-averaged posterior covariance, see
    :func:`sample`; at 32x32 and 6000 steps K's std 1.1% low instead of 12.5%, the residual ratio 7.7x
    instead of 8.0x),
    ``baseline`` (also train the same model without the physics term), ``log_permeability`` (generate
    ``log K``; log-normal data only), ``physics_through`` (``'pressure'``: the residual's gradient trains the
    pressure channel only; ``'all'``), ``precondition``
    (train on the inverse-Laplacian-preconditioned residual, see :func:`darcy_lognormal_physics`),
    ``normalise`` (``'channel'``: diffuse per-channel standardised fields; ``'none'``: physical units, as the
    authors' code, see :func:`build_diffusion`), ``ema_warmup`` (see :class:`DiffusionConfig`),
    ``split_channels`` (``True``: one backbone per channel, :class:`ChannelSplit`: the residual trained through
    the pressure then leaves the permeability's denoiser alone; twice the parameters and cost; ``'cascade'``:
    the same, and each backbone also reads the estimates of the channels before it, see
    :class:`ChannelSplit` (6.2x and 7.0x residual ratios on two seeds at 2000 steps against 5.3x and 4.9x for
    ``True``); ``'ordered'``, the default: the cascade with channel ``i``'s backbone reading only channels
    ``0..i`` of ``x_t``, so the permeability is generated from its own marginal model, untouched by the
    pressure's network (``ChannelSplit(ordered=True)``; with ``clip_per_backbone`` K's samples are the
    no-physics twin's; 8.8x at 64x64 where the cascade's K std drifted 31-84%); ``False``: one shared backbone),
    ``snr_floor`` (floor of the x0 loss weight ``min(SNR, 5)``, see :func:`diffusion_loss`; 0: none. With the
    plain weight the noisiest steps, where each field's large scales are decided, are barely trained, and the
    per-field mean of generated ``log K`` was 38-48% too narrow, K's std 14-18% low at 2000 steps; with 1: 2.5%
    low), ``low_noise_mix`` (share of training steps drawn in proportion to the residual term's weight,
    importance-weighted so the expected loss is unchanged, see :func:`diffusion_loss`; 0: uniform. The
    samples' residual is that of the last reverse step's estimate, and with uniform steps the heaviest
    residual terms come in one batch in four; 0.5 lowered PIDM's residual from 0.404 to 0.306 at 2000 steps),
    ``clip_per_backbone`` (clip each channel's backbone's gradient norm on its own, see :class:`DiffusionConfig`;
    the default, so the permeability's network trains as without the physics term),
    ``combine`` (``'sum'``: the total loss's gradient; ``'config'``: the ConFIG direction of the data and
    physics gradients; ``'config_per_backbone'``: that direction within each channel's backbone, see
    :class:`DiffusionConfig`; the baseline, with one term, always sums),
    ``devices``, ``seed``,
    ``data`` (a dataset file instead of generating).
    """
    dataset = PIDM_DATASET.get(dataset, dataset)
    if dataset not in PIDM_PHYSICS:
        raise ValueError(f"PIDM has the physics of {sorted(set(PIDM_PHYSICS) | set(PIDM_DATASET))}, not {dataset!r}")
    unknown = set(overrides) - set(PIDM_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown PIDM settings {sorted(unknown)}; known: {tuple(PIDM_DEFAULTS)}")
    s = dict(PIDM_DEFAULTS, dataset=dataset)
    s.update({k: v for k, v in overrides.items() if v is not None})
    for k in ("n_train", "steps", "batch_size", "width", "depth", "modes", "diffusion_steps", "samples", "devices"):
        if int(s[k]) < 1:
            raise ValueError(f"{k} must be >= 1, got {s[k]}")
    if s["diffusion_steps"] < 2:
        raise ValueError(f"diffusion_steps must be >= 2, got {s['diffusion_steps']}")
    if s["resolution"] < 8:
        raise ValueError(f"resolution must be >= 8, got {s['resolution']}")
    m = 2 ** (int(s["depth"]) - 1)
    if s["backbone"] == "unet" and s["resolution"] % m:
        raise ValueError(f"a {s['depth']}-level U-Net needs a resolution divisible by {m}, got {s['resolution']}")
    for k, allowed in (("backbone", BACKBONES), ("schedule", tuple(SCHEDULES)), ("prediction", PREDICTIONS),
                       ("sampler", SAMPLERS), ("physics_through", ("pressure", "all")),
                       ("sample_variance", (None, *VARIANCES)),
                       ("normalise", NORMALISATIONS)):  # fmt: skip
        if s[k] not in allowed:
            raise ValueError(f"{k} must be one of {allowed}, got {s[k]!r}")
    cap = DiffusionConfig.min_snr  # the cap the runs below train with (DiffusionConfig checks the floor again)
    if not 0 <= float(s["snr_floor"]) <= cap:
        raise ValueError(f"snr_floor must be in [0, {cap:g}] (0: none; the cap of the weight), got {s['snr_floor']}")
    if s["split_channels"] not in SPLIT_CHANNELS:
        raise ValueError(f"split_channels must be True, False, 'cascade' or 'ordered', got {s['split_channels']!r}")
    check_low_noise_mix(float(s["low_noise_mix"]))
    check_combine(s["combine"])
    if float(s["physics_weight"]) < 0 or float(s["learning_rate"]) <= 0:
        raise ValueError("physics_weight must be >= 0 and learning_rate > 0")
    if s["sample_variance"] is None:
        s["sample_variance"] = "data" if s["sampler"] == "ddpm" else "posterior"
    if s["sample_variance"] == "data" and s["sampler"] != "ddpm":
        raise ValueError("sample_variance='data' is DDPM's reverse noise; use sampler='ddpm'")
    if s["sample_steps"] is not None and not 1 <= int(s["sample_steps"]) <= int(s["diffusion_steps"]):
        raise ValueError(f"sample_steps must be in [1, diffusion_steps={s['diffusion_steps']}]")
    return s


def joint_fields(data: OperatorDataset) -> np.ndarray:
    """The (input, output) pairs of ``data`` as joint fields ``(n, c_in + c_out, *grid)``."""
    return np.concatenate([data.inputs, data.outputs], axis=1)


def build_pidm(settings: dict, fields: np.ndarray, *, key) -> Any:
    """The untrained diffusion model of ``settings`` for ``fields`` (``(n, c, h, w)``)."""
    c = fields.shape[1]

    def backbone(key, out_channels=None, in_channels=c):
        if settings["backbone"] == "unet":
            mults = (1, 2, 2, 4, 4, 8)[: int(settings["depth"])]
            return UNet(in_channels, int(settings["width"]), mults, key=key, out_channels=out_channels)
        return FNOBackbone(in_channels, int(settings["diffusion_steps"]), int(settings["modes"]),
                           int(settings["width"]), int(settings["depth"]), key=key,
                           out_channels=out_channels)  # fmt: skip

    if settings["split_channels"]:
        cascade = settings["split_channels"] in ("cascade", "ordered")
        ordered = settings["split_channels"] == "ordered"
        # in a cascade backbone i also reads the (one-channel) estimates of channels < i; ordered, it reads
        # channels 0..i of x_t only
        nets = [backbone(k, 1, in_channels=(i + 1 if ordered else c) + i * cascade)
                for i, k in enumerate(jax.random.split(key, c))]  # fmt: skip
        net = ChannelSplit(nets, c, cascade=cascade, ordered=ordered)
    else:
        net = backbone(key)
    schedule = make_schedule(settings["schedule"], int(settings["diffusion_steps"]))
    return build_diffusion(net, schedule, fields, settings["prediction"], settings["normalise"])


@dataclasses.dataclass
class PIDMSolution:
    """Outcome of :func:`solve_pidm`.

    Attributes:
        results: training results by variant (``'pidm'`` and, with a baseline, ``'ddpm'``: the same model and
            budget without the physics term).
        samples: generated fields by variant, ``(samples, c, h, w)`` physical units.
        residuals: per-sample mean ``|r|`` by variant, plus ``'data'`` (the training fields').
        fields: the training fields; physics: their constraints; settings: the run's settings.
    """

    results: dict[str, DiffusionResult]
    samples: dict[str, np.ndarray]
    residuals: dict[str, np.ndarray]
    fields: np.ndarray
    physics: FieldPhysics
    settings: dict[str, Any]


def field_statistics(fields: np.ndarray, channel: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of one channel over all fields and grid points (float64)."""
    v = np.asarray(fields[:, channel], np.float64)
    return float(v.mean()), float(v.std())


def solve_pidm(
    dataset: str, settings: dict, *, out_dir: str | Path | None = None, resume: bool = False, progress: bool = True
) -> PIDMSolution:
    """Generate or read the Darcy pairs, train PIDM (and the no-physics baseline), sample, evaluate residuals.

    Checkpoints go to ``out_dir`` (PIDM) and ``out_dir/ddpm`` (baseline); ``resume`` continues both.
    """
    settings = dict(settings)
    name = settings.get("dataset") or PIDM_DATASET.get(dataset, dataset)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    data = operator_data(name, dict(settings, n_test=0), out, progress)
    if data.coords.shape[-1] != 2 or data.grid[0] != data.grid[1]:
        raise ValueError(f"PIDM's Darcy physics needs square 2D fields, got a grid of {data.grid}")
    fields = joint_fields(data.subset(slice(0, settings["n_train"])))
    physics = PIDM_PHYSICS[name](data.grid[0])
    # the log-normal permeability is generated as log K: a Gaussian field, which a diffusion model learns far
    # faster than the heavy-tailed K (measured: K's std 42% low after 1500 steps); K = exp(channel 0)
    log_k = name == "darcy_lognormal" and settings["log_permeability"]
    train_fields = fields.copy()
    train_physics = physics
    if log_k:
        train_fields[:, 0] = np.log(fields[:, 0])
    if name == "darcy_lognormal":
        through = (1,) if settings["physics_through"] == "pressure" else None
        train_physics = darcy_lognormal_physics(
            data.grid[0], log_permeability=log_k, through=through, precondition=settings["precondition"]
        )
    variants = {"pidm": float(settings["physics_weight"])}
    if settings["baseline"]:
        variants["ddpm"] = 0.0
    results, samples, residuals = {}, {}, {"data": physics.mean_abs_residual(fields)}
    model = build_pidm(settings, train_fields, key=jax.random.PRNGKey(settings["seed"]))  # both start here
    for variant, weight in variants.items():
        cfg = DiffusionConfig(
            steps=int(settings["steps"]),
            batch_size=int(settings["batch_size"]),
            learning_rate=float(settings["learning_rate"]),
            physics_weight=weight,
            checkpoint_every=max(50, int(settings["steps"]) // 10),
            ema_warmup=bool(settings["ema_warmup"]),
            snr_floor=float(settings["snr_floor"] or 0) or None,
            low_noise_mix=float(settings["low_noise_mix"]),
            clip_per_backbone=bool(settings["clip_per_backbone"]),
            combine=settings["combine"] if weight > 0 else "sum",
            devices=settings["devices"],
            seed=int(settings["seed"]),
        )
        vdir = None if out is None else (out if variant == "pidm" else out / variant)
        ckpt_exists = vdir is not None and (vdir / "checkpoint.npz").exists()
        if progress:
            print(f"training {variant} ({'physics weight ' + format(weight, 'g') if weight else 'no physics term'})")
        res = train_diffusion(model, train_fields, cfg, physics=train_physics, out_dir=vdir,
                              resume=resume and ckpt_exists, progress=progress)  # fmt: skip
        results[variant] = res
        samples[variant] = sample(
            res.model,
            jax.random.PRNGKey(settings["seed"] + 1),
            int(settings["samples"]),
            sampler=settings["sampler"],
            steps=settings["sample_steps"],
            devices=settings["devices"],
            variance=settings["sample_variance"],
            fields=train_fields,
        )
        if log_k:
            samples[variant][:, 0] = np.exp(samples[variant][:, 0])
        residuals[variant] = physics.mean_abs_residual(samples[variant])
    return PIDMSolution(results, samples, residuals, fields, physics, settings)


def solve_generated(dataset: str, fields: np.ndarray, k_floor: float = 1e-6) -> np.ndarray:
    """The solver's pressure for each generated permeability (channel 0 of ``fields``, ``(k, 2, n, n)``),
    clipped below at ``k_floor`` (a generated field may dip under zero); ``(k, 1, n, n)``, in float64.
    Permeabilities whose solve does not converge (extreme contrasts) give NaN fields."""
    if dataset not in ("darcy_lognormal", "darcy"):
        raise ValueError(f"no Darcy solver for dataset {dataset!r}")
    with jax.enable_x64(True):
        K = jnp.maximum(jnp.asarray(fields[:, 0], jnp.float64), k_floor)
        p = np.array(_solve_batch(K, dataset))  # a writable copy
        if dataset == "darcy_lognormal":  # keep only converged solves: the residual tells
            r = np.asarray(jax.vmap(darcy_flux_free_residual)(K, jnp.asarray(p)))
            f = source_sink(K.shape[-1])
            ok = np.sqrt(np.mean(r**2, axis=(1, 2))) <= 1e-6 * np.sqrt(np.mean(f**2))
            p[~ok] = np.nan
        return p[:, None]


@functools.partial(jax.jit, static_argnums=1)
def _solve_batch(K, dataset):
    if dataset == "darcy_lognormal":
        f = jnp.asarray(source_sink(K.shape[-1]))
        return jax.vmap(lambda k: solvers.darcy_flux_free(k, f, throw=False))(K)
    return jax.vmap(lambda k: solvers.darcy(k, 1.0, rtol=1e-10))(K)


def pidm_report(sol: PIDMSolution) -> dict[str, Any]:
    """The numbers of a PIDM run: mean ``|r|`` of the samples by variant (and of the data), the ratio
    no-physics / PIDM, the pressure error against the solver run on each generated permeability
    (``||p - mean(p) - p_solver(K)|| / ||p_solver(K)||`` for the no-flux case, where ``p`` is defined up to a
    constant; over the samples whose solve converged, the others counted), and the permeability's mean and
    std against the training data's."""
    dataset = sol.settings["dataset"]
    res = {k: float(np.mean(v)) for k, v in sol.residuals.items()}
    mean_d, std_d = field_statistics(sol.fields, 0)
    perm: dict[str, Any] = {"data": {"mean": mean_d, "std": std_d}}
    prel: dict[str, float] = {}
    nonpos: dict[str, float] = {}
    unsolved: dict[str, int] = {}
    for v, x in sol.samples.items():
        m, s = field_statistics(x, 0)
        perm[v] = {"mean": m, "std": s, "mean_rel_diff": abs(m - mean_d) / abs(mean_d),
                   "std_rel_diff": abs(s - std_d) / std_d}  # fmt: skip
        p_ref = solve_generated(dataset, x)[:, 0]
        p = np.asarray(x[:, 1], np.float64)
        if dataset == "darcy_lognormal":
            p = p - p.mean(axis=(1, 2), keepdims=True)
        err = np.linalg.norm((p - p_ref).reshape(len(p), -1), axis=1) / np.linalg.norm(
            p_ref.reshape(len(p), -1), axis=1
        )
        prel[v] = float(np.nanmean(err)) if np.any(np.isfinite(err)) else None
        unsolved[v] = int(np.sum(~np.isfinite(err)))
        nonpos[v] = float(np.mean(x[:, 0] <= 0))
    report = {
        "dataset": dataset,
        "residual_mean_abs": res,
        "residual_median_abs": {k: float(np.median(v)) for k, v in sol.residuals.items()},
        "pressure_rel_l2": prel,
        "pressure_unsolved_samples": unsolved,
        "permeability": perm,
        "nonpositive_permeability_fraction": nonpos,
    }
    if "ddpm" in res:
        report["residual_ratio"] = res["ddpm"] / res["pidm"]
    return report
