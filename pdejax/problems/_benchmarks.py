"""Benchmark PDEs with trusted references: Burgers, Allen–Cahn, heat, Poisson, Helmholtz, convection, ..."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ._derivatives import laplacian, partial
from ._domain import Interval, Rectangle
from ._periodic import PeriodicSpectral1D
from ._problem import Problem, Term, dirichlet_term, initial_term, periodic_term


def _within(lo: float, hi: float, *, open_lo: bool = False, **kw) -> None:
    """Each keyword's value must lie in ``[lo, hi]`` (``(lo, hi]`` with ``open_lo``). The upper bounds keep
    the references computable (time steps, grids and exponentials stay finite), far beyond any benchmark."""
    for k, v in kw.items():
        if not (np.isfinite(v) and (v > lo if open_lo else v >= lo) and v <= hi):
            raise ValueError(f"parameter {k} must be a number in {'(' if open_lo else '['}{lo:g}, {hi:g}], got {v}")


# --------------------------------------------------------------------------------------------- Burgers
def burgers_cole_hopf(points: np.ndarray, nu: float, nodes: float = 10.0) -> np.ndarray:
    """Viscous Burgers ``u_t + u u_x = nu u_xx``, ``u0 = -sin(pi x)``, by the Cole–Hopf integral.

    ``u(x, t) = -int sin(pi (x - c z)) F(x - c z) exp(-z^2) dz / int F(x - c z) exp(-z^2) dz`` with
    ``c = sqrt(4 nu t)`` and ``F(y) = exp(-cos(pi y) / (2 pi nu))`` (Basdevant et al., Computers &
    Fluids 14, 1986). Both integrands are smooth and decay like Gaussians, so the trapezoidal rule on a
    uniform ``z`` grid converges spectrally; the exponents are shifted by their maximum per point so
    nothing overflows for small ``nu``. The spacing resolves the narrowest feature in ``z``, of width
    ``1/sqrt(2 pi t)``, with ``nodes`` nodes; ten already agree with twenty to ~1e-15 (tests).

    Args:
        points: ``(n, 2)`` rows ``(x, t)``, float64.
        nu: viscosity.
        nodes: quadrature nodes per narrowest feature width.

    Returns:
        ``(n,)`` float64.
    """
    x, t = points[:, 0], points[:, 1]
    out = -np.sin(np.pi * x)
    pos = t > 0
    if not np.any(pos):
        return out
    t_max = float(t[pos].max())
    h = 1.0 / (nodes * math.sqrt(2 * math.pi * t_max))
    half = math.sqrt(1.0 / (math.pi * nu) + 80.0)  # e^{-z^2} beats the e^{1/(pi nu)} spread of F
    z = np.arange(-half, half + h / 2, h)
    idx = np.flatnonzero(pos)
    for s in range(0, idx.size, 1024):
        i = idx[s : s + 1024]
        c = np.sqrt(4 * nu * t[i])[:, None]
        y = x[i][:, None] - c * z[None, :]
        e = -np.cos(np.pi * y) / (2 * np.pi * nu) - z[None, :] ** 2
        w = np.exp(e - e.max(axis=1, keepdims=True))
        out[i] = -np.sum(np.sin(np.pi * y) * w, axis=1) / np.sum(w, axis=1)
    return out


def burgers(nu: float = 0.01 / math.pi) -> Problem:
    """1D viscous Burgers on ``[-1, 1] x [0, 1]``: ``u_t + u u_x = nu u_xx``, ``u0 = -sin(pi x)``,
    ``u(+-1, t) = 0`` (Raissi et al. 2019). Reference: Cole–Hopf integral."""
    _within(0, 10, open_lo=True, nu=nu)

    def pde(u, x):
        return partial(u, x, 1) + u(x) * partial(u, x, 0) - nu * partial(u, x, 0, 0)

    return Problem(
        name="burgers",
        domain=Interval(-1.0, 1.0, time=(0.0, 1.0)),
        terms={
            "pde": Term(pde, "interior", 2540),
            "ic": initial_term(lambda xs: -jnp.sin(jnp.pi * xs[0]), 160),
            "bc": dirichlet_term(lambda x: jnp.zeros(()), 80),
        },
        params={"nu": nu},
        reference_fn=lambda p: burgers_cole_hopf(p, nu),
        eval_shape=(256, 100),
        description="u_t + u u_x = nu u_xx on [-1,1]x[0,1], u0=-sin(pi x), Dirichlet 0; Cole-Hopf reference",
    )


# ----------------------------------------------------------------------------------------- Allen–Cahn
def allen_cahn(d: float = 1e-4, gamma: float = 5.0) -> Problem:
    """1D Allen–Cahn ``u_t = d u_xx + gamma (u - u^3)`` on ``[-1, 1]`` periodic, ``t in [0, 1]``,
    ``u0 = x^2 cos(pi x)`` (Raissi et al. 2019; Wang et al. 2023). Reference: ETDRK4 pseudo-spectral,
    alias-free, 4096 points (32768 during t <= 0.02, while the kink of the periodic extension of u0 at
    x = +-1 diffuses), dt = 1e-4; refinement changes it by ~1e-9 (tests)."""
    _within(0, 1, open_lo=True, d=d)
    _within(0, 100, open_lo=True, gamma=gamma)

    def pde(u, x):
        v = u(x)
        return partial(u, x, 1) - d * partial(u, x, 0, 0) - gamma * (v - v**3)

    ref = PeriodicSpectral1D(
        "allen_cahn",
        {"d": d, "gamma": gamma},
        lo=-1.0,
        length=2.0,
        u0=lambda x: x**2 * np.cos(np.pi * x),
        symbol=lambda k: -d * k**2 + gamma,
        nonlinear=lambda u: -gamma * u**3,
        n=4096,
        dt=1e-4,
        start=(32768, 0.02),
    )
    return Problem(
        name="allen_cahn",
        domain=Interval(-1.0, 1.0, time=(0.0, 1.0)),
        terms={
            "pde": Term(pde, "interior", 4096),
            "ic": initial_term(lambda xs: xs[0] ** 2 * jnp.cos(jnp.pi * xs[0]), 256),
            "periodic": periodic_term(0, 1.0, derivatives=1, n_points=128),
        },
        params={"d": d, "gamma": gamma},
        reference_fn=ref,
        eval_shape=(512, 201),
        description="u_t = d u_xx + gamma(u - u^3), x in [-1,1] periodic, u0=x^2 cos(pi x); spectral reference",
    )


# ------------------------------------------------------------------------- convection / reaction–diffusion
def convection(beta: float = 10.0, nu: float = 0.0) -> Problem:
    """1D advection(-diffusion) ``u_t + beta u_x = nu u_xx`` on ``[0, 2 pi]`` periodic, ``t in [0, 1]``,
    ``u0 = sin x`` (Krishnapriyan et al., NeurIPS 2021, with ``nu = 0``). Reference: the exact solution
    ``exp(-nu t) sin(x - beta t)``."""
    _within(-1000, 1000, beta=beta)
    _within(0, 10, nu=nu)

    def pde(u, x):
        r = partial(u, x, 1) + beta * partial(u, x, 0)
        return r - nu * partial(u, x, 0, 0) if nu else r

    return Problem(
        name="convection",
        domain=Interval(0.0, 2 * math.pi, time=(0.0, 1.0)),
        terms={
            "pde": Term(pde, "interior", 2048),
            "ic": initial_term(lambda xs: jnp.sin(xs[0]), 256),
            "periodic": periodic_term(0, 2 * math.pi, derivatives=1 if nu else 0, n_points=128),
        },
        params={"beta": beta, "nu": nu},
        reference_fn=lambda p: np.exp(-nu * p[:, 1]) * np.sin(p[:, 0] - beta * p[:, 1]),
        eval_shape=(256, 100),
        description="u_t + beta u_x = nu u_xx, x in [0,2pi] periodic, u0=sin x; exact reference",
    )


def _gauss(x):
    return np.exp(-0.5 * ((x - np.pi) / (np.pi / 4)) ** 2)


def reaction_diffusion(nu: float = 5.0, rho: float = 5.0) -> Problem:
    """1D reaction–diffusion ``u_t = nu u_xx + rho u (1 - u)`` on ``[0, 2 pi]`` periodic, ``t in [0, 1]``,
    Gaussian ``u0 = exp(-(x - pi)^2 / (2 (pi/4)^2))`` (Krishnapriyan et al. 2021). Reference: ETDRK4
    pseudo-spectral (the paper's own reference is a first-order splitting with dt = 0.01)."""
    _within(0, 100, open_lo=True, nu=nu)
    _within(-100, 100, rho=rho)

    def pde(u, x):
        v = u(x)
        return partial(u, x, 1) - nu * partial(u, x, 0, 0) - rho * v * (1 - v)

    ref = PeriodicSpectral1D(
        "reaction_diffusion",
        {"nu": nu, "rho": rho},
        lo=0.0,
        length=2 * math.pi,
        u0=_gauss,
        symbol=lambda k: -nu * k**2 + rho,
        nonlinear=lambda u: -rho * u**2,
        n=512,
        dt=2e-4,
    )
    return Problem(
        name="reaction_diffusion",
        domain=Interval(0.0, 2 * math.pi, time=(0.0, 1.0)),
        terms={
            "pde": Term(pde, "interior", 2048),
            "ic": initial_term(lambda xs: jnp.exp(-0.5 * ((xs[0] - jnp.pi) / (jnp.pi / 4)) ** 2), 256),
            "periodic": periodic_term(0, 2 * math.pi, derivatives=1, n_points=128),
        },
        params={"nu": nu, "rho": rho},
        reference_fn=ref,
        eval_shape=(256, 100),
        description="u_t = nu u_xx + rho u(1-u), x in [0,2pi] periodic, Gaussian u0; spectral reference",
    )


# ------------------------------------------------------------------------------- diffusion–sorption
class _DiffusionSorptionReference:
    """Method-of-lines reference for :func:`diffusion_sorption`: second-order finite differences on ``n``
    nodes, Kvaerno5 (stiff) with rtol 1e-8, cached on disk per set of output times; linear interpolation
    in ``x`` between nodes."""

    def __init__(self, D: float, n: int = 513):
        self.D, self.n = D, n

    def __call__(self, points: np.ndarray) -> np.ndarray:
        import jax

        from ..solvers import diffusion_sorption as ds_system
        from ..solvers import solve_mol
        from ._cache import cached

        times, inverse = np.unique(points[:, 1], return_inverse=True)
        if times[0] > 0:
            times = np.concatenate([[0.0], times])
            inverse = inverse + 1

        def compute():
            with jax.enable_x64(True):
                system = ds_system(self.n, self.D)
                u0 = np.zeros(self.n)
                u0[0] = 1.0
                ys = solve_mol(system, jax.numpy.asarray(u0), jax.numpy.asarray(times), rtol=1e-8, atol=1e-10)
                return {"u": np.asarray(ys, np.float64)}

        u = cached("diffusion_sorption", {"v": 1, "D": self.D, "n": self.n, "times": times}, compute)["u"]
        nodes = np.linspace(0.0, 1.0, self.n)
        out = np.empty(points.shape[0])
        for j in range(times.size):
            sel = inverse.ravel() == j
            out[sel] = np.interp(points[sel, 0], nodes, u[j])
        return out


def diffusion_sorption(D: float = 5e-4, T: float = 500.0) -> Problem:
    """PDEBench's 1D diffusion–sorption ``u_t = D / R(u) u_xx`` on ``[0, 1] x [0, T]``, Freundlich
    retardation ``R(u)`` (:func:`pdejax.solvers.retardation`), ``u(x, 0) = 0``, ``u(0, t) = 1``, outflow
    ``u(1, t) + D u_x(1, t) = 0`` (Takamoto et al., NeurIPS 2022; the PI-HC setting of Chalapathi et al.,
    ICLR 2024). The PDE residual is ``T (u_t - D / R(u) u_xx)`` (time measured in units of ``T``).
    Reference: method of lines (``pdejax.solvers.diffusion_sorption``, 513 nodes)."""
    _within(0, 1, open_lo=True, D=D)
    _within(0, 1e4, open_lo=True, T=T)
    from ..solvers import retardation

    def pde(u, x):
        # written in the time t / T: the equation's own scale, u_t ~ 1 / T, would leave the residual ~500x
        # below the initial/boundary terms and a PINN (or a constraint solve) would ignore the physics
        return T * (partial(u, x, 1) - D / retardation(u(x)) * partial(u, x, 0, 0))

    return Problem(
        name="diffusion_sorption",
        domain=Interval(0.0, 1.0, time=(0.0, T)),
        terms={
            "pde": Term(pde, "interior", 2048),
            "ic": initial_term(lambda xs: jnp.zeros(()), 256),
            "inflow": dirichlet_term(lambda x: jnp.ones(()), 128, region="face:0:lo"),
            "outflow": Term(lambda u, x: u(x) + D * partial(u, x, 0), "face:0:hi", 128, kind="boundary"),
        },
        params={"D": D, "T": T},
        reference_fn=_DiffusionSorptionReference(D),
        eval_shape=(257, 101),
        description="u_t = D/R(u) u_xx (Freundlich sorption), u(0,t)=1, outflow at x=1; method-of-lines reference",
    )


# ----------------------------------------------------------------------------------------------- heat
def _heat_factor(x: np.ndarray, t: np.ndarray, f, nu: float, n: int = 128) -> np.ndarray:
    """Exact 1D heat flow ``exp(t nu d_xx) f`` on ``[0, 2 pi)`` for a smooth periodic ``f``: its Fourier
    coefficients (which decay faster than exponentially for the entire functions used here) are damped
    by ``exp(-nu k^2 t)`` and summed at ``x``."""
    grid = 2 * np.pi * np.arange(n) / n
    c = np.fft.rfft(f(grid), norm="forward")
    k = np.arange(c.size)
    w = np.where(k == 0, 1.0, 2.0)
    w[-1] = 0.0
    out = np.empty(x.shape)
    for s in range(0, x.size, 4096):
        sl = slice(s, s + 4096)
        damp = np.exp(-nu * np.outer(t[sl], k**2))
        out[sl] = np.real(np.sum(w * c * damp * np.exp(1j * np.outer(x[sl], k)), axis=1))
    return out


def heat2d(nu: float = 0.1, T: float = 4.0) -> Problem:
    """2D heat ``u_t = nu (u_xx + u_yy)`` on ``[0, 2 pi]^2`` periodic, ``t in [0, T]``, with the TENG
    initial condition ``u0 = 0.04 cosh(3 sin x) sinh(sin y)`` (Chen et al., ICML 2024). The solution
    stays separable, ``u = 0.04 (e^{t nu d_xx} cosh(3 sin .))(x) (e^{t nu d_yy} sinh(sin .))(y)``, and each
    factor is an exact Fourier series (Bessel coefficients), so the reference is exact to rounding."""
    _within(0, 10, open_lo=True, nu=nu)
    _within(0, 100, open_lo=True, T=T)

    def pde(u, x):
        return partial(u, x, 2) - nu * laplacian(u, x, axes=(0, 1))

    def u0(xs):
        return 0.04 * jnp.cosh(3 * jnp.sin(xs[0])) * jnp.sinh(jnp.sin(xs[1]))

    def reference(p):
        fx = _heat_factor(p[:, 0], p[:, 2], lambda x: np.cosh(3 * np.sin(x)), nu)
        fy = _heat_factor(p[:, 1], p[:, 2], lambda y: np.sinh(np.sin(y)), nu)
        return 0.04 * fx * fy

    two_pi = 2 * math.pi
    return Problem(
        name="heat2d",
        domain=Rectangle((0.0, 0.0), (two_pi, two_pi), time=(0.0, T)),
        terms={
            "pde": Term(pde, "interior", 4096),
            "ic": initial_term(u0, 1024),
            "periodic_x": periodic_term(0, two_pi, derivatives=1, n_points=256),
            "periodic_y": periodic_term(1, two_pi, derivatives=1, n_points=256),
        },
        params={"nu": nu, "T": T},
        reference_fn=reference,
        eval_shape=(64, 64, 9),
        description="u_t = nu Lap u on [0,2pi]^2 periodic, TENG initial condition; exact Fourier reference",
    )


# ------------------------------------------------------------------------------ TENG's 1D settings
def _teng_u0_np(x):
    return 0.04 * np.cosh(3 * np.sin(x)) * np.sinh(np.sin(x))


def _teng_u0(xs):
    return 0.04 * jnp.cosh(3 * jnp.sin(xs[0])) * jnp.sinh(jnp.sin(xs[0]))


def _teng_1d(name, pde, ref, params, description, T):
    two_pi = 2 * math.pi
    return Problem(
        name=name,
        domain=Interval(0.0, two_pi, time=(0.0, T)),
        terms={
            "pde": Term(pde, "interior", 2048),
            "ic": initial_term(_teng_u0, 256),
            "periodic": periodic_term(0, two_pi, derivatives=1, n_points=128),
        },
        params=params,
        reference_fn=ref,
        eval_shape=(256, int(round(10 * T)) + 1),
        description=description,
    )


def allen_cahn_teng(d: float = 0.005, T: float = 4.0) -> Problem:
    """1D Allen–Cahn in TENG's setting (Chen et al., ICML 2024, there in 2D): ``u_t = d u_xx + u - u^3`` on
    ``[0, 2 pi)`` periodic, ``t in [0, T]``, ``u0 = 0.04 cosh(3 sin x) sinh(sin x)`` (the paper's 2D initial
    condition on the diagonal ``y = x``). Reference: ETDRK4 pseudo-spectral (``pdejax.solvers``), 1024 modes,
    dt = 1e-3. Evaluation every 0.1 in time."""
    _within(0, 1, open_lo=True, d=d)
    _within(0, 100, open_lo=True, T=T)

    def pde(u, x):
        v = u(x)
        return partial(u, x, 1) - d * partial(u, x, 0, 0) - (v - v**3)

    ref = PeriodicSpectral1D(
        "allen_cahn_teng",
        {"d": d},
        0.0,
        2 * math.pi,
        _teng_u0_np,
        symbol=lambda k: -d * k**2 + 1.0,
        nonlinear=lambda u: -(u**3),
        n=1024,
        dt=1e-3,
    )
    desc = "u_t = d u_xx + u - u^3, x in [0,2pi) periodic, TENG u0 (1D); spectral reference"
    return _teng_1d("allen_cahn_teng", pde, ref, {"d": d, "T": T}, desc, T)


def burgers_teng(nu: float = 0.01, T: float = 4.0) -> Problem:
    """1D periodic viscous Burgers in TENG's setting (Chen et al., ICML 2024, there in 2D):
    ``u_t + u u_x = nu u_xx`` on ``[0, 2 pi)``, ``t in [0, T]``, ``u0 = 0.04 cosh(3 sin x) sinh(sin x)``.
    A front steepens from t ~ 2. Reference: ETDRK4 pseudo-spectral, conservative form, 2048 modes
    (alias-free), dt = 5e-4. Evaluation every 0.1 in time."""
    _within(0, 10, open_lo=True, nu=nu)
    _within(0, 100, open_lo=True, T=T)

    def pde(u, x):
        return partial(u, x, 1) + u(x) * partial(u, x, 0) - nu * partial(u, x, 0, 0)

    ref = PeriodicSpectral1D(
        "burgers_teng",
        {"nu": nu},
        0.0,
        2 * math.pi,
        _teng_u0_np,
        symbol=lambda k: -nu * k**2,
        nonlinear=None,
        flux=lambda u: 0.5 * u**2,
        n=2048,
        dt=5e-4,
    )
    desc = "u_t + u u_x = nu u_xx, x in [0,2pi) periodic, TENG u0 (1D); spectral reference"
    return _teng_1d("burgers_teng", pde, ref, {"nu": nu, "T": T}, desc, T)


# ------------------------------------------------------------------------------------------- elliptic
def poisson2d(k: float = 1.0) -> Problem:
    """2D Poisson ``-Lap u = 2 (k pi)^2 sin(k pi x) sin(k pi y)`` on ``[0, 1]^2`` with Dirichlet data of
    the exact solution ``u = sin(k pi x) sin(k pi y) + x y`` (the harmonic ``x y`` makes the boundary data
    non-zero)."""
    _within(0, 64, open_lo=True, k=k)
    a = k * math.pi

    def exact(x):
        return jnp.sin(a * x[0]) * jnp.sin(a * x[1]) + x[0] * x[1]

    def pde(u, x):
        return laplacian(u, x) + 2 * a**2 * jnp.sin(a * x[0]) * jnp.sin(a * x[1])

    return Problem(
        name="poisson2d",
        domain=Rectangle((0.0, 0.0), (1.0, 1.0)),
        terms={"pde": Term(pde, "interior", 2048), "bc": dirichlet_term(exact, 512)},
        params={"k": k},
        reference_fn=lambda p: np.sin(a * p[:, 0]) * np.sin(a * p[:, 1]) + p[:, 0] * p[:, 1],
        eval_shape=(101, 101),
        description="-Lap u = f on [0,1]^2, u = sin(k pi x) sin(k pi y) + xy; exact reference",
    )


def helmholtz2d(a1: float = 1.0, a2: float = 4.0, k: float = 1.0) -> Problem:
    """2D Helmholtz ``Lap u + k^2 u = q`` on ``[-1, 1]^2``, ``u = 0`` on the boundary, exact solution
    ``u = sin(a1 pi x) sin(a2 pi y)`` (Wang, Teng, Perdikaris, SIAM J. Sci. Comput. 2021)."""
    _within(0, 64, open_lo=True, a1=a1, a2=a2)  # a zero mode is the zero solution
    _within(0, 100, k=k)
    b1, b2 = a1 * math.pi, a2 * math.pi

    def pde(u, x):
        q = (k**2 - b1**2 - b2**2) * jnp.sin(b1 * x[0]) * jnp.sin(b2 * x[1])
        return laplacian(u, x) + k**2 * u(x) - q

    return Problem(
        name="helmholtz2d",
        domain=Rectangle((-1.0, -1.0), (1.0, 1.0)),
        terms={"pde": Term(pde, "interior", 2048), "bc": dirichlet_term(lambda x: jnp.zeros(()), 512)},
        params={"a1": a1, "a2": a2, "k": k},
        reference_fn=lambda p: np.sin(b1 * p[:, 0]) * np.sin(b2 * p[:, 1]),
        eval_shape=(101, 101),
        description="Lap u + k^2 u = q on [-1,1]^2, u = sin(a1 pi x) sin(a2 pi y); exact reference",
    )


def kovasznay(Re: float = 20.0) -> Problem:
    """Steady 2D Navier–Stokes with Kovasznay's exact solution (Kovasznay 1948) on
    ``[-0.5, 1] x [-0.5, 1.5]``, outputs ``(u, v, p)``: ``u = 1 - e^{l x} cos(2 pi y)``,
    ``v = l/(2 pi) e^{l x} sin(2 pi y)``, ``p = (1 - e^{2 l x})/2``, ``l = Re/2 - sqrt(Re^2/4 + 4 pi^2)``.
    Velocity is prescribed on the whole boundary and pressure on the outlet ``x = 1``."""
    _within(0, 1000, open_lo=True, Re=Re)
    lam = Re / 2 - math.sqrt(Re**2 / 4 + 4 * math.pi**2)

    def exact_jnp(x):
        e = jnp.exp(lam * x[0])
        return jnp.stack(
            [
                1 - e * jnp.cos(2 * jnp.pi * x[1]),
                lam / (2 * jnp.pi) * e * jnp.sin(2 * jnp.pi * x[1]),
                0.5 * (1 - jnp.exp(2 * lam * x[0])),
            ]
        )

    def momentum(u, x):
        w = u(x)
        jac = jnp.stack([partial(u, x, 0), partial(u, x, 1)], axis=-1)  # (3, 2)
        lap = laplacian(lambda y: u(y)[:2], x)
        conv = jac[:2] @ w[:2]
        return conv + jac[2] - lap / Re

    def continuity(u, x):
        return partial(u, x, 0)[0] + partial(u, x, 1)[1]

    def reference(p):
        e = np.exp(lam * p[:, 0])
        return np.stack(
            [
                1 - e * np.cos(2 * np.pi * p[:, 1]),
                lam / (2 * np.pi) * e * np.sin(2 * np.pi * p[:, 1]),
                0.5 * (1 - np.exp(2 * lam * p[:, 0])),
            ],
            axis=1,
        )

    return Problem(
        name="kovasznay",
        domain=Rectangle((-0.5, -0.5), (1.0, 1.5)),
        terms={
            "momentum": Term(momentum, "interior", 2601),
            "continuity": Term(continuity, "interior", 2601),
            "bc": dirichlet_term(lambda x: exact_jnp(x)[:2], 400, components=(0, 1)),
            "outlet_p": dirichlet_term(lambda x: exact_jnp(x)[2:], 100, region="face:0:hi", components=(2,)),
        },
        params={"Re": Re},
        reference_fn=reference,
        output_dim=3,
        output_names=("u", "v", "p"),
        eval_shape=(101, 134),
        description="steady Navier-Stokes, Kovasznay flow (u, v, p) at Reynolds number Re; exact reference",
    )
