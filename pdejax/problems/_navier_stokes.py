"""2D incompressible Navier–Stokes on a periodic box, written for one scalar field: the stream function."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ._benchmarks import _within
from ._derivatives import partial
from ._domain import Rectangle
from ._periodic import hermite_in_time
from ._problem import Problem, Term, initial_term, periodic_term

_HERMITE_TIMES = 201  # time nodes of the cubic Hermite interpolation for scattered times
_MAX_EXACT_TIMES = 16  # beyond, each distinct gap between times would compile its own stepper


def _psi0_np(x, y):
    """Initial stream function (NumPy): ``sin x sin y / 2 + cos(2x + y) / 5``, zero spatial mean."""
    return 0.5 * np.sin(x) * np.sin(y) + 0.2 * np.cos(2 * x + y)


def _psi0(xs):
    return 0.5 * jnp.sin(xs[0]) * jnp.sin(xs[1]) + 0.2 * jnp.cos(2 * xs[0] + xs[1])


def _w0_np(x, y):
    """Initial vorticity ``w0 = -Lap psi0 = sin x sin y + cos(2x + y)``: two modes of different ``|k|``, so
    the advection term acts from the start (one ``|k|`` shell alone is a steady state of it)."""
    return np.sin(x) * np.sin(y) + np.cos(2 * x + y)


class _NavierStokesReference:
    """Pseudo-spectral reference for :func:`navier_stokes2d`: vorticity form, ``n x n`` Fourier modes,
    2/3 dealiasing, ETDRK4 with steps ``<= dt`` (``pdejax.solvers.navier_stokes_vorticity``), float64,
    cached on disk. ``psi = Lap^-1 (-w)`` is evaluated as its Fourier series at any point (exact spectral
    interpolation in space); more than 16 distinct times are interpolated in time by cubic Hermite
    polynomials on 201 nodes, with ``psi_t`` from the equation itself. The gauge is the problem's:
    ``psi(0, 0, t) = psi0(0, 0)``."""

    def __init__(self, nu: float, n: int = 64, dt: float = 2.5e-3):
        self.nu, self.n, self.dt = nu, n, dt

    def _system(self):
        from ..solvers import PeriodicGrid, navier_stokes_vorticity

        grid = PeriodicGrid((self.n, self.n), 2 * math.pi)
        return grid, lambda dt: navier_stokes_vorticity(grid, dt, self.nu)

    def vorticity_coefficients(self, times: np.ndarray) -> np.ndarray:
        """Fourier coefficients of ``w`` (``rfft2``, forward norm) at sorted unique ``times``: ``(m, n, n//2+1)``."""
        import jax

        from ..solvers import solve_at_times
        from ._cache import cached

        def compute():
            with jax.enable_x64(True):
                grid, make = self._system()
                w0 = grid.fft(jnp.asarray(_w0_np(*grid.coordinates())))
                c = solve_at_times(lambda dt: make(dt).spectral, w0, times, self.dt)
                return {"c": np.asarray(c)}

        key = {"v": 1, "nu": self.nu, "n": self.n, "dt": self.dt, "times": times}
        return cached("navier_stokes2d", key, compute)["c"]

    def _tendency(self, c: np.ndarray) -> np.ndarray:
        """Coefficients of ``w_t`` (vorticity equation) for rows of coefficients ``c``."""
        import jax

        with jax.enable_x64(True):
            ns = self._system()[1](self.dt)  # its symbol L and nonlinearity N: w_t = L w + N(w)
            out = jax.vmap(lambda v: ns.linear * v + ns.nonlinear(v))(jnp.asarray(c))
            return np.asarray(out)

    def _psi(self, c: np.ndarray, rows: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``psi`` (zero spatial mean) from vorticity coefficients ``c[rows]`` at points ``(x, y)``."""
        kx = np.fft.fftfreq(self.n, 1.0 / self.n)
        ky = np.fft.rfftfreq(self.n, 1.0 / self.n)
        k2 = kx[:, None] ** 2 + ky[None, :] ** 2
        inv = np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
        # real series from the half plane: modes with ky > 0 stand for their conjugates too
        weight = np.where(ky > 0, 2.0, 1.0) * np.where(ky == self.n // 2, 0.0, 1.0)
        out = np.empty(x.shape)
        for r in np.unique(rows):
            sel = rows == r
            ph = c[r] * inv * weight[None, :]
            ex = np.exp(1j * np.outer(x[sel], kx))
            ey = np.exp(1j * np.outer(y[sel], ky))
            out[sel] = np.real(np.sum((ex @ ph) * ey, axis=1))
        return out

    def __call__(self, points: np.ndarray) -> np.ndarray:
        x, y, t = points[:, 0], points[:, 1], points[:, 2]
        times, inverse = np.unique(t, return_inverse=True)

        def gauged(coef, rows):  # psi(x, y) - psi(0, 0) at each point's time row
            return self._psi(coef, rows, x, y) - self._psi(coef, rows, 0 * x, 0 * y)

        if times.size <= _MAX_EXACT_TIMES:
            psi = gauged(self.vorticity_coefficients(times), inverse.ravel())
        else:
            grid = np.linspace(0.0, max(float(times[-1]), 0.0), _HERMITE_TIMES)
            c = self.vorticity_coefficients(grid)
            ct = self._tendency(c)
            psi = hermite_in_time(t, grid, lambda j: gauged(c, j), lambda j: gauged(ct, j))
        return psi + _psi0_np(0.0, 0.0)


def navier_stokes2d(nu: float = 0.01, T: float = 1.0) -> Problem:
    """2D incompressible Navier–Stokes on ``[0, 2 pi]^2`` periodic, ``t in [0, T]``, for the stream
    function ``psi``: velocity ``(psi_y, -psi_x)`` (divergence-free by construction), vorticity
    ``w = -Lap psi``, and the vorticity equation ``w_t + psi_y w_x - psi_x w_y = nu Lap w`` as the residual
    (fourth order in ``psi``). ``w0 = sin x sin y + cos(2x + y)``. ``psi`` is fixed up to a function of
    time; the ``gauge`` term fixes it by ``psi(0, 0, t) = psi0(0, 0)`` (the reference uses the same gauge).
    The PI-HC 2D Navier–Stokes setting of Chalapathi et al. (ICLR 2024) is vorticity form on a periodic
    box; this single-trajectory version keeps a scalar unknown.
    Reference: pseudo-spectral vorticity solver (``pdejax.solvers.navier_stokes_vorticity``, 64^2 modes)."""
    _within(0, 1, open_lo=True, nu=nu)
    _within(0, 100, open_lo=True, T=T)

    def pde(u, p):
        # derivatives of psi: axes 0 = x, 1 = y, 2 = t
        def d(*axes):
            return partial(u, p, *axes)

        w_t = -(d(0, 0, 2) + d(1, 1, 2))
        w_x = -(d(0, 0, 0) + d(0, 1, 1))
        w_y = -(d(0, 0, 1) + d(1, 1, 1))
        lap_w = -(d(0, 0, 0, 0) + 2 * d(0, 0, 1, 1) + d(1, 1, 1, 1))
        return w_t + d(1) * w_x - d(0) * w_y - nu * lap_w

    two_pi = 2 * math.pi
    t_gauge = np.linspace(0.0, T, 64)
    gauge_points = np.stack([0 * t_gauge, 0 * t_gauge, t_gauge], 1)
    psi_00 = float(_psi0_np(0.0, 0.0))
    return Problem(
        name="navier_stokes2d",
        domain=Rectangle((0.0, 0.0), (two_pi, two_pi), time=(0.0, T)),
        terms={
            "pde": Term(pde, "interior", 2048),
            "ic": initial_term(_psi0, 512),
            "periodic_x": periodic_term(0, two_pi, derivatives=3, n_points=128),
            "periodic_y": periodic_term(1, two_pi, derivatives=3, n_points=128),
            "gauge": Term(
                lambda u, p: u(p) - psi_00, "interior", 64, kind="boundary", points=jnp.asarray(gauge_points)
            ),
        },
        params={"nu": nu, "T": T},
        reference_fn=_NavierStokesReference(nu),
        eval_shape=(48, 48, 11),
        description="2D incompressible Navier-Stokes (stream function, vorticity equation), periodic; "
        "spectral reference",
    )
