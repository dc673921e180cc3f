"""Method of lines on non-periodic 1D grids: second-order finite differences in space, diffrax in time."""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

BC_KINDS = ("dirichlet", "neumann", "robin")


class BoundaryCondition(eqx.Module):
    """A boundary condition ``a u + b u_n = g(t)`` at one end of an interval.

    ``u_n`` is the derivative along ``+x`` (not the outward normal), so ``neumann(0.0)`` means ``u_x = 0``
    at either end. Build with :func:`dirichlet`, :func:`neumann` or :func:`robin`.
    """

    kind: str = eqx.field(static=True)
    a: float
    b: float
    g: Callable = eqx.field(static=True)

    def value(self, t) -> Array:
        return jnp.asarray(self.g(t))


def _as_fn(g) -> Callable:
    if callable(g):
        return g
    value = float(g)
    return lambda t: value + 0.0 * t


def dirichlet(g=0.0) -> BoundaryCondition:
    """``u = g(t)`` (``g`` a number or a function of ``t``)."""
    return BoundaryCondition("dirichlet", 1.0, 0.0, _as_fn(g))


def neumann(g=0.0) -> BoundaryCondition:
    """``u_x = g(t)``."""
    return BoundaryCondition("neumann", 0.0, 1.0, _as_fn(g))


def robin(a: float, b: float, g=0.0) -> BoundaryCondition:
    """``a u + b u_x = g(t)`` with ``b != 0``."""
    if b == 0:
        raise ValueError("a Robin condition needs b != 0 (use dirichlet for b = 0)")
    return BoundaryCondition("robin", float(a), float(b), _as_fn(g))


class FDGrid(eqx.Module):
    """``n`` equally spaced nodes on ``[lo, hi]``, both ends included (the boundary nodes)."""

    lo: float = eqx.field(static=True)
    hi: float = eqx.field(static=True)
    n: int = eqx.field(static=True)

    def __check_init__(self):
        if not (np.isfinite(self.lo) and np.isfinite(self.hi) and self.lo < self.hi):
            raise ValueError(f"need finite lo < hi, got [{self.lo}, {self.hi}]")
        if self.n < 3:
            raise ValueError(f"need at least 3 nodes, got {self.n}")

    @property
    def dx(self) -> float:
        return (self.hi - self.lo) / (self.n - 1)

    @property
    def x(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, self.n)

    def derivatives(
        self, u: Float[Array, " n"], t, left: BoundaryCondition, right: BoundaryCondition
    ) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
        """``(u_x, u_xx)`` at every node by centred differences; Neumann/Robin ends use a ghost node from
        the boundary condition (second order); Dirichlet ends get one-sided second-order ``u_x`` and the
        ``u_xx`` of the neighbouring node (they are not evolved by the PDE)."""
        h = self.dx
        ghost_l = _ghost(u[0], u[1], left, t, h, -1.0)
        ghost_r = _ghost(u[-1], u[-2], right, t, h, 1.0)
        ext = jnp.concatenate([ghost_l[None], u, ghost_r[None]])
        ux = (ext[2:] - ext[:-2]) / (2 * h)
        uxx = (ext[2:] - 2 * ext[1:-1] + ext[:-2]) / h**2
        if left.kind == "dirichlet":
            ux = ux.at[0].set((-3 * u[0] + 4 * u[1] - u[2]) / (2 * h))
            uxx = uxx.at[0].set(uxx[1])
        if right.kind == "dirichlet":
            ux = ux.at[-1].set((3 * u[-1] - 4 * u[-2] + u[-3]) / (2 * h))
            uxx = uxx.at[-1].set(uxx[-2])
        return ux, uxx


def _ghost(u_b, u_in, bc: BoundaryCondition, t, h, side: float):
    """Ghost value beyond a boundary node so that the centred ``u_x`` there satisfies ``a u + b u_x = g``."""
    if bc.kind == "dirichlet":
        return 2 * u_b - u_in  # unused for the PDE (the node follows g); linear extrapolation
    ux = (bc.value(t) - bc.a * u_b) / bc.b
    # centred difference across the boundary: (u_ghost - u_in) / 2h on the right, (u_in - u_ghost) / 2h left
    return u_in + side * 2 * h * ux


class MethodOfLines(eqx.Module):
    """Semi-discrete system ``du/dt = F(t, x, u, u_x, u_xx)`` on an :class:`FDGrid` with boundary conditions.

    Dirichlet boundary nodes follow ``g(t)`` (their derivative ``g'(t)`` by forward-mode autodiff), the
    other nodes follow the PDE; the vector field is the ``diffrax`` ODE term.

    Attributes:
        grid: the nodes; left, right: boundary conditions.
        rhs: ``F(t, x, u, u_x, u_xx, args) -> u_t``, elementwise over nodes (arrays of shape ``(n,)``).
    """

    grid: FDGrid
    left: BoundaryCondition
    right: BoundaryCondition
    rhs: Callable = eqx.field(static=True)

    def __call__(self, t, u: Float[Array, " n"], args) -> Float[Array, " n"]:
        ux, uxx = self.grid.derivatives(u, t, self.left, self.right)
        du = self.rhs(t, jnp.asarray(self.grid.x, u.dtype), u, ux, uxx, args)
        for idx, bc in ((0, self.left), (-1, self.right)):
            if bc.kind == "dirichlet":
                du = du.at[idx].set(jax.jvp(bc.value, (t,), (jnp.ones_like(t),))[1])
        return du


def solve_mol(
    system: MethodOfLines,
    u0: Float[Array, " n"],
    times: Float[Array, " m"],
    args=None,
    *,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    dt0: float | None = None,
    max_steps: int = 100_000,
) -> Float[Array, "m n"]:
    """Integrate a method-of-lines system from ``times[0]`` and return the state at every time in ``times``.

    Stiff by nature (the diffusion eigenvalues grow like ``1/dx^2``), so the default solver is the
    L-stable implicit Runge–Kutta ``diffrax.Kvaerno5`` with a PID step-size controller. Differentiable
    (diffrax's checkpointed adjoint) and vmappable.

    Args:
        system: the :class:`MethodOfLines` vector field.
        u0: initial node values ``(n,)``; times: increasing output times ``(m,)``.
        args: passed to ``rhs`` (e.g. coefficients to differentiate against).
        solver, rtol, atol, dt0, max_steps: diffrax settings.

    Returns:
        ``(m, n)`` node values.
    """
    times = jnp.asarray(times)
    u0 = jnp.asarray(u0)
    if u0.shape != (system.grid.n,):
        raise ValueError(f"initial state of shape {u0.shape} does not match the {system.grid.n} grid nodes")
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(system),
        solver or diffrax.Kvaerno5(),
        t0=times[0],
        t1=times[-1],
        dt0=dt0,
        y0=u0,
        args=args,
        saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
    )
    return sol.ys


# PDEBench's 1D diffusion–sorption constants (Takamoto et al., NeurIPS 2022 Datasets and Benchmarks)
DIFFUSION_SORPTION = {"D": 5e-4, "porosity": 0.29, "rho_s": 2880.0, "k_f": 3.5e-4, "n_f": 0.874}


def retardation(u: Array, porosity=0.29, rho_s=2880.0, k_f=3.5e-4, n_f=0.874) -> Array:
    """Freundlich retardation factor ``R(u) = 1 + (1 - phi)/phi rho_s k_f n_f (u + 1e-6)^(n_f - 1)``.

    ``u^(n_f - 1)`` is singular at 0; like PDEBench and PI-HC, ``u`` is shifted by 1e-6 and negative values
    (which only arise from rounding) are treated as 0.
    """
    base = jnp.maximum(u, 0.0) + 1e-6
    return 1 + (1 - porosity) / porosity * rho_s * k_f * n_f * base ** (n_f - 1)


def diffusion_sorption(n: int = 257, D: float = 5e-4, **sorption) -> MethodOfLines:
    """PDEBench's diffusion–sorption ``u_t = D / R(u) u_xx`` on ``[0, 1]`` as a method-of-lines system.

    Boundary conditions as in PDEBench's simulator (its data): ``u(0, t) = 1`` and the outflow condition
    ``u(1, t) = -D u_x(1, t)`` (Robin ``u + D u_x = 0``: the outflow flux ``-D u_x`` equals ``u``).
    PDEBench's PINN loss and PI-HC write ``u = +D u_x``; with that sign the boundary injects mass and the
    problem is ill-posed (a boundary mode grows like ``e^{2t/(R h)}`` on a grid of spacing ``h``), so the
    simulator's sign is the one used here. ``sorption`` overrides the constants of :func:`retardation`.
    Solve with :func:`solve_mol` (stiff: Kvaerno5).

    Args:
        n: grid nodes (both ends included); D: diffusivity.
    """
    if not D > 0:
        raise ValueError(f"D must be > 0, got {D}")

    def rhs(t, x, u, ux, uxx, args):
        return D / retardation(u, **sorption) * uxx

    return MethodOfLines(FDGrid(0.0, 1.0, n), dirichlet(1.0), robin(1.0, D, 0.0), rhs)
