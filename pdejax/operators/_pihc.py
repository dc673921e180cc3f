"""PI-HC neural operators: an FNO gives basis fields on a space-time grid, per-sample constraint solves weight them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
from jaxtyping import Array, Float, PRNGKeyArray

from .. import solvers
from ..pinns._hard import ConstraintStats, _expert_mesh, _Points, shard_experts, zeros_unless_finite
from ._train import apply_batch


# -------------------------------------------------------------------------------- the grid residual
@dataclasses.dataclass(frozen=True, eq=False)
class GridResidual:
    """A PDE with its initial and boundary conditions, discretised on a grid, as weighted residual rows.

    Each row ``i`` is a pointwise function of a few features that are *linear* in the field (its value and
    finite differences at the row's point) and of data taken from the input:
    ``r_i = pointwise(linear(u)[:, i], data(a)[:, i])``. A constraint layer tabulates ``linear`` on each
    basis field once and then evaluates rows with dot products only (no stencils inside the solver).

    Attributes:
        linear: ``u`` (shape ``grid``) ``-> (F, m)`` features per row, linear in ``u``.
        data: ``a`` (``(c_in, *grid)``) ``-> (G, m)`` input data per row.
        pointwise: ``(F, k), (G, k), rows (k,) -> (k,)``: the residuals of rows ``rows`` (their indices, so
            the function can tell the terms apart), each scaled so that ``sum(r**2)`` over all rows is the
            weighted sum of the terms' mean squares (the physics loss).
        where: ``(m, d)`` integer grid index of each row's point (which expert owns the row).
        terms: ``{name: slice}`` of the rows of each term (PDE, initial, boundary).
        grid: the grid shape.
        periodic: the grid axes that wrap around (the experts' blocks are blended across the wrap too).
    """

    linear: Callable[[Array], Array]
    data: Callable[[Array], Array]
    pointwise: Callable[[Array, Array, Array], Array]
    where: np.ndarray
    terms: dict
    grid: tuple[int, ...]
    periodic: tuple[int, ...] = ()

    @property
    def rows(self) -> int:
        return int(self.where.shape[0])

    def __call__(self, u: Float[Array, "*grid"], a: Float[Array, " cin *grid"]) -> Float[Array, " m"]:
        """All rows for the field ``u`` and input ``a``."""
        return self.pointwise(self.linear(u), self.data(a), jnp.arange(self.rows))


def diffusion_sorption_grid(nx: int, nt: int, T: float = 500.0) -> np.ndarray:
    """Coordinates ``(nx, nt, 2)`` (``x`` in ``[0, 1]``, then ``t / T`` in ``[0, 1]``, ``indexing='ij'``)."""
    x, tau = np.linspace(0.0, 1.0, nx), np.linspace(0.0, 1.0, nt)
    return np.stack(np.meshgrid(x, tau, indexing="ij"), axis=-1)


def diffusion_sorption_residual(nx: int, nt: int, D: float = 5e-4, T: float = 500.0) -> GridResidual:
    """PDEBench's diffusion–sorption ``u_t = D / R(u) u_xx`` on the ``(nx, nt)`` grid of
    :func:`diffusion_sorption_grid`, as residual rows for an input ``a = u0`` (broadcast over time, shape
    ``(1, nx, nt)``):

    - ``pde``: ``u_tau - T D / R(u) u_xx`` at the interior nodes ``1 <= i <= nx - 2``, ``1 <= j <= nt - 1``
      (``tau = t / T``; centred differences, second-order backward in time at the last row; the residual in
      units of ``T``, as :func:`pdejax.problems.diffusion_sorption`);
    - ``ic``: ``u - u0`` at ``t = 0``, nodes ``1..nx-1``;
    - ``inflow``: ``u - 1`` at ``x = 0``; ``outflow``: ``u + D u_x`` at ``x = 1`` (second-order one-sided
      ``u_x``), times ``1..nt-1``.

    Each term's rows are scaled by ``1 / sqrt(rows)``, so the squared norm is the sum of their mean squares.
    Features per row: the value, a first difference (``u_tau`` on PDE rows, ``u_x`` on outflow rows) and
    ``u_xx`` (PDE rows); data: ``u0`` on initial rows.
    """
    if nx < 4 or nt < 3:
        raise ValueError(f"need nx >= 4 and nt >= 3, got {nx}, {nt}")
    h, dtau = 1.0 / (nx - 1), 1.0 / (nt - 1)
    i_in, j_in = np.meshgrid(np.arange(1, nx - 1), np.arange(1, nt), indexing="ij")
    j_b = np.arange(1, nt)
    parts = {
        "pde": np.stack([i_in.ravel(), j_in.ravel()], -1),
        "ic": np.stack([np.arange(1, nx), np.zeros(nx - 1, int)], -1),
        "inflow": np.stack([np.zeros(nt - 1, int), j_b], -1),
        "outflow": np.stack([np.full(nt - 1, nx - 1), j_b], -1),
    }
    sizes = [len(v) for v in parts.values()]
    offsets = np.cumsum([0] + sizes)
    terms = {k: slice(int(a), int(b)) for k, a, b in zip(parts, offsets[:-1], offsets[1:])}
    kind = np.repeat(np.arange(4), sizes)  # 0 pde, 1 ic, 2 inflow, 3 outflow
    scale = np.repeat([1.0 / math.sqrt(n) for n in sizes], sizes)
    n_pde, n_ic, n_b = sizes[0], sizes[1], sizes[2]

    def linear(u):
        # time derivative: centred inside, second-order backward at the last time (no row beyond it)
        ut = jnp.concatenate(
            [(u[:, 2:] - u[:, :-2]) / (2 * dtau), ((3 * u[:, -1] - 4 * u[:, -2] + u[:, -3]) / (2 * dtau))[:, None]],
            axis=1,
        )
        uxx = (u[2:, 1:] - 2 * u[1:-1, 1:] + u[:-2, 1:]) / h**2
        ux_end = (3 * u[-1, 1:] - 4 * u[-2, 1:] + u[-3, 1:]) / (2 * h)
        zb, zi = jnp.zeros((n_b,), u.dtype), jnp.zeros((n_ic,), u.dtype)
        value = jnp.concatenate([u[1:-1, 1:].ravel(), u[1:, 0], u[0, 1:], u[-1, 1:]])
        first = jnp.concatenate([ut[1:-1].ravel(), zi, zb, ux_end])
        second = jnp.concatenate([uxx.ravel(), zi, zb, zb])
        return jnp.stack([value, first, second])

    def data(a):
        z = jnp.zeros((n_pde,), a.dtype)
        return jnp.concatenate([z, a[0, 1:, 0], jnp.zeros((2 * n_b,), a.dtype)])[None]

    def pointwise(f, d, rows):
        u, first, second = f
        k = jnp.asarray(kind)[rows]
        # R(u) only where it is used: the other rows' values may lie anywhere (u = 1 at the inflow)
        r_pde = first - T * D / solvers.retardation(jnp.where(k == 0, u, 0.5)) * second
        r = jnp.select([k == 0, k == 1, k == 2], [r_pde, u - d[0], u - 1.0], u + D * first)
        return jnp.asarray(scale, u.dtype)[rows] * r

    return GridResidual(linear, data, pointwise, np.concatenate(list(parts.values())), terms, (nx, nt))


def diffusion_sorption_pairs(
    key: PRNGKeyArray, batch: int, s: int, nt: int = 51, T: float = 500.0, modes: int = 4
) -> tuple[Float[Array, "b 1 s nt"], Float[Array, "b 1 s nt"]]:
    """Random initial states ``u0`` and their diffusion–sorption trajectories on the ``(s, nt)`` grid.

    ``u0`` is a smooth random profile in ``[0, 0.2]`` (PDEBench's range; PDEBench draws every node
    independently, which finite differences in time cannot follow on a coarse grid): ``g(x) = sum_k c_k
    sin(k pi x + phi_k) / k`` over ``k <= modes`` with ``c_k ~ N(0, 1)``, ``phi_k ~ U(0, 2 pi)``, mapped
    affinely onto ``[0, 0.2]``; its node at ``x = 0`` is set to the inflow value 1. The trajectory comes from
    the method of lines on the same nodes (:func:`pdejax.solvers.diffusion_sorption`, Kvaerno5,
    rtol 1e-8), saved at the ``nt`` equally spaced times of ``[0, T]``.

    Returns:
        ``(a, u)``: ``a`` is ``u0`` broadcast over time, both ``(batch, 1, s, nt)``.
    """
    kc, kp = jax.random.split(key)
    x = jnp.linspace(0.0, 1.0, s)
    k = jnp.arange(1, modes + 1)
    c = jax.random.normal(kc, (batch, modes))
    phi = jax.random.uniform(kp, (batch, modes), maxval=2 * jnp.pi)
    g = jnp.einsum("bk,bkx->bx", c / k, jnp.sin(k[None, :, None] * jnp.pi * x[None, None] + phi[..., None]))
    lo, hi = g.min(axis=1, keepdims=True), g.max(axis=1, keepdims=True)
    u0 = (0.2 * (g - lo) / (hi - lo)).at[:, 0].set(1.0)
    system = solvers.diffusion_sorption(n=s)
    times = jnp.linspace(0.0, T, nt)
    traj = jax.vmap(lambda v: solvers.solve_mol(system, v, times))(u0)  # (b, nt, s)
    u = jnp.swapaxes(traj, 1, 2)[:, None]
    a = jnp.broadcast_to(u0[:, None, :, None], u.shape)
    return a, u


def navier_stokes_grid(s: int, nt: int) -> np.ndarray:
    """Coordinates ``(s, s, nt, 3)``: ``x, y = i / s, j / s`` on the periodic unit square (right end excluded),
    then ``t / T`` in ``[0, 1]`` (``indexing='ij'``)."""
    x, tau = np.arange(s) / s, np.linspace(0.0, 1.0, nt)
    return np.stack(np.meshgrid(x, x, tau, indexing="ij"), axis=-1)


def navier_stokes_residual(s: int, nt: int, nu: float = 1e-3, T: float = 1.0, initial: bool = True) -> GridResidual:
    """2D incompressible Navier–Stokes in vorticity form on the periodic unit square, ``w_t + u . grad w =
    nu Lap w`` with ``u = (psi_y, -psi_x)``, ``-Lap psi = w``, on the ``(s, s, nt)`` grid of
    :func:`navier_stokes_grid`, as residual rows for an input ``a = w0`` (broadcast over time, shape
    ``(1, s, s, nt)``):

    - ``pde``: ``w_t + u w_x + v w_y - nu Lap w`` at every spatial node and the times ``1..nt-1``; space
      derivatives and the velocity spectral (exact for the grid's trigonometric interpolant; the Nyquist
      mode dropped from odd derivatives), ``w_t`` centred in time, second-order backward at the last time;
    - ``ic``: ``w - w0`` at ``t = 0``, every node (``initial=False``: no such rows, for fields that hold the
      initial condition by construction, ``w = w0 + (t / T) N``, as the PI-HC code's operators do).

    The velocity is linear in ``w``, so the rows are pointwise (bilinear) functions of seven features linear
    in the field: ``w, w_t, w_x, w_y, u, v, Lap w``. Each term's rows are scaled by ``1 / sqrt(rows)``. The PI-HC
    code's setting (``neptune/pdes/navier_stokes_2d.py``) has the same rows with a Reynolds number of 1e4 on
    64^3 points; ``nu`` defaults to 1e-3 here (the FNO paper's middle viscosity), which a 32 x 32 grid resolves.
    """
    if s < 8 or s % 2 or nt < 3:
        raise ValueError(f"need an even s >= 8 and nt >= 3, got {s}, {nt}")
    if not (nu > 0 and T > 0):
        raise ValueError(f"need nu > 0 and T > 0, got {nu}, {T}")
    dt = T / (nt - 1)
    k = 2 * np.pi * np.fft.fftfreq(s, 1.0 / s)
    kr = 2 * np.pi * np.fft.rfftfreq(s, 1.0 / s)
    odd, oddr = np.where(np.arange(s) == s // 2, 0.0, k), np.where(np.arange(len(kr)) == s // 2, 0.0, kr)
    kx, ky = np.meshgrid(odd, oddr, indexing="ij")
    k2 = np.add.outer(k**2, kr**2)
    inv = np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
    # Fourier symbols of w_x, w_y, u = psi_y, v = -psi_x, Lap w (psi = w / |k|^2)
    symbols = np.stack([1j * kx, 1j * ky, 1j * ky * inv, -1j * kx * inv, -k2 + 0j])[..., None]
    ii, jj, tt = np.meshgrid(np.arange(s), np.arange(s), np.arange(1, nt), indexing="ij")
    i0, j0 = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    parts = {"pde": np.stack([ii.ravel(), jj.ravel(), tt.ravel()], -1)}
    if initial:
        parts["ic"] = np.stack([i0.ravel(), j0.ravel(), np.zeros(s * s, int)], -1)
    sizes = [len(v) for v in parts.values()]
    offsets = np.cumsum([0] + sizes)
    terms = {k: slice(int(a), int(b)) for k, a, b in zip(parts, offsets[:-1], offsets[1:])}
    kind = np.repeat(np.arange(len(sizes)), sizes)  # 0 pde, 1 ic
    scale = np.repeat([1.0 / math.sqrt(n) for n in sizes], sizes)

    def linear(u):
        last = (3 * u[..., -1] - 4 * u[..., -2] + u[..., -3]) / (2 * dt)
        wt = jnp.concatenate([(u[..., 2:] - u[..., :-2]) / (2 * dt), last[..., None]], axis=-1)
        spatial = jnp.fft.irfft2(jnp.asarray(symbols) * jnp.fft.rfft2(u[..., 1:], axes=(0, 1)), s=(s, s), axes=(1, 2))
        z = jnp.zeros((s * s,), u.dtype)
        pde = jnp.concatenate([u[None, ..., 1:], wt[None], spatial]).reshape(7, -1)
        if not initial:
            return pde
        ic = jnp.stack([u[..., 0].ravel()] + [z] * 6)
        return jnp.concatenate([pde, ic], axis=1)

    def data(a):
        ic = [a[0, :, :, 0].ravel()] if initial else []
        return jnp.concatenate([jnp.zeros((sizes[0],), a.dtype), *ic])[None]

    def pointwise(f, d, rows):
        w, wt, wx, wy, u, v, lap = f
        r = jnp.where(jnp.asarray(kind)[rows] == 0, wt + u * wx + v * wy - nu * lap, w - d[0])
        return jnp.asarray(scale, w.dtype)[rows] * r

    return GridResidual(
        linear, data, pointwise, np.concatenate(list(parts.values())), terms, (s, s, nt), periodic=(0, 1)
    )


def navier_stokes_pairs(
    key: PRNGKeyArray,
    batch: int,
    s: int,
    nt: int = 11,
    T: float = 1.0,
    nu: float = 1e-3,
    amplitude: float = 3.0,
    cutoff: int = 4,
    dt: float = 2.5e-3,
) -> tuple[Float[Array, "b 1 s s nt"], Float[Array, "b 1 s s nt"]]:
    """Random initial vorticities ``w0`` and their Navier–Stokes trajectories on the ``(s, s, nt)`` grid.

    ``w0`` has normal random Fourier coefficients on the modes ``0 < |m_i| <= cutoff`` of the periodic unit
    square, scaled to ``max |w0| = amplitude`` (:func:`pdejax.solvers.truncated_fourier_series`). With the
    defaults the field changes by ~60% (relative L2) over ``[0, T]`` and a 32 x 32 grid resolves it: the
    rows of :func:`navier_stokes_residual` are ~1% of ``|w_t|`` on the data (19% at 16 x 16, where
    the products alias; 0.65% at 64 x 64, the time differences' error). The FNO paper's Gaussian random
    field reaches the grid's Nyquist mode, and a 32 x 32 grid aliases its products: 5% of ``|w_t|``. The
    trajectory comes from the pseudo-spectral vorticity solver on the same grid
    (:func:`pdejax.solvers.navier_stokes_vorticity`, ETDRK4 with steps of at most ``dt``, 2/3 dealiasing),
    saved at the ``nt`` equally spaced times of ``[0, T]``.

    Returns:
        ``(a, w)``: ``a`` is ``w0`` broadcast over time, both ``(batch, 1, s, s, nt)``.
    """
    grid = solvers.PeriodicGrid((s, s), 1.0)
    w0 = amplitude * solvers.truncated_fourier_series(key, grid, cutoff, shape=(batch,))
    sub = max(1, math.ceil(T / (nt - 1) / dt - 1e-9))
    stepper = solvers.navier_stokes_vorticity(grid, T / (nt - 1) / sub, nu)
    traj = jax.vmap(solvers.rollout(solvers.repeat(stepper, sub), nt - 1, include_init=True))(w0)  # (b, nt, s, s)
    w = jnp.moveaxis(traj, 1, -1)[:, None]
    return jnp.broadcast_to(w0[:, None, :, :, None], w.shape), w


# -------------------------------------------------------------------------------- the constraint layer
# the experts' blend ramps (HardConstrainedOperator's ramp): 0 to 1 over t in [0, 1]; smoothstep has a
# continuous slope, smootherstep a continuous curvature too
_RAMP_SHAPES = {
    "linear": lambda t: t,
    "smooth": lambda t: t * t * (3 - 2 * t),
    "smoother": lambda t: t**3 * (t * (6 * t - 15) + 10),
}
RAMPS = tuple(_RAMP_SHAPES)


def _expert_weights(
    points: np.ndarray,
    grid: tuple[int, ...],
    counts: tuple[int, ...],
    overlap: float,
    periodic: tuple[int, ...] = (),
    ramp: str = "linear",
) -> np.ndarray:
    """``(n_points, K)`` partition of unity over the experts at grid indices ``points``: per axis, piece ``p``
    of ``c`` has weight ``s(i - e_p) - s(i - e_{p+1})`` with interfaces ``e_p`` halfway between the blocks'
    cells (``e_0 = -inf``, ``e_c = +inf``) and ``s`` a linear ramp from 0 to 1 over ``2 * overlap`` cells
    (a step when ``overlap = 0``: each point belongs to its block's expert alone); the product over axes,
    flattened row-major over the pieces. On a ``periodic`` axis the last and first blocks meet at an
    interface too (``e_0 = -1/2``, ``e_c = n - 1/2``), blended like the others: the pieces' images one period
    to either side are summed into the piece they repeat."""
    out = np.ones((points.shape[0], 1))
    for axis, (n, c) in enumerate(zip(grid, counts)):
        i = points[:, axis].astype(float)[:, None]
        wrap = axis in periodic and c > 1
        # periodic: the interfaces of three periods, so every ramp that reaches [0, n) is present
        p = np.arange(-c, 2 * c + 1) if wrap else np.arange(c + 1)
        e = p * n / c - 0.5
        if not wrap:
            e[0], e[-1] = -np.inf, np.inf
        z = i - e[None]
        up = _RAMP_SHAPES[ramp](np.clip(0.5 + z / (2 * overlap), 0.0, 1.0)) if overlap > 0 else (z > 0).astype(float)
        up[:, 0], up[:, -1] = 1.0, 0.0
        w = up[:, :-1] - up[:, 1:]
        if wrap:  # fold the images of piece q (q - c and q + c) onto it
            w = w.reshape(points.shape[0], 3, c).sum(axis=1)
        out = (out[:, :, None] * w[:, None, :]).reshape(points.shape[0], -1)
    return out


SCHWARZ = ("none", "lower", "upper", "both")
LOOPS = ("auto", "vmap", "map")
ORDERS = ("additive", "multiplicative")


def _support_edges(owner: np.ndarray, counts: tuple[int, ...], periodic: tuple[int, ...], sides: str) -> np.ndarray:
    """``(K, e)`` flat grid indices of each expert's support edge (padded with -1; ``e = 0`` for ``sides =
    'none'``): the points where its weight in ``owner`` (``(*grid, K)``) is positive next to a point along a
    split axis where it is zero, on the ``lower`` side (towards index 0), the ``upper`` side or ``both``."""
    k = owner.shape[-1]
    shifts = {"none": (), "lower": (1,), "upper": (-1,), "both": (1, -1)}[sides]
    out = []
    for e in range(k):
        inside = owner[..., e] > 0
        edge = np.zeros_like(inside)
        for axis, c in enumerate(counts):
            if c == 1:
                continue
            for shift in shifts:
                nb = np.roll(inside, shift, axis=axis)
                if axis not in periodic:  # the grid's own boundary is no interface
                    idx = [slice(None)] * inside.ndim
                    idx[axis] = 0 if shift == 1 else -1
                    nb[tuple(idx)] = True
                edge |= inside & ~nb
        out.append(np.flatnonzero(edge))
    longest = max(len(o) for o in out)
    return np.stack([np.pad(o, (0, longest - len(o)), constant_values=-1) for o in out])


class HardConstrainedOperator(eqx.Module):
    """A PI-HC neural operator (Chalapathi, Du & Krishnapriyan, ICLR 2024): ``u = sum_n w_n*(a) b_n(a)``.

    The backbone (an FNO) maps the input ``a`` to ``N`` basis fields ``b_n`` on the grid; for each sample
    the coefficients ``w*`` minimise the squared constraint rows ``r(sum_n w_n b_n, a)`` (the PDE, initial
    and boundary rows of a :class:`GridResidual`) plus ``ridge ||w||^2``, by Levenberg–Marquardt
    (optimistix, linear solves by lineax), differentiated by the implicit function theorem (never by
    unrolling). The rows' linear features are tabulated on the basis once per sample, so each solver
    iteration costs dot products only. With ``experts`` the grid is split into index blocks
    (``experts[a]`` pieces along axis ``a``); expert ``k`` solves for its own ``w_k`` from the rows whose
    points lie in its block and weights the basis there (PI-HC-MoE); the experts' solves are independent,
    smaller, batched with ``vmap``, and with several devices sharded over them (``jax.sharding``, one
    block of experts per device; as many devices as divide the number of experts).

    Attributes:
        net: backbone ``(c_in, *grid) -> (N, *grid)`` (``batched`` method or vmappable).
        residual: the constraint rows; experts: pieces per grid axis.
        rtol, atol, max_steps, ridge: Levenberg–Marquardt settings (defaults: 1e-4, 1e-4, 100 and 1e-8,
            the PI-HC code's values).
        damping: the first Levenberg–Marquardt damping (:class:`pdejax.solvers.DampedLevenbergMarquardt`;
            default 1e-10, a Gauss–Newton first step: 6-9 iterations per solve where optimistix's damping 1
            took 24-33, and on Navier–Stokes' experts a lower minimum, which damping 1 stopped short of).

    ``overlap`` (grid cells, default 0: a hard partition as in the paper) widens each block by that many
    cells on each side: the expert also constrains the rows there, and the field blends neighbouring
    experts' fields with weights that ramp from 0 to 1 across the ``2 * overlap`` cells around the interface
    (a partition of unity), so the assembled field has no jump there. ``ramp`` shapes that ramp: ``linear``
    (default), ``smooth`` (``3s^2 - 2s^3``) or ``smoother`` (``6s^5 - 15s^4 + 10s^3``); the smooth ramps have no
    kink at the ramp's ends, where a linear ramp puts a spike of ``1 / (2 overlap h^2)`` times the experts'
    difference into a finite-difference second derivative. On the residual's ``periodic`` axes
    (Navier–Stokes' x and y) the last and first blocks meet across the wrap and are blended there too.
    ``schwarz`` (``none`` by default; ``lower``, ``upper`` or ``both``; needs ``overlap > 0``) adds one additive
    Schwarz pass: after the experts' solves, each expert solves again, from its first coefficients, with
    extra rows at the edge of its support (the points next to where its weight is zero, on the lower-index
    side of each split axis, the upper side or both) asking its field to equal the blend of the other
    experts' first fields there. The rows carry in what an expert's own rows leave open: on
    diffusion–sorption, an expert away from ``x = 0`` never meets the inflow condition, so a front entering
    its block from the left is not fixed by its rows; ``lower`` hands it the left neighbour's field. The
    second solves are warm-started and differentiated implicitly like the first, whose coefficients the
    edge values depend on; the stats add both passes' iterations. ``passes`` (default 1) repeats the pass,
    each from the fields of the one before, so a value can travel across more than one expert. ``order``:
    ``additive`` (default; every expert solves its pass at once, from the previous pass's fields) or
    ``multiplicative`` (the experts solve in turn, each from the latest fields, so a value crosses every
    expert in one pass; these solves run one after another, unsharded).
    ``loop`` runs the samples' and experts' solves batched (``vmap``: one loop, which runs until the slowest
    solve stops), one after another (``map``: each stops at its own count), or ``auto`` (default): ``map``
    with Schwarz passes on a single CPU device, where the passes' solves differ most in length, else
    ``vmap``. Both give the same coefficients up to rounding.
    ``shared`` gives every expert all initial and boundary rows besides its PDE rows, wherever they lie (the
    PI-HC code's choice for diffusion–sorption; measured worse here, so off by default).

    ``initial=True`` builds the initial condition in, as the PI-HC code does for Navier–Stokes: the field is
    ``u = a_0 + (t / T) sum_n w_n b_n`` (``a_0``: the input's first channel, the initial state broadcast over
    time; ``t / T``: the last grid coordinate), so the residual needs no initial rows.

    ``n_constraint`` keeps a fixed random subset (``seed``) of that many PDE rows in total for the solves
    (divided among the experts; default all); the initial and boundary rows are always constrained. The
    training loss (:func:`grid_physics`) still sees every row.
    """

    net: eqx.Module
    residual: GridResidual = eqx.field(static=True)
    experts: tuple[int, ...] = eqx.field(static=True)
    _rows: _Points = eqx.field(static=True)
    _owner: _Points = eqx.field(static=True)
    _edge: _Points = eqx.field(static=True)
    rtol: float = eqx.field(static=True, default=1e-4)
    atol: float = eqx.field(static=True, default=1e-4)
    max_steps: int = eqx.field(static=True, default=100)
    ridge: float = eqx.field(static=True, default=1e-8)
    initial: bool = eqx.field(static=True, default=False)
    damping: float = eqx.field(static=True, default=1e-10)
    schwarz: str = eqx.field(static=True, default="none")
    passes: int = eqx.field(static=True, default=1)
    loop: str = eqx.field(static=True, default="auto")
    order: str = eqx.field(static=True, default="additive")

    def __init__(
        self,
        net: eqx.Module,
        residual: GridResidual,
        experts: tuple[int, ...] | None = None,
        *,
        rtol: float = 1e-4,
        atol: float = 1e-4,
        max_steps: int = 100,
        ridge: float = 1e-8,
        n_constraint: int | None = None,
        seed: int = 0,
        shared: bool = False,
        overlap: float = 0.0,
        initial: bool = False,
        damping: float = 1e-10,
        ramp: str = "linear",
        schwarz: str = "none",
        passes: int = 1,
        loop: str = "auto",
        order: str = "additive",
    ):
        grid = residual.grid
        experts = tuple(int(c) for c in (experts or (1,) * len(grid)))
        if len(experts) != len(grid) or any(c < 1 or c > n for c, n in zip(experts, grid)):
            raise ValueError(f"experts needs one piece count in [1, n] per grid axis {grid}, got {experts}")
        if max_steps < 1 or ridge < 0 or not (rtol > 0 and atol > 0 and damping > 0):
            raise ValueError(
                f"need max_steps >= 1, ridge >= 0, rtol, atol, damping > 0; got {max_steps}, {ridge}, {rtol}, "
                f"{atol}, {damping}"
            )
        k = math.prod(experts)
        if overlap < 0:
            raise ValueError(f"overlap must be >= 0, got {overlap}")
        if schwarz not in SCHWARZ:
            raise ValueError(f"schwarz must be one of {', '.join(SCHWARZ)}, got {schwarz!r}")
        if schwarz != "none" and (k == 1 or overlap <= 0):
            raise ValueError(f"a Schwarz pass needs several experts and overlap > 0; got {k} expert(s), {overlap}")
        if passes < 1:
            raise ValueError(f"passes must be >= 1, got {passes}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        if loop not in LOOPS:
            raise ValueError(f"loop must be one of {', '.join(LOOPS)}, got {loop!r}")
        if ramp not in RAMPS:
            raise ValueError(f"ramp must be one of {', '.join(RAMPS)}, got {ramp!r}")
        # an expert constrains the rows where its weight is positive: its block, widened by the overlap
        mine = _expert_weights(residual.where, grid, experts, overlap, residual.periodic, ramp) > 0
        pde = residual.terms["pde"]
        is_pde = (np.arange(residual.rows) >= pde.start) & (np.arange(residual.rows) < pde.stop)
        if shared:  # every expert also meets the initial and boundary rows, wherever they lie
            rows = [np.flatnonzero((mine[:, e] & is_pde) | ~is_pde) for e in range(k)]
        else:
            rows = [np.flatnonzero(mine[:, e]) for e in range(k)]
        if n_constraint is not None:
            # a fixed random subset of each expert's PDE rows (its share of n_constraint); the initial and
            # boundary rows are always kept, as the PI-HC code samples interior points only
            if n_constraint < k:
                raise ValueError(f"n_constraint={n_constraint} gives no PDE row to some of the {k} experts")
            rng = np.random.default_rng(seed)
            keep = []
            for r in rows:
                inner = r[(r >= pde.start) & (r < pde.stop)]
                pick = rng.choice(inner, min(len(inner), n_constraint // k), replace=False)
                keep.append(np.sort(np.concatenate([pick, r[(r < pde.start) | (r >= pde.stop)]])))
            rows = keep
        if any(len(r) == 0 for r in rows):
            raise ValueError(f"experts {experts}: some expert's block holds no constraint rows")
        longest = max(len(r) for r in rows)
        self.net = net
        self.residual = residual
        self.experts = experts
        # each expert's rows, padded to equal length with -1 (rows that are zero) so the solves vmap
        self._rows = _Points(np.stack([np.pad(r, (0, longest - len(r)), constant_values=-1) for r in rows]))
        idx = np.stack(np.meshgrid(*[np.arange(n) for n in grid], indexing="ij"), -1).reshape(-1, len(grid))
        owner = _expert_weights(idx, grid, experts, overlap, residual.periodic, ramp)
        self._owner = _Points(owner.reshape(grid + (k,)))
        self._edge = _Points(_support_edges(owner.reshape(grid + (k,)), experts, residual.periodic, schwarz))
        self.schwarz = schwarz
        self.passes = int(passes)
        self.loop = loop
        self.order = order
        self.rtol, self.atol, self.max_steps, self.ridge = rtol, atol, max_steps, ridge
        self.initial = bool(initial)
        self.damping = float(damping)

    @property
    def n_experts(self) -> int:
        return math.prod(self.experts)

    def _sequential(self) -> bool:
        """Whether the samples' and experts' solves run one after another (``lax.map``) or batched (``vmap``).

        ``auto``: one after another only with Schwarz passes, on a single CPU device. There the passes' solves
        vary most in length (measured on diffusion-sorption, 30 epochs trained, batch 8: one expert's pass
        took 50 Levenberg-Marquardt iterations on average and up to 78, the others 13-20), and a batched
        loop runs every sample and expert until the slowest stops; on a CPU a batched iteration costs about
        as much as the same iterations one by one. An accelerator runs a batch in the time of one solve,
        and several devices need the experts' batched axis to shard them over, so both batch (the samples
        then go one after another all the same: :meth:`_samples_sequential`)."""
        if self.loop != "auto":
            return self.loop == "map"
        return self.schwarz != "none" and jax.default_backend() == "cpu" and _expert_mesh(self.n_experts) is None

    def _samples_sequential(self) -> bool:
        """Whether a batch's samples are solved one after another: as the experts (:meth:`_sequential`), and
        always while the experts are sharded over devices. Vmapping the samples around the sharded experts'
        solver loops hung with 2 forced CPU devices (0% CPU; the default hc-moe on diffusion-sorption, a
        batch of 2 or more; tests/operators/test_slow_pihc.py)."""
        return self._sequential() or _expert_mesh(self.n_experts) is not None

    def basis(self, a: Float[Array, "b cin *grid"], x: Float[Array, "*grid d"]) -> Float[Array, "b N *grid"]:
        """The backbone's basis fields for a batch (times ``t / T`` with ``initial``)."""
        b = apply_batch(self.net, a, x)
        return b * x[..., -1].astype(b.dtype) if self.initial else b

    def coefficients(
        self, b: Float[Array, " N *grid"], a: Float[Array, " cin *grid"], adjoint: optx.AbstractAdjoint | None = None
    ) -> tuple[Float[Array, "K N"], ConstraintStats]:
        """Each expert's solved coefficients for one sample's basis ``b`` and input ``a``, and the solves' stats
        (``adjoint=optx.RecursiveCheckpointAdjoint()`` differentiates by unrolling instead, for comparison)."""
        res = self.residual
        tables = jax.vmap(res.linear)(b)  # (N, F, m): every row's features of every basis field
        # a diverged basis gives NaN coefficients, so the loss turns NaN and the trainer reports it
        tables, finite = zeros_unless_finite(tables)
        data = res.data(a)
        # the initial state's features: the fixed part of every row of u = a_0 + basis . w
        offset = res.linear(a[0]) if self.initial else jnp.zeros(tables.shape[1:], tables.dtype)
        n = b.shape[0]

        def rows(w, args):
            tab, d, sel, off, (b_e, g_e, c_e) = args
            f = off + jnp.einsum("nfk,n->fk", tab, w)
            r = jnp.where(sel >= 0, res.pointwise(f, d, jnp.maximum(sel, 0)), 0.0)
            # the Schwarz pass's edge rows: the field at the support's edge meets the neighbours' there
            r = jnp.concatenate([r, c_e * (w @ b_e - g_e)])
            # a learned basis can be nearly collinear: the ridge keeps w* unique and the adjoint solvable
            return jnp.concatenate([r, math.sqrt(self.ridge) * w]) if self.ridge else r

        flat_b = b.reshape(n, -1)
        edge = jnp.asarray(self._edge.data)  # (K, e): each expert's edge points (flat grid index), -1 padding

        def one(sel, w0, e_sel, g):
            at = jnp.maximum(sel, 0)
            # the edge rows as one more term: scaled so their squared norm is a mean square, as the others'
            c_e = jnp.where(e_sel >= 0, 1.0 / math.sqrt(max(edge.shape[1], 1)), 0.0).astype(b.dtype)
            args = (tables[:, :, at], data[:, at], sel, offset[:, at], (flat_b[:, jnp.maximum(e_sel, 0)], g, c_e))
            sol = optx.least_squares(
                rows,
                solvers.DampedLevenbergMarquardt(self.rtol, self.atol, self.damping),
                w0,
                args=args,
                max_steps=self.max_steps,
                throw=False,
                # the optimality condition's Jacobian can be singular in float32 (an expert whose block
                # holds no boundary row relies on the ridge alone): a pseudo-inverse (SVD) instead of LU
                adjoint=adjoint or optx.ImplicitAdjoint(linear_solver=lx.SVD()),
            )
            w = jnp.where(finite, sol.value, jnp.nan)
            r = rows(jax.lax.stop_gradient(w), jax.lax.stop_gradient(args))
            rms = jnp.sqrt(jnp.sum(r**2))
            ok = jnp.all(jnp.isfinite(w)) & (sol.result == optx.RESULTS.successful)
            return w, ConstraintStats(sol.stats["num_steps"], rms, ok)

        def each(*xs):
            # one solve after another: each stops at its own iteration count, where a vmapped loop runs
            # every expert until the slowest stops
            return jax.lax.map(lambda z: one(*z), xs) if self._sequential() else jax.vmap(one)(*xs)

        # with several devices, the experts' solves are placed one block of experts per device
        k = self.n_experts
        sel = shard_experts(jnp.asarray(self._rows.data), k)
        none = jnp.zeros((k, 0), edge.dtype)  # the plain experts' solves meet no edge rows
        w, stats = shard_experts(each(sel, jnp.zeros((k, n), b.dtype), none, none.astype(b.dtype)), k)
        if self.schwarz == "none":
            return w, stats
        # Schwarz passes: expert k solves again (from its last solution) and also meets, at its support's
        # edge, the blend of the other experts' current fields there: the neighbours' values, which carry in
        # what its own rows cannot fix (on diffusion-sorption, the front entering from the inflow)
        weight = jnp.asarray(self._owner.data, b.dtype).reshape(-1, k)
        others = 1.0 - weight  # the weights are a partition of unity
        steps, converged = stats.steps, stats.converged

        def edge_values(w):  # (K, e): at each expert's edge points, the blend of the other experts' fields
            mine = jnp.einsum("np,kn->pk", flat_b, w) * weight  # (points, K)
            g = (mine.sum(-1, keepdims=True) - mine) / jnp.where(others > 0, others, 1.0)
            return jnp.take_along_axis(g.T, jnp.maximum(edge, 0), axis=1)

        def after(w, j):
            # multiplicative: expert j solves from the fields as they are now, the experts before it in
            # this pass already updated, so a value crosses every expert in one pass
            w_j, st = one(sel[j], jax.lax.stop_gradient(w[j]), edge[j], edge_values(w)[j])
            return w.at[j].set(w_j), st

        for _ in range(self.passes):
            if self.order == "multiplicative":
                w, stats = jax.lax.scan(after, w, jnp.arange(k))
            else:
                w, stats = shard_experts(each(sel, jax.lax.stop_gradient(w), edge, edge_values(w)), k)
            steps, converged = steps + stats.steps, converged & stats.converged
        return w, ConstraintStats(steps, stats.residual, converged)

    def combine(self, b: Float[Array, " N *grid"], w: Float[Array, "K N"]) -> Float[Array, "*grid"]:
        """The field: at each grid point the basis weighted by its experts' coefficients (one expert's, or
        near an interface within the overlap a blend of its neighbours')."""
        return jnp.einsum("n...,...k,kn->...", b, jnp.asarray(self._owner.data, b.dtype), w)

    def solve(
        self, a: Float[Array, "b cin *grid"], x: Float[Array, "*grid d"]
    ) -> tuple[Float[Array, "b 1 *grid"], ConstraintStats]:
        """Constrained fields for a batch and the per-sample, per-expert solve stats (``(b, K)`` each;
        ``residual`` is the root of the expert's squared rows, its share of the physics loss)."""
        bases = self.basis(a, x)
        if self._samples_sequential():
            w, stats = jax.lax.map(lambda z: self.coefficients(*z), (bases, a))
        else:
            w, stats = jax.vmap(self.coefficients)(bases, a)
        u = jax.vmap(self.combine)(bases, w)
        return (u + a[:, 0] if self.initial else u)[:, None], stats

    def batched(self, a: Float[Array, "b cin *grid"], x: Float[Array, "*grid d"]) -> Float[Array, "b 1 *grid"]:
        """Constrained fields for a batch (the operator trainer's call)."""
        return self.solve(a, x)[0]

    def __call__(self, a: Float[Array, " cin *grid"], x: Float[Array, "*grid d"]) -> Float[Array, " 1 *grid"]:
        return self.batched(a[None], x)[0]


class InitialValueField(eqx.Module):
    """An operator whose field holds the initial condition by construction: ``u = a_0 + (t / T) N(a, x)``
    (``a_0``: the input's first channel, the initial state broadcast over time; ``t / T``: the last grid
    coordinate). The PI-HC code's form of the Navier–Stokes operators, soft and hard alike.

    Attributes:
        net: ``(b, c_in, *grid), (*grid, d) -> (b, 1, *grid)`` (``batched`` method or vmappable).
    """

    net: eqx.Module

    def batched(self, a: Float[Array, "b cin *grid"], x: Float[Array, "*grid d"]) -> Float[Array, "b 1 *grid"]:
        """The fields of a batch."""
        n = apply_batch(self.net, a, x)
        return a[:, :1] + x[..., -1].astype(n.dtype) * n

    def __call__(self, a: Float[Array, " cin *grid"], x: Float[Array, "*grid d"]) -> Float[Array, " 1 *grid"]:
        return self.batched(a[None], x)[0]


def solve_summary(
    op: HardConstrainedOperator, inputs: np.ndarray, coords: np.ndarray, batch: int = 50
) -> tuple[np.ndarray, dict]:
    """The constrained fields of every input (``(n, c_in, *grid) -> (n, 1, *grid)``, jitted batches) and a
    summary of their constraint solves: ``solves`` (samples x experts), ``converged_fraction``,
    ``iterations_mean``, ``iterations_max`` and ``residual_max``."""
    solve = eqx.filter_jit(lambda o, a, x: o.solve(a, x))
    x = jnp.asarray(coords)
    fields, steps, ok, res = [], [], [], []
    for i in range(0, len(inputs), batch):
        u, stats = solve(op, jnp.asarray(inputs[i : i + batch]), x)
        fields.append(np.asarray(u))
        steps.append(np.asarray(stats.steps))
        ok.append(np.asarray(stats.converged))
        res.append(np.asarray(stats.residual))
    steps, ok, res = (np.concatenate(v) for v in (steps, ok, res))
    summary = {"solves": int(ok.size), "converged_fraction": float(ok.mean()), "iterations_mean": float(steps.mean()),
               "iterations_max": int(steps.max()), "residual_max": float(res.max())}  # fmt: skip
    return np.concatenate(fields), summary


def grid_physics(residual: GridResidual) -> Callable[[Array, Array], Array]:
    """The per-sample physics loss ``(a, u) -> sum(r(u[0], a)**2)`` of a :class:`GridResidual`."""

    def physics(a, u):
        return jnp.sum(residual(u[0], a) ** 2)

    return physics
