"""Pseudo-spectral exponential time differencing (ETDRK orders 1-4, Cox-Matthews/Kassam-Trefethen), periodic grids."""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float


class PeriodicGrid(eqx.Module):
    """A uniform periodic grid: ``n[i]`` points on ``[lo[i], lo[i] + length[i])`` (right end excluded).

    Fields live in physical space as real arrays of shape ``n`` and in Fourier space as ``rfftn``
    arrays of shape ``n[:-1] + (n[-1] // 2 + 1,)`` (forward normalisation: coefficients of
    ``exp(i k . (x - lo))``).
    """

    n: tuple[int, ...] = eqx.field(static=True)
    length: tuple[float, ...] = eqx.field(static=True)
    lo: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, n, length, lo=None):
        n = (int(n),) if np.isscalar(n) else tuple(int(v) for v in n)
        length = (float(length),) * len(n) if np.isscalar(length) else tuple(float(v) for v in length)
        if len(n) not in (1, 2, 3) or len(length) != len(n):
            raise ValueError(f"grid needs 1-3 axes with one length each, got n={n}, length={length}")
        for n_i, l_i in zip(n, length):
            if n_i < 4 or n_i % 2:
                raise ValueError(f"grid sizes must be even and >= 4, got {n}")
            if not (np.isfinite(l_i) and l_i > 0):
                raise ValueError(f"grid lengths must be finite and > 0, got {length}")
        self.n, self.length = n, length
        self.lo = (0.0,) * len(n) if lo is None else tuple(float(v) for v in np.broadcast_to(lo, (len(n),)))

    @property
    def ndim(self) -> int:
        return len(self.n)

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(l_i / n_i for l_i, n_i in zip(self.length, self.n))

    @property
    def spectral_shape(self) -> tuple[int, ...]:
        return self.n[:-1] + (self.n[-1] // 2 + 1,)

    def axes(self) -> tuple[np.ndarray, ...]:
        """Coordinates along each axis (NumPy float64), right end excluded."""
        return tuple(lo + h * np.arange(n) for lo, h, n in zip(self.lo, self.spacing, self.n))

    def coordinates(self) -> tuple[np.ndarray, ...]:
        """Coordinate arrays of shape ``n`` (``indexing='ij'``)."""
        return tuple(np.meshgrid(*self.axes(), indexing="ij"))

    def wavenumbers(self) -> tuple[Float[np.ndarray, "..."], ...]:
        """Angular wavenumbers per axis, each broadcastable to :attr:`spectral_shape` (float64 NumPy)."""
        out = []
        for i, (n_i, l_i) in enumerate(zip(self.n, self.length)):
            if i == self.ndim - 1:
                k = 2 * np.pi * np.fft.rfftfreq(n_i, d=l_i / n_i)
            else:
                k = 2 * np.pi * np.fft.fftfreq(n_i, d=l_i / n_i)
            shape = [1] * self.ndim
            shape[i] = k.size
            out.append(k.reshape(shape))
        return tuple(out)

    def k_squared(self) -> Float[np.ndarray, "..."]:
        """``|k|^2`` on the spectral grid (the symbol of ``-Laplacian``)."""
        return sum(k**2 for k in self.wavenumbers())

    def dealias_mask(self, fraction: float = 2 / 3) -> np.ndarray:
        """Keep modes with ``|k_i| <= fraction * k_max,i`` on every axis (Orszag's 2/3 rule by default)."""
        mask = np.ones(self.spectral_shape, bool)
        for k, n_i, l_i in zip(self.wavenumbers(), self.n, self.length):
            kmax = np.pi * n_i / l_i
            mask &= np.abs(k) <= fraction * kmax + 1e-12
        return mask

    def fft(self, u: Float[Array, "..."]) -> Complex[Array, "..."]:
        """Physical values (shape ``n``, optionally with leading batch axes) to Fourier coefficients."""
        return jnp.fft.rfftn(u, axes=tuple(range(-self.ndim, 0)), norm="forward")

    def ifft(self, v: Complex[Array, "..."]) -> Float[Array, "..."]:
        """Fourier coefficients back to physical values on the grid."""
        return jnp.fft.irfftn(v, s=self.n, axes=tuple(range(-self.ndim, 0)), norm="forward")

    def check_field(self, u) -> None:
        """Raise ``ValueError`` unless ``u``'s trailing shape is the grid's."""
        shape = tuple(np.shape(u)[-self.ndim :])
        if shape != tuple(self.n):
            hint = ""
            if len(shape) == self.ndim and all(a == b + 1 for a, b in zip(shape, self.n)):
                hint = " (one extra point per axis: periodic grids exclude the right end, drop the last sample)"
            raise ValueError(f"field of shape {np.shape(u)} does not match the periodic grid {self.n}{hint}")

    @classmethod
    def from_coordinates(cls, *axes, length=None) -> PeriodicGrid:
        """The periodic grid with the given 1D coordinate arrays (one per axis).

        The points must be uniformly spaced and must not include the right end of the period: with
        ``length`` given, the spacing must be ``length / n``; a last point that repeats the first (mod
        the period) raises ``ValueError`` ("non-periodic grid").
        """
        ns, lengths, los = [], [], []
        for i, x in enumerate(axes):
            x = np.asarray(x, np.float64)
            if x.ndim != 1 or x.size < 4:
                raise ValueError(f"axis {i}: need a 1D array of >= 4 coordinates")
            h = np.diff(x)
            if not np.allclose(h, h[0], rtol=1e-9, atol=0) or h[0] <= 0:
                raise ValueError(
                    f"axis {i}: coordinates are not uniformly increasing; spectral solvers need a uniform grid"
                )
            period = x.size * h[0] if length is None else float(np.broadcast_to(length, (len(axes),))[i])
            if not np.isclose(period, x.size * h[0], rtol=1e-9):
                end = (
                    "includes the right end of the period"
                    if np.isclose(period, (x.size - 1) * h[0])
                    else "does not fit"
                )
                raise ValueError(
                    f"axis {i}: non-periodic grid: spacing {h[0]:g} x {x.size} points {end} "
                    f"(period {period:g}); periodic grids have n points spaced period/n, right end excluded"
                )
            ns.append(x.size)
            lengths.append(period)
            los.append(x[0])
        return cls(tuple(ns), tuple(lengths), tuple(los))


def _phi(z: Complex[Array, "..."], terms: int = 24):
    """``phi_1, phi_2, phi_3`` at ``z`` (``phi_k(z) = sum_j z^j / (j + k)!``), accurate for every ``z``.

    Closed forms such as ``(e^z - 1 - z)/z^2`` cancel catastrophically for small ``|z|``; Kassam & Trefethen
    (SIAM J. Sci. Comput. 26, 2005) average them over a circle around ``z``, but for imaginary symbols
    (dispersion, advection) with ``|z|`` near the circle's radius some circle points fall near 0 and the
    cancellation returns. Here ``|z| < 1`` uses the Taylor series (``terms`` terms: error below 1e-25)
    and ``|z| >= 1`` the closed forms, which lose at most one digit there.
    """
    small = jnp.abs(z) < 1
    zs = jnp.where(small, z, 0)
    zl = jnp.where(small, 1, z)

    # Taylor series by Horner's rule, one per phi_k
    def series(k):
        acc = jnp.zeros_like(z) + 1 / math.factorial(terms + k)
        for j in range(terms - 1, -1, -1):
            acc = acc * zs + 1 / math.factorial(j + k)
        return acc

    e = jnp.exp(zl)
    phi1 = jnp.where(small, series(1), (e - 1) / zl)
    phi2 = jnp.where(small, series(2), (e - 1 - zl) / zl**2)
    phi3 = jnp.where(small, series(3), (e - 1 - zl - zl**2 / 2) / zl**3)
    return phi1, phi2, phi3


def etdrk4_coefficients(linear: Complex[Array, " *k"], dt: float) -> tuple[Complex[Array, " *k"], ...]:
    """ETDRK4 coefficients ``(E, E2, Q, f1, f2, f3)`` for the diagonal linear operator ``linear``.

    ``E = e^{hL}``, ``E2 = e^{hL/2}``, ``Q = (h/2) phi1(hL/2)``, ``f1 = h(phi1 - 3 phi2 + 4 phi3)``,
    ``f2 = h(phi2 - 2 phi3)``, ``f3 = h(4 phi3 - phi2)`` at ``hL`` (Cox & Matthews, J. Comput. Phys. 176,
    2002), with the phi-functions of :func:`_phi` (series / closed forms, accurate for any ``hL``).
    Real ``linear`` gives real coefficients.
    """
    lin = jnp.asarray(linear)
    z = lin * dt
    p1, p2, p3 = _phi(z)
    h1, _, _ = _phi(z / 2)
    return (
        jnp.exp(z),
        jnp.exp(z / 2),
        dt / 2 * h1,
        dt * (p1 - 3 * p2 + 4 * p3),
        dt * (p2 - 2 * p3),
        dt * (4 * p3 - p2),
    )


ORDERS = (1, 2, 3, 4)


class ETDRK(eqx.Module):
    """Exponential time-differencing Runge–Kutta step for ``v_t = L v + N(v)`` (Fourier space, ``L`` diagonal).

    ``stepper(u)`` advances physical values ``u`` (shape ``grid.n``) by ``dt``; ``stepper.spectral(v)``
    advances Fourier coefficients. Orders (Cox & Matthews 2002): 1 exponential Euler
    ``v+ = E v + h phi1 N(v)``; 2 ``a = E v + h phi1 N(v)``, ``v+ = a + h phi2 (N(a) - N(v))``; 3 the ETD3RK
    scheme; 4 ETDRK4. A purely linear problem (``nonlinear=None``) is stepped exactly, ``v+ = E v``.

    Attributes:
        grid: the periodic grid.
        linear: Fourier symbol ``L`` (shape ``grid.spectral_shape``).
        nonlinear: ``v_hat -> N_hat`` or ``None``.
        dt: time step; order: 1-4.
    """

    grid: PeriodicGrid
    linear: Array
    nonlinear: Callable | None = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    order: int = eqx.field(static=True)
    coeffs: tuple

    def __init__(self, grid: PeriodicGrid, linear, nonlinear: Callable | None, dt: float, order: int = 4):
        if not (np.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a finite number > 0, got {dt}")
        if order not in ORDERS:
            raise ValueError(f"ETDRK order must be one of {ORDERS}, got {order}")
        linear = jnp.asarray(linear)
        if linear.shape != grid.spectral_shape:
            raise ValueError(f"linear symbol of shape {linear.shape} does not match the grid {grid.spectral_shape}")
        self.grid, self.linear, self.nonlinear, self.dt, self.order = grid, linear, nonlinear, float(dt), order
        z = linear * dt
        if nonlinear is None:
            self.coeffs = (jnp.exp(z),)
        elif order == 4:
            self.coeffs = etdrk4_coefficients(linear, dt)
        else:
            p1, p2, p3 = _phi(z)
            if order == 3:
                h1, _, _ = _phi(z / 2)
                coeffs = (
                    jnp.exp(z),
                    jnp.exp(z / 2),
                    dt / 2 * h1,
                    dt * p1,
                    dt * (p1 - 3 * p2 + 4 * p3),
                    dt * 4 * (p2 - 2 * p3),
                    dt * (4 * p3 - p2),
                )
            else:
                coeffs = (jnp.exp(z), dt * p1, dt * p2)
            self.coeffs = coeffs

    def spectral(self, v: Complex[Array, " *k"]) -> Complex[Array, " *k"]:
        """One step in Fourier space."""
        n, c = self.nonlinear, self.coeffs
        if n is None:
            return c[0] * v
        if self.order == 1:
            e, p1, _ = c
            return e * v + p1 * n(v)
        if self.order == 2:
            e, p1, p2 = c
            nv = n(v)
            a = e * v + p1 * nv
            return a + p2 * (n(a) - nv)
        if self.order == 3:
            e, e2, q, p1, f1, f2, f3 = c
            nv = n(v)
            a = e2 * v + q * nv
            na = n(a)
            b = e * v + p1 * (2 * na - nv)
            return e * v + f1 * nv + f2 * na + f3 * n(b)
        e, e2, q, f1, f2, f3 = c
        nv = n(v)
        a = e2 * v + q * nv
        na = n(a)
        b = e2 * v + q * na
        nb = n(b)
        cc = e2 * a + q * (2 * nb - nv)
        return e * v + f1 * nv + 2 * f2 * (na + nb) + f3 * n(cc)

    def __call__(self, u: Float[Array, " *n"]) -> Float[Array, " *n"]:
        """One step in physical space: ``u(t) -> u(t + dt)`` (shape ``grid.n``)."""
        self.grid.check_field(u)
        return self.grid.ifft(self.spectral(self.grid.fft(u)))


def rollout(stepper: Callable, n: int, *, include_init: bool = False, check: bool = True) -> Callable:
    """``rollout(stepper, n)(u0)``: the trajectory of ``n`` steps, shape ``(n, *u0.shape)`` (or ``n + 1``
    with the initial state first). One ``lax.scan``; differentiable and vmappable over ``u0``.

    An :class:`ETDRK` stepper is advanced in Fourier space (one forward FFT for the whole rollout, one
    inverse FFT per saved state). With ``check`` a trajectory that becomes NaN/Inf raises an error
    (``eqx.error_if``, also under jit) naming the likely cause, a time step too large for the explicit
    treatment of the nonlinear term.
    """
    if n < 0:
        raise ValueError(f"number of steps must be >= 0, got {n}")

    def run(u0):
        if isinstance(stepper, ETDRK):
            stepper.grid.check_field(u0)
            step, to_state, from_state = stepper.spectral, stepper.grid.fft, stepper.grid.ifft
        else:
            step, to_state, from_state = stepper, (lambda u: u), (lambda v: v)

        def body(v, _):
            v1 = step(v)
            return v1, from_state(v1)

        _, traj = jax.lax.scan(body, to_state(u0), None, length=n)
        if check:
            traj = _check_finite(traj)
        return jnp.concatenate([u0[None], traj]) if include_init else traj

    return run


def _check_finite(x):
    return eqx.error_if(
        x,
        ~jnp.all(jnp.isfinite(x)),
        "the solution became NaN/Inf: the time step is too large for the explicitly treated (nonlinear) "
        "terms on this grid; reduce dt (CFL: dt * max|u| / dx should stay below ~1)",
    )


def repeat(stepper: Callable, n: int, *, check: bool = False) -> Callable:
    """``repeat(stepper, n)(u0)``: the state after ``n`` steps (no trajectory kept; an :class:`ETDRK` stepper
    stays in Fourier space throughout); ``check`` as in :func:`rollout`."""

    def run(u0):
        if isinstance(stepper, ETDRK):
            stepper.grid.check_field(u0)
            v = jax.lax.fori_loop(0, n, lambda _, v: stepper.spectral(v), stepper.grid.fft(u0))
            u = stepper.grid.ifft(v)
        else:
            u = jax.lax.fori_loop(0, n, lambda _, u: stepper(u), u0)
        return _check_finite(u) if check else u

    return run


def solve_at_times(
    make_stepper: Callable[[float], Callable],
    v0: Complex[Array, " *k"],
    times: Float[np.ndarray, " m"],
    dt_max: float,
    t0: float = 0.0,
) -> Complex[Array, "m *k"]:  # noqa: F821
    """Integrate from ``t0`` and return the state at each of the sorted ``times``.

    Each interval between consecutive output times is split into equal steps no longer than ``dt_max``,
    so every output time is hit exactly (no interpolation in time).

    Args:
        make_stepper: ``dt -> stepper`` with ``stepper(v) -> v_next``.
        v0: state at ``t0``.
        times: non-decreasing output times ``>= t0``.
        dt_max: largest step.
    """
    times = np.asarray(times, dtype=np.float64)
    if np.any(np.diff(times) < 0) or (times.size and times[0] < t0):
        raise ValueError("output times must be sorted and not before the initial time")
    out = []
    v, t = v0, t0
    # Intervals of equal length share one compiled, looped stepper.
    steppers: dict[tuple[int, float], Callable] = {}
    for tj in times:
        gap = float(tj - t)
        if gap > 0:
            nsub = int(np.ceil(gap / dt_max - 1e-9))
            key = (nsub, round(gap / nsub, 12))
            if key not in steppers:
                steppers[key] = jax.jit(repeat(make_stepper(gap / nsub), nsub))
            v = steppers[key](v)
            t = float(tj)
        out.append(v)
    return jnp.stack(out) if out else jnp.zeros((0,) + v0.shape, v0.dtype)


def wavenumbers(n: int, length: float) -> Float[Array, " k"]:
    """Angular wavenumbers of ``rfft`` on ``n`` points of a period ``length``: shape ``(n // 2 + 1,)``."""
    return 2.0 * jnp.pi * jnp.fft.rfftfreq(n, d=length / n)
