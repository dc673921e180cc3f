"""TENG: time-evolving natural gradient (Chen et al., ICML 2024) for initial value problems u_t = N[u]."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import PRNGKeyArray

from .._precision import full_precision
from ..problems import Problem
from ..problems._derivatives import prefetch
from ._field import Field
from ._models import MODELS

INTEGRATORS = ("euler", "heun", "rk4")
LSTSQ = ("qr", "svd", "normal")


class TengConfig(eqx.Module):
    """Settings of :func:`teng`.

    Attributes:
        dt: time step; integrator: 'euler', 'heun' (the paper's default) or 'rk4'.
        iterations: Gauss–Newton iterations per projection (the first stage of a step gets two more, as
            in the authors' code).
        n_points: sample points per spatial axis (a uniform periodic grid, the paper's quadrature).
        n_params: parameters updated per Gauss–Newton iteration, drawn at random each time (0: all; the
            paper updates random subsets of 1024-1536 of them to keep the Jacobian small).
        lstsq: least-squares solver for the damped ``J dtheta = r``: 'qr' (default; lineax QR of the tall
            system ``[J; sqrt(lam) s I]``), 'svd' (lineax SVD of it) or 'normal' (Cholesky on the damped
            normal equations: cheaper, but squares the condition number).
        damping: the floor of the Levenberg–Marquardt damping ``lam`` (relative to the largest squared
            column norm of ``J``).
        fit_steps, fit_gn_steps: Adam steps then Gauss–Newton iterations that fit the initial condition.
        fit_n_params: parameters per Gauss–Newton iteration of that fit (0: all, -1: as ``n_params``). The
            fit starts far from its target, where full steps converge much faster than random subsets.
        width, depth, harmonics, activation: the network (a periodic-embedding MLP).
        seed: PRNG seed.
    """

    dt: float = 5e-3
    integrator: str = "heun"
    iterations: int = 5
    n_points: int = 64
    n_params: int = 0
    lstsq: str = "qr"
    damping: float = 1e-12
    fit_steps: int = 2000
    fit_gn_steps: int = 50
    fit_n_params: int = 0
    width: int = 24
    depth: int = 3
    harmonics: int = 3
    activation: str = "tanh"
    seed: int = 0

    def __check_init__(self):
        if not (math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"dt must be a finite number > 0, got {self.dt}")
        if self.integrator not in INTEGRATORS:
            raise ValueError(f"unknown integrator {self.integrator!r}; choose one of {INTEGRATORS}")
        if self.lstsq not in LSTSQ:
            raise ValueError(f"unknown least-squares solver {self.lstsq!r}; choose one of {LSTSQ}")
        if self.iterations < 1 or self.n_points < 4 or self.n_params < 0 or self.fit_n_params < -1:
            raise ValueError("need iterations >= 1, n_points >= 4, n_params >= 0 and fit_n_params >= -1")


def spatial_rhs(problem: Problem) -> Callable:
    """``N[u]`` of a problem whose PDE term reads ``u_t - N[u] = 0``, as ``(u, x_spatial, t) -> value``.

    The residual is evaluated on the time-independent extension ``U(x, t) = u(x)`` (so ``U_t = 0``), which
    gives ``-N[u](x)`` for any residual of that form without the problem restating ``N``.
    """
    if not problem.domain.has_time:
        raise ValueError(f"TENG solves initial value problems; problem {problem.name!r} has no time dimension")
    pde = [t for t in problem.terms.values() if t.kind == "residual"]
    if len(pde) != 1:
        raise ValueError(f"TENG needs exactly one PDE residual term, problem {problem.name!r} has {len(pde)}")
    residual = pde[0].residual

    def rhs(u, xs, t):
        ext = lambda y: u(y[:-1])  # noqa: E731
        return -prefetch(residual, ext, jnp.concatenate([xs, jnp.atleast_1d(t)]))

    return rhs


def teng_field(problem: Problem, config: TengConfig, key: PRNGKeyArray) -> Field:
    """A spatial neural field for ``problem`` (time is not an input): periodic embedding of every periodic
    axis, scaled coordinates otherwise, then an MLP."""
    dom = problem.domain
    s = dom.spatial_dim
    periodic = problem.periodic_axes
    in_size = s + len(periodic) * (2 * config.harmonics - 1)
    net = MODELS["mlp"](in_size, problem.output_dim, config.width, config.depth, config.activation, key=key)
    return Field(
        net, tuple(dom.lo), tuple(dom.hi), periodic=periodic, harmonics=config.harmonics, output_dim=problem.output_dim
    )


@dataclasses.dataclass
class TengResult:
    """Outcome of :func:`teng`.

    Attributes:
        field: the network at the final time (a spatial :class:`Field`).
        rel_l2: global rel. L2 error on the problem's space-time evaluation grid (as for every method).
        prediction: ``(n,)`` values on ``problem.eval_points()`` (``None`` when stopped early).
        history_t, history_rel_l2: rel. L2 error on the spatial evaluation grid against time (every
            ``eval_every`` steps and at every evaluation time).
        fit_rel_l2: rel. L2 misfit of the initial-condition fit on the sample grid.
        wall_time_s: seconds, fit included; steps: time steps taken; params: network parameters.
    """

    field: Field
    rel_l2: float
    prediction: np.ndarray
    history_t: np.ndarray
    history_rel_l2: np.ndarray
    fit_rel_l2: float
    wall_time_s: float
    steps: int
    params: int


@full_precision
def teng(
    problem: Problem,
    config: TengConfig = TengConfig(),
    *,
    field: Field | None = None,
    eval_every: int = 10,
    progress: bool = True,
    on_step: Callable | None = None,
) -> TengResult:
    """Solve ``problem`` (``u_t = N[u]`` on a periodic box) with TENG.

    The network ``u(x; theta)`` represents the solution at one time. After fitting the initial condition
    (Adam, then damped Gauss–Newton), each step projects the exact update onto the network: with the
    target ``u_target`` (Euler: ``u_n + dt N[u_n]``; Heun: the two-stage trapezoidal rule, each stage
    projected; RK4: four projected stages), a few Gauss–Newton (natural-gradient) iterations minimise
    ``||u(.; theta) - u_target||^2`` on the sample grid, each solving ``J dtheta = r`` in the least-squares
    sense with lineax, where ``J = du/dtheta`` on the grid (restricted to a random subset of parameters
    when ``n_params > 0``). Chen, McCarran, Vizcaino, Soljačić & Luo, "TENG: Time-Evolving Natural
    Gradient for Solving PDEs With Deep Neural Nets Toward Machine Precision", ICML 2024.

    Args:
        problem: an initial value problem, periodic on every spatial axis, with one residual term
            ``u_t - N[u]``, an initial condition and a reference.
        config: :class:`TengConfig`; ``dt`` must divide the times of the problem's evaluation grid.
        field: optional spatial network ``(d_spatial,) -> ()`` to evolve (default: :func:`teng_field`, a
            periodic-embedding MLP built from ``config``); its floating-point arrays are the parameters.
        eval_every: also record the rel. L2 error every this many steps (error-against-time history).
        on_step: optional ``on_step(k, t, rel_l2_or_None)`` after each step.

    Returns:
        :class:`TengResult`.
    """
    start = time.perf_counter()
    dom = problem.domain
    rhs = spatial_rhs(problem)
    u0 = problem.initial_condition
    if u0 is None:
        raise ValueError(f"TENG needs an initial condition; problem {problem.name!r} has none")
    if len(problem.periodic_axes) != dom.spatial_dim:
        raise ValueError(
            f"TENG needs a domain periodic on every spatial axis; problem {problem.name!r} is not "
            f"(periodic axes {problem.periodic_axes} of {dom.spatial_dim})"
        )
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    t0, t1 = dom.time
    pts_eval, shape = problem.eval_points()
    nt = shape[-1]
    space = pts_eval.reshape(shape + (-1,))[..., 0, :-1].reshape(-1, dom.spatial_dim)
    eval_times = pts_eval.reshape(shape + (-1,))[(0,) * (len(shape) - 1) + (slice(None), -1)]
    n_steps = int(round((t1 - t0) / config.dt))
    eval_steps = np.rint((eval_times - t0) / config.dt).astype(int)
    if n_steps < 1 or np.max(np.abs(t0 + eval_steps * config.dt - eval_times)) > 1e-9 * max(1.0, abs(t1)):
        raise ValueError(
            f"dt={config.dt} must divide the evaluation times of {problem.name!r} "
            f"({nt} times in [{t0:g}, {t1:g}]) into whole steps"
        )

    key = jax.random.PRNGKey(config.seed)
    kf, ks = jax.random.split(key)
    if field is None:
        field = teng_field(problem, config, kf)
    params, static = eqx.partition(field, eqx.is_inexact_array)
    theta, unravel = ravel_pytree(params)
    dtype = theta.dtype
    axes = [np.linspace(lo, hi, config.n_points, endpoint=False) for lo, hi in zip(dom.lo, dom.hi)]
    X = jnp.asarray(np.stack([m.reshape(-1) for m in np.meshgrid(*axes, indexing="ij")], axis=-1), dtype)

    def u_at(th, pts):
        return jax.vmap(eqx.combine(unravel(th), static))(pts)

    def jac_at(th, pts):
        # per-point parameter gradients, vmapped: a few batched passes however many parameters there are
        # (jax.jacrev of the vector of outputs is ~100x slower here, forward mode costs a pass per parameter)
        return jax.vmap(jax.grad(lambda t, x: eqx.combine(unravel(t), static)(x)), in_axes=(None, 0))(th, pts)

    def n_at(th, t):
        f = eqx.combine(unravel(th), static)
        return jax.vmap(lambda x: rhs(f, x, t))(X)

    # ---- fit the initial condition: Adam, then damped Gauss-Newton to high precision
    target0 = jax.vmap(u0)(X)
    theta = _fit_adam(u_at, theta, X, target0, config.fit_steps)
    fit_params = config.n_params if config.fit_n_params == -1 else config.fit_n_params
    fit = jax.jit(_projector(u_at, jac_at, X, theta.size, config, fit_params))
    project = _projector(u_at, jac_at, X, theta.size, config, config.n_params)
    # The projection, the right-hand side and the field are compiled once each and the time stepper is
    # Python glue between them: a jitted RK4 step would inline four copies of the Gauss-Newton loop and
    # compile several times longer, for no gain at these sizes (each call is milliseconds of work or more).
    project = jax.jit(project)
    theta, lam = fit(theta, jnp.asarray(1e-3, dtype), target0, ks, config.fit_gn_steps)
    fit_err = float(jnp.linalg.norm(u_at(theta, X) - target0) / jnp.linalg.norm(target0))
    step = _stepper(jax.jit(u_at), jax.jit(n_at), project, X, config)
    predict = jax.jit(lambda th: u_at(th, jnp.asarray(space, dtype)))

    # ---- reference values at the evaluation times, and the error history
    ref = np.asarray(problem.reference(pts_eval), np.float64).reshape(-1, nt)
    ref_norm_t = np.linalg.norm(ref, axis=0)
    columns: dict[int, int] = {int(k): j for j, k in enumerate(eval_steps)}
    pred = np.full(ref.shape, np.nan)
    hist_t, hist_e = [], []

    def evaluate(k, th):
        p = np.asarray(predict(th), np.float64)
        if k in columns:
            j = columns[k]
            pred[:, j] = p
            err = float(np.linalg.norm(p - ref[:, j]) / max(ref_norm_t[j], 1e-300))
        else:
            pts = np.concatenate([space, np.full((space.shape[0], 1), t0 + k * config.dt)], axis=1)
            r = np.asarray(problem.reference(pts), np.float64)
            err = float(np.linalg.norm(p - r) / max(np.linalg.norm(r), 1e-300))
        hist_t.append(t0 + k * config.dt)
        hist_e.append(err)
        return err

    evaluate(0, theta)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps, unit="step", dynamic_ncols=True, desc=f"TENG {problem.name}")
    key = ks
    try:
        for k in range(1, n_steps + 1):
            key, sub = jax.random.split(key)
            theta, lam = step(theta, lam, jnp.asarray(t0 + (k - 1) * config.dt, dtype), sub)
            if not bool(jnp.all(jnp.isfinite(theta))):
                raise FloatingPointError(
                    f"TENG: parameters became non-finite at step {k} (t = {t0 + k * config.dt:g}); reduce dt"
                )
            err = evaluate(k, theta) if (k in columns or k % eval_every == 0) else None
            if bar is not None:
                bar.update(1)
                if err is not None:
                    bar.set_postfix({"t": f"{t0 + k * config.dt:.3g}", "rel_l2": f"{err:.2e}"}, refresh=False)
            if on_step is not None:
                on_step(k, t0 + k * config.dt, err)
    finally:
        if bar is not None:
            bar.close()
    return TengResult(
        field=eqx.combine(unravel(theta), static),
        rel_l2=float(np.linalg.norm(pred - ref) / np.linalg.norm(ref)),
        prediction=pred.reshape(-1),
        history_t=np.asarray(hist_t),
        history_rel_l2=np.asarray(hist_e),
        fit_rel_l2=fit_err,
        wall_time_s=time.perf_counter() - start,
        steps=n_steps,
        params=int(theta.size),
    )


def _fit_adam(u_at, theta, X, target, steps):
    if steps <= 0:
        return theta
    opt = optax.adam(optax.exponential_decay(3e-3, max(1, steps // 10), 0.8))

    def loss(th):
        return jnp.mean((u_at(th, X) - target) ** 2)

    @jax.jit
    def run(th):
        def body(c, _):
            th, s = c
            g = jax.grad(loss)(th)
            up, s = opt.update(g, s, th)
            return (optax.apply_updates(th, up), s), None

        (th, _), _ = jax.lax.scan(body, (th, opt.init(th)), None, length=steps)
        return th

    return run(theta)


def _projector(u_at, jac_at, X, n_theta: int, config: TengConfig, n_params: int):
    """``project(theta, lam, target, key, iters) -> (theta, lam)``: damped Gauss–Newton
    (Levenberg–Marquardt) iterations fitting ``u(X; theta)`` to ``target``.

    Each iteration solves ``min ||J d - r||^2 + lam s^2 ||d||^2`` (``s^2`` = largest diagonal entry of
    ``J^T J``, so ``lam`` is relative) and keeps the step only if it lowers the misfit; ``lam`` shrinks
    after a success and grows after a failure, and is carried from one projection to the next. Near the
    target (every time step starts from the previous solution) ``lam`` settles at ``config.damping`` and
    this is the natural-gradient step of the paper; far from it (the initial fit) the damping and the
    acceptance test keep it from diverging, as undamped Gauss–Newton does from a rough start.
    """
    k = n_theta if n_params == 0 or n_params >= n_theta else n_params
    lam_min = config.damping

    def solve(J, r, lam):
        if config.lstsq == "normal":
            A = J.T @ J
            A = A + lam * jnp.max(jnp.diag(A)) * jnp.eye(A.shape[0], dtype=A.dtype)
            op = lx.MatrixLinearOperator(A, lx.positive_semidefinite_tag)
            return lx.linear_solve(op, J.T @ r, lx.Cholesky()).value
        # the damped problem as one tall least-squares system [J; sqrt(lam) s I] d = [r; 0], solved
        # without squaring the condition number of J
        s = jnp.sqrt(jnp.max(jnp.sum(J * J, axis=0)))
        aug = jnp.concatenate([J, jnp.sqrt(lam) * s * jnp.eye(J.shape[1], dtype=J.dtype)])
        rhs = jnp.concatenate([r, jnp.zeros(J.shape[1], r.dtype)])
        solver = lx.QR() if config.lstsq == "qr" else lx.SVD()
        return lx.linear_solve(lx.MatrixLinearOperator(aug), rhs, solver).value

    def iteration(carry, key, target):
        theta, lam, loss = carry
        r = target - u_at(theta, X)
        J = jac_at(theta, X)
        if k == n_theta:
            trial = theta + solve(J, r, lam)
        else:
            idx = jax.random.choice(key, n_theta, (k,), replace=False)
            trial = theta.at[idx].add(solve(J[:, idx], r, lam))
        new_loss = jnp.sum((target - u_at(trial, X)) ** 2)
        ok = jnp.isfinite(new_loss) & (new_loss <= loss)
        theta = jnp.where(ok, trial, theta)
        lam = jnp.where(ok, jnp.maximum(lam / 3, lam_min), jnp.minimum(lam * 4, 1e6))
        return theta, lam, jnp.where(ok, new_loss, loss)

    def project(theta, lam, target, key, iters):
        # iters may be traced: one compiled projection serves every stage and the initial fit
        loss0 = jnp.sum((target - u_at(theta, X)) ** 2)
        carry = (theta, lam, loss0)
        carry = jax.lax.fori_loop(0, iters, lambda i, c: iteration(c, jax.random.fold_in(key, i), target), carry)
        return carry[0], carry[1]

    return project


def _stepper(u_at, n_at, project, X, config: TengConfig):
    """``step(theta, lam, t, key) -> (theta, lam)``: one time step, every stage target projected."""
    dt, it = config.dt, config.iterations

    def step(theta, lam, t, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        un = u_at(theta, X)
        f1 = n_at(theta, t)
        # the first stage starts furthest from its target: two more iterations, as in the authors' code
        if config.integrator == "euler":
            return project(theta, lam, un + dt * f1, k1, it + 2)
        if config.integrator == "heun":
            th_star, lam = project(theta, lam, un + dt * f1, k1, it + 2)
            f2 = n_at(th_star, t + dt)
            return project(th_star, lam, un + dt / 2 * (f1 + f2), k2, it)
        th_a, lam = project(theta, lam, un + dt / 2 * f1, k1, it + 2)
        f2 = n_at(th_a, t + dt / 2)
        th_b, lam = project(th_a, lam, un + dt / 2 * f2, k2, it)
        f3 = n_at(th_b, t + dt / 2)
        th_c, lam = project(th_b, lam, un + dt * f3, k3, it)
        f4 = n_at(th_c, t + dt)
        return project(th_c, lam, un + dt / 6 * (f1 + 2 * f2 + 2 * f3 + f4), k4, it)

    return step


# Per-problem settings for 2 CPU cores (see the README for the measured errors and times).
TENG_PRESETS: dict[str, dict] = {
    # heat2d needs a wider network than the 1D problems: a 16x3 one lets the error rise from its initial
    # fit to 3e-4 while the high modes decay; 32x3 with subsets of 1024 parameters stays at the fit level.
    "heat2d": dict(
        dt=0.0625,
        integrator="rk4",
        iterations=5,
        n_points=48,
        n_params=1024,
        width=32,
        depth=3,
        fit_steps=4000,
        fit_gn_steps=400,
    ),
    "allen_cahn_teng": dict(
        dt=0.05, integrator="rk4", iterations=2, n_points=256, width=16, depth=3, fit_steps=3000, fit_gn_steps=300
    ),
    "burgers_teng": dict(
        dt=0.05, integrator="rk4", iterations=2, n_points=256, width=16, depth=3, fit_steps=3000, fit_gn_steps=300
    ),
}


def teng_config_for(problem: Problem, **overrides) -> TengConfig:
    """The :class:`TengConfig` preset of ``problem`` (defaults when it has none) with ``overrides``."""
    kw = dict(TENG_PRESETS.get(problem.name, {}))
    kw.update(overrides)
    return TengConfig(**kw)
