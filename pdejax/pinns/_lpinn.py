"""Lagrangian PINNs: a characteristic branch and a state branch trained on the Lagrangian-frame residuals."""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Float, PRNGKeyArray

from ..problems import Interval, Problem, Term, partial
from ._models import MODELS, output_layer


class LagrangianForm(eqx.Module):
    """A 1D convective PDE ``u_t + v(u, x, t) u_x = nu u_xx`` written along its characteristics:

    ``dX/dt = v(U, X, t)``,  ``dU/dt = nu u_xx``,

    with ``X(x0, t)`` the characteristic through ``x0`` and ``U(x0, t) = u(X(x0, t), t)``. The Eulerian
    ``u_xx`` follows from the chain rule, ``u_x = U' / X'``, ``u_xx = (U'' X' - U' X'') / X'^3`` (primes:
    ``d/dx0``), valid while characteristics do not cross (``X' > 0``).

    Attributes:
        velocity: ``v(u, x, t) -> ()``, the convective velocity (a constant ``beta`` for advection, ``u``
            for Burgers).
        nu: diffusion coefficient (``0`` for pure advection).
        velocity_scale: a typical ``|v|`` (used to make the characteristic residual dimensionless).
    """

    velocity: Callable = eqx.field(static=True)
    nu: float = eqx.field(static=True, default=0.0)
    velocity_scale: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if not (math.isfinite(self.nu) and self.nu >= 0):
            raise ValueError(f"nu must be a finite number >= 0, got {self.nu}")
        if not (math.isfinite(self.velocity_scale) and self.velocity_scale > 0):
            raise ValueError(f"velocity_scale must be a finite number > 0, got {self.velocity_scale}")


def _convection_form(problem: Problem) -> LagrangianForm:
    beta = float(problem.params["beta"])
    return LagrangianForm(
        lambda u, x, t: jnp.full_like(u, beta), float(problem.params.get("nu", 0.0)), max(abs(beta), 1.0)
    )


def _amplitude(problem: Problem, n: int = 257) -> float:
    """``max |u0|`` of a 1D problem's initial condition, sampled at ``n`` points of its interval."""
    u0 = problem.initial_condition
    xs = jnp.linspace(problem.domain.lo[0], problem.domain.hi[0], n)
    return float(jnp.max(jnp.abs(jax.vmap(lambda x: u0(x[None]))(xs))))


def _burgers_form(problem: Problem) -> LagrangianForm:
    return LagrangianForm(lambda u, x, t: u, float(problem.params["nu"]), max(_amplitude(problem), 1e-6))


# problems with a convective velocity, and how to write them along characteristics
LAGRANGIAN_FORMS: dict[str, Callable[[Problem], LagrangianForm]] = {
    "convection": _convection_form,
    "burgers": _burgers_form,
    "burgers_teng": _burgers_form,
}


def lagrangian_form(problem: Problem) -> LagrangianForm:
    """The :class:`LagrangianForm` of a registered problem with a convective velocity.

    Raises ``ValueError`` naming the supported problems for any other problem (for a custom problem, build
    a :class:`LagrangianForm` and pass it to :func:`lagrangian_problem` directly).
    """
    if problem.name not in LAGRANGIAN_FORMS:
        raise ValueError(
            f"LPINN needs a convective velocity; problem {problem.name!r} has none it knows of. "
            f"Supported problems: {', '.join(sorted(LAGRANGIAN_FORMS))}"
        )
    return LAGRANGIAN_FORMS[problem.name](problem)


def _check_eulerian(problem: Problem) -> tuple[float, float, bool]:
    dom = problem.domain
    if dom.spatial_dim != 1 or not dom.has_time:
        raise ValueError(
            f"LPINN solves 1D time-dependent problems; {problem.name!r} has {dom.spatial_dim} spatial "
            f"dimension(s){'' if dom.has_time else ' and no time'}"
        )
    if problem.initial_condition is None:
        raise ValueError(f"LPINN needs an initial condition; problem {problem.name!r} has none")
    periodic = bool(problem.periodic_axes)
    if not periodic and problem.boundary_value is None:
        raise ValueError(f"LPINN needs periodic or Dirichlet boundaries; problem {problem.name!r} has neither")
    lo, hi = dom.lo[0], dom.hi[0]
    return float(lo), float(hi), periodic


class LagrangianField(eqx.Module):
    """Two-branch Lagrangian field ``(x0, t) -> (X, U)``: characteristic position and state along it.

    ``X = x0 + (t - t0) (v0(x0) + s phi(x0) N_X)``, ``U = u0(x0) + tau a phi(x0) N_U`` with ``tau`` the
    time scaled to ``[0, 1]``, ``v0`` the initial velocity (``prior=True``; zero otherwise), ``s`` the
    velocity scale, ``a = max|u0|``, and ``phi = 1`` on a periodic domain or
    ``(x0 - lo)(hi - x0)/(L/2)^2`` for Dirichlet boundaries (zero boundary data: boundary characteristics
    stay put). The initial conditions ``X = x0`` and ``U = u0`` hold exactly. Both backbones see the
    periodic embedding of ``x0`` (``cos/sin(2 pi m (x0 - lo)/L)``) or its scaled value, and scaled time, so
    ``X - x0`` and ``U`` are exactly periodic in ``x0``. Mojgani, Balajewicz & Hassanzadeh, CMAME 403 (2023).

    Attributes:
        characteristic: backbone ``features -> (1,)`` for ``N_X`` (the low-dimensional branch).
        state: backbone ``features -> (1,)`` for ``N_U``.
        lower, upper: ``(x0_lo, t0)`` and ``(x0_hi, t1)``.
        periodic, harmonics: periodic ``x0`` and its embedding modes.
        u0, v0: ``u0(x_spatial (1,)) -> ()`` and ``v0(x0 ()) -> ()``.
        velocity_scale, state_scale: ``s`` and ``a``.
    """

    characteristic: eqx.Module
    state: eqx.Module
    lower: tuple[float, float] = eqx.field(static=True)
    upper: tuple[float, float] = eqx.field(static=True)
    periodic: bool = eqx.field(static=True)
    harmonics: int = eqx.field(static=True)
    u0: Callable = eqx.field(static=True)
    v0: Callable = eqx.field(static=True)
    velocity_scale: float = eqx.field(static=True)
    state_scale: float = eqx.field(static=True)

    def features(self, z: Float[Array, " 2"]) -> Float[Array, " f"]:
        """Embedding of ``(x0, t)``: Fourier modes (periodic) or scaled ``x0``, and ``t`` scaled to [-1, 1]."""
        (lo, t0), (hi, t1) = self.lower, self.upper
        if self.periodic:
            m = jnp.arange(1, self.harmonics + 1, dtype=z.dtype)
            angle = 2 * jnp.pi * m * (z[0] - lo) / (hi - lo)
            space = [jnp.cos(angle), jnp.sin(angle)]
        else:
            space = [(2 * (z[0] - lo) / (hi - lo) - 1)[None]]
        return jnp.concatenate(space + [(2 * (z[1] - t0) / (t1 - t0) - 1)[None]])

    def _window(self, x0):
        if self.periodic:
            return jnp.ones_like(x0)
        lo, hi = self.lower[0], self.upper[0]
        return (x0 - lo) * (hi - x0) / ((hi - lo) / 2) ** 2

    def __call__(self, z: Float[Array, " 2"]) -> Float[Array, " 2"]:
        """``(X, U)`` at ``z = (x0, t)``."""
        f = self.features(z)
        x0, t = z[0], z[1]
        t0, t1 = self.lower[1], self.upper[1]
        phi = self._window(x0)
        x = x0 + (t - t0) * (self.v0(x0) + self.velocity_scale * phi * self.characteristic(f)[0])
        u = self.u0(z[:1]) + (t - t0) / (t1 - t0) * self.state_scale * phi * self.state(f)[0]
        return jnp.stack([x, u])


def make_lagrangian_field(
    problem: Problem,
    form: LagrangianForm | None = None,
    *,
    model: str = "mlp",
    width: int = 32,
    depth: int = 3,
    characteristic_width: int | None = None,
    characteristic_depth: int | None = None,
    activation: str = "tanh",
    harmonics: int = 1,
    prior: bool = False,
    key: PRNGKeyArray,
) -> LagrangianField:
    """Build a :class:`LagrangianField` for a 1D problem (periodic or with zero Dirichlet data).

    Args:
        problem: the Eulerian problem (its domain, initial condition and boundaries are used).
        form: its Lagrangian form (default: :func:`lagrangian_form`).
        model, width, depth, activation: state-branch backbone.
        characteristic_width, characteristic_depth: characteristic-branch size (default: half the width,
            the same depth; the characteristics are smooth and low dimensional).
        harmonics: Fourier modes of ``x0`` in the embedding (periodic domains).
        prior: start the characteristics from the initial velocity, ``X ~ x0 + (t - t0) v0(x0)``.
        key: PRNG key.
    """
    form = form if form is not None else lagrangian_form(problem)
    lo, hi, periodic = _check_eulerian(problem)
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {sorted(MODELS)}")
    if harmonics < 1:
        raise ValueError(f"harmonics must be >= 1, got {harmonics}")
    u0 = problem.initial_condition
    t0, t1 = problem.domain.time
    scale = _amplitude(problem)

    def v0(x0):
        return form.velocity(u0(x0[None]), x0, jnp.asarray(t0, x0.dtype)) if prior else jnp.zeros_like(x0)

    in_size = (2 * harmonics if periodic else 1) + 1
    kc, ks = jax.random.split(key)
    cw = characteristic_width or max(8, width // 2)
    cd = characteristic_depth or depth
    # Zero output layers: training starts from X = x0 (+ prior), U = u0, where X' > 0 (characteristics do
    # not cross); random ones give X' = 1 + t s N_X' of either sign for large s, a singular u_xx.
    return LagrangianField(
        characteristic=_zero_last(MODELS[model](in_size, 1, cw, cd, activation, key=kc)),
        state=_zero_last(MODELS[model](in_size, 1, width, depth, activation, key=ks)),
        lower=(lo, float(t0)),
        upper=(hi, float(t1)),
        periodic=periodic,
        harmonics=harmonics,
        u0=u0,
        v0=v0,
        velocity_scale=float(form.velocity_scale),
        state_scale=max(scale, 1e-12),
    )


def _zero_last(net: eqx.Module) -> eqx.Module:
    """``net`` with its output layer's weights and bias set to zero (output 0, gradients still flow)."""
    last = output_layer(net)
    zeros = (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias))
    return eqx.tree_at(lambda m: (output_layer(m).weight, output_layer(m).bias), net, zeros)


def lagrangian_residuals(form: LagrangianForm, f: Callable, z: Float[Array, " 2"]) -> Float[Array, " 2"]:
    """Both Lagrangian residuals at ``z = (x0, t)`` for a field ``f(z) -> (X, U)``, unscaled:

    ``[X_t - v(U, X, t), U_t - nu (U'' X' - U' X'') / X'^3]``.
    """
    return jnp.stack([_characteristic_residual(form, f, z), _state_residual(form, f, z)])


def _characteristic_residual(form: LagrangianForm, f, z):
    x, u = f(z)
    return partial(f, z, 1)[0] - form.velocity(u, x, z[1])


def _state_residual(form: LagrangianForm, f, z):
    ut = partial(f, z, 1)[1]
    if not form.nu:
        return ut
    (xp, up), (xpp, upp) = partial(f, z, 0), partial(f, z, 0, 0)
    return ut - form.nu * (upp * xp - up * xpp) / xp**3


def lagrangian_problem(problem: Problem, form: LagrangianForm | None = None) -> Problem:
    """The training problem of an LPINN: the same box read as ``(x0, t)``, two residual terms.

    ``characteristic``: ``(X_t - v(U, X, t)) k (t1 - t0)``; ``state``: ``(U_t - nu u_xx) (t1 - t0) / a``, with
    ``a = max|u0|`` and ``k = max|u0'| / a``: a velocity error ``e`` moves a characteristic by ``e (t1 - t0)``
    and so changes ``u`` by about ``a k e (t1 - t0)``; both residuals then measure errors of ``u / a``.
    Initial and boundary conditions are exact in :class:`LagrangianField`, so no other terms remain. Each
    residual term uses as many points as the problem's PDE term.
    """
    form = form if form is not None else lagrangian_form(problem)
    lo, hi, _ = _check_eulerian(problem)
    u0 = problem.initial_condition
    xs = jnp.linspace(lo, hi, 1025)
    amp = max(_amplitude(problem, 1025), 1e-12)
    slope = float(jnp.max(jnp.abs(jax.vmap(jax.grad(lambda x: u0(x[None])))(xs))))
    wavenumber = max(slope / amp, 1.0 / (hi - lo))
    t0, t1 = problem.domain.time
    # a velocity error e displaces a characteristic by ~e (t1 - t0), which changes u by ~amp k e (t1 - t0):
    # scaled so, both residuals measure an error of u relative to its amplitude
    s = 1.0 / (wavenumber * (t1 - t0))
    n = next((t.n_points for t in problem.terms.values() if t.kind == "residual"), 2048)
    return Problem(
        name=f"{problem.name}_lagrangian",
        domain=Interval(lo, hi, time=tuple(problem.domain.time)),
        terms={
            "characteristic": Term(lambda f, z: _characteristic_residual(form, f, z) / s, "interior", n),
            "state": Term(lambda f, z: _state_residual(form, f, z) * (t1 - t0) / amp, "interior", n),
        },
        params=dict(problem.params),
        output_dim=2,
        output_names=("X", "U"),
        description=f"{problem.name} along characteristics (x0, t) -> (X, U)",
    )


@eqx.filter_jit
def _invert(field: LagrangianField, t: Float[Array, " m"], x: Float[Array, "m k"], n_char: int):
    """``x0`` with ``X(x0, t) = x`` (modulo the period) for ``x`` of shape ``(m, k)`` at times ``t``: a
    monotone interpolation of a fan of ``n_char`` characteristics, then Newton steps (optimistix)."""
    (lo, _), (hi, _) = field.lower, field.upper
    length = hi - lo
    grid = lo + length * jnp.arange(n_char + 1, dtype=x.dtype) / n_char  # includes x0 = hi

    def one_time(tt, xs):
        xg = jax.vmap(lambda a: field(jnp.stack([a, tt]))[0])(grid)
        if field.periodic:
            # X(x0 + L) = X(x0) + L: shift targets into [X(lo), X(lo) + L) and interpolate there
            xs = xg[0] + jnp.mod(xs - xg[0], length)
        guess = jnp.interp(xs, xg, grid)

        def residual(x0, target):
            return field(jnp.stack([x0, tt]))[0] - target

        solver = optx.Newton(rtol=1e-12, atol=1e-12 * length)

        def newton(g, target):
            sol = optx.root_find(residual, solver, g, args=target, max_steps=16, throw=False)
            ok = (sol.result == optx.RESULTS.successful) & jnp.isfinite(sol.value)
            return jnp.where(ok, sol.value, g)

        x0 = jax.vmap(newton)(guess, xs)
        return jax.vmap(lambda a: field(jnp.stack([a, tt]))[1])(x0)

    return jax.vmap(one_time)(t, x)


def eulerian_predict(
    field: LagrangianField, points: Float[np.ndarray, "n 2"], n_characteristics: int = 2048
) -> Float[np.ndarray, " n"]:
    """The Eulerian field ``u(x, t)`` of a trained :class:`LagrangianField` at points ``(n, 2)`` ``(x, t)``.

    At each distinct time the characteristics from ``n_characteristics`` evenly spaced ``x0`` are
    evaluated, ``x0(x)`` is interpolated from them (monotone while characteristics do not cross) and
    refined by Newton's method on ``X(x0, t) = x``; then ``u = U(x0, t)``. Returns ``(n,)``.
    """
    pts = np.asarray(points, np.dtype(jnp.zeros(()).dtype))
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2) = (x, t), got {pts.shape}")
    times, inverse = np.unique(pts[:, 1], return_inverse=True)
    inverse = inverse.ravel()
    counts = np.bincount(inverse, minlength=times.size)
    k = int(counts.max())
    xs = np.empty((times.size, k), pts.dtype)
    order = np.argsort(inverse, kind="stable")
    slot = np.empty(pts.shape[0], np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot[order] = np.arange(pts.shape[0]) - np.repeat(starts, counts)
    xs[:] = pts[order[starts], 0][:, None]  # pad each row with a valid point of that time
    xs[inverse, slot] = pts[:, 0]
    out = np.empty(pts.shape[0], pts.dtype)
    batch = max(1, 65536 // k)
    for s in range(0, times.size, batch):
        vals = np.asarray(
            _invert(field, jnp.asarray(times[s : s + batch]), jnp.asarray(xs[s : s + batch]), n_characteristics)
        )
        sel = (inverse >= s) & (inverse < s + batch)
        out[sel] = vals[inverse[sel] - s, slot[sel]]
    return out


# Defaults of `solve_lpinn`: Adam finds the basin, L-BFGS does the accurate part (convection, beta = 50,
# float32: ~1e-1 after 1000 Adam steps, 5e-4..2.4e-3 after L-BFGS, which stalls within ~600 iterations).
LPINN_DEFAULTS: dict = {
    "model": "mlp",
    "width": 32,
    "depth": 3,
    "activation": "tanh",
    "steps": 1000,
    "lbfgs_steps": 1000,
    "learning_rate": 1e-3,
    "decay_rate": 0.9,
    "decay_steps": 1000,
    "sampler": "uniform",
    "resample_every": 0,
    "n_points": 1024,
    "harmonics": 1,
    "prior": False,
    "devices": None,
    "checkpoint_every": 1000,
}


def lpinn_settings(**overrides) -> dict:
    """Complete LPINN settings: :data:`LPINN_DEFAULTS` with ``overrides`` (``None`` values ignored).

    ``n_points`` is the number of collocation points ``(x0, t)`` shared by both residual terms; a dict of
    per-term counts (as the PINN settings use) is read as its largest value. Unknown keys raise ``ValueError``.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(overrides) - set(LPINN_DEFAULTS) - {"seed", "optimizer"}
    if unknown:
        raise ValueError(f"unknown LPINN settings {sorted(unknown)}; valid: {sorted(LPINN_DEFAULTS) + ['seed']}")
    s = {**LPINN_DEFAULTS, "seed": 0, "optimizer": "adam+lbfgs", **overrides}
    if isinstance(s["n_points"], dict):
        s["n_points"] = max(s["n_points"].values())
    return s


def solve_lpinn(
    problem: Problem,
    settings: dict | None = None,
    *,
    form: LagrangianForm | None = None,
    optimizer=None,
    out_dir=None,
    resume: bool = False,
    progress: bool = True,
):
    """Train an LPINN on ``problem`` and evaluate it on the problem's Eulerian grid.

    The two-branch :class:`LagrangianField` is trained on :func:`lagrangian_problem` by :func:`train`
    (first-phase optimizer, then L-BFGS; checkpoints and resume as for PINNs); the reported rel. L2 maps the
    field back to the Eulerian grid by :func:`eulerian_predict` and compares with ``problem.reference``.

    Args:
        problem: a 1D convective problem (``convection``, ``burgers``, ``burgers_teng``, or any problem
            with ``form`` given).
        settings: from :func:`lpinn_settings` (default: its defaults).
        form: the Lagrangian form (default: :func:`lagrangian_form`).
        optimizer: first-phase optax / multi-loss optimizer (default: Adam with the settings' schedule).
        out_dir, resume, progress: as for :func:`pdejax.pinns.solve`.

    Returns:
        a :class:`pdejax.pinns.Solution` whose ``prediction`` is Eulerian, shape ``(n,)``.
    """
    from ._solve import Solution, train_config
    from ._trainer import train

    s = settings if settings is not None else lpinn_settings()
    form = form if form is not None else lagrangian_form(problem)
    train_problem = lagrangian_problem(problem, form)
    key = jax.random.PRNGKey(int(s["seed"]))
    field = make_lagrangian_field(
        problem,
        form,
        model=s["model"],
        width=int(s["width"]),
        depth=int(s["depth"]),
        activation=s["activation"],
        harmonics=int(s["harmonics"]),
        prior=bool(s["prior"]),
        key=jax.random.fold_in(key, 1),
    )
    n = int(s["n_points"])
    config = train_config(s, n_points={"characteristic": n, "state": n})
    points, _ = problem.eval_points()
    ref = problem.reference(points)
    result = train(
        train_problem,
        field,
        config,
        optimizer=optimizer,
        out_dir=out_dir,
        resume=resume,
        progress=progress,
        reference=(points, ref),
        predictor=eulerian_predict,
    )
    return Solution(result, points, eulerian_predict(result.field, points), ref, s)
