"""Operator-learning datasets: generation with pdejax.solvers, the NPZ layout, and a PDEBench HDF5 reader.

File layout (``.npz``, written by :func:`save_dataset`, checked by :func:`load_dataset`):

==========  ===========================  =====================================================
key         shape                        meaning
==========  ===========================  =====================================================
inputs      ``(n, c_in, *grid)``         input functions (initial field, coefficient) on the grid
outputs     ``(n, c_out, *grid)``        solutions on the same grid
coords      ``(*grid, d)``               coordinates of the grid points (``indexing='ij'``)
name        scalar string                dataset kind (``'burgers1d'``, ``'darcy'`` or other)
params      scalar string (JSON)         generation parameters (viscosity, resolution, seed, ...)
==========  ===========================  =====================================================
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .. import solvers

LAYOUT = ("inputs", "outputs", "coords", "name", "params")


class DatasetError(ValueError):
    """A dataset file is missing, unreadable, or does not have the documented layout."""


@dataclasses.dataclass(frozen=True)
class OperatorDataset:
    """Pairs of input and output functions on one grid (see the module docstring for the layout).

    Attributes:
        inputs: ``(n, c_in, *grid)``; outputs: ``(n, c_out, *grid)``; coords: ``(*grid, d)``.
        name: dataset kind; params: how it was generated.
    """

    inputs: np.ndarray
    outputs: np.ndarray
    coords: np.ndarray
    name: str = "custom"
    params: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        _check_layout(self.inputs, self.outputs, self.coords, "dataset")

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(self.coords.shape[:-1])

    def subset(self, index) -> OperatorDataset:
        """The samples ``index`` (a slice or integer array) as a new dataset."""
        return dataclasses.replace(self, inputs=self.inputs[index], outputs=self.outputs[index])

    def split(self, n_train: int, n_test: int) -> tuple[OperatorDataset, OperatorDataset]:
        """The first ``n_train`` samples and the following ``n_test`` samples."""
        if n_train < 1 or n_test < 1 or n_train + n_test > len(self):
            raise ValueError(f"cannot split {len(self)} samples into {n_train} train + {n_test} test")
        return self.subset(slice(0, n_train)), self.subset(slice(n_train, n_train + n_test))

    def downsample(self, factor: int) -> OperatorDataset:
        """Every ``factor``-th grid point per axis (the FNO paper's lower resolutions)."""
        if factor < 1:
            raise ValueError(f"downsampling factor must be >= 1, got {factor}")
        d = self.coords.ndim - 1
        g = (slice(None), slice(None)) + (slice(None, None, factor),) * d
        return dataclasses.replace(
            self,
            inputs=self.inputs[g],
            outputs=self.outputs[g],
            coords=self.coords[(slice(None, None, factor),) * d],
            params={**self.params, "downsample": factor * int(self.params.get("downsample", 1))},
        )


def _check_layout(inputs, outputs, coords, where: str) -> None:
    shapes = {k: np.shape(v) for k, v in (("inputs", inputs), ("outputs", outputs), ("coords", coords))}
    if len(shapes["coords"]) < 2:
        raise DatasetError(f"{where}: coords must have shape (*grid, d), got {shapes['coords']}")
    grid, d = shapes["coords"][:-1], shapes["coords"][-1]
    if d != len(grid):
        raise DatasetError(f"{where}: coords of shape {shapes['coords']} should end in d = {len(grid)} (grid {grid})")
    for k in ("inputs", "outputs"):
        s = shapes[k]
        if len(s) != len(grid) + 2 or tuple(s[2:]) != tuple(grid):
            raise DatasetError(
                f"{where}: {k} must have shape (n, channels, *grid) = (n, c, {', '.join(map(str, grid))}), got {s}"
            )
    if shapes["inputs"][0] != shapes["outputs"][0]:
        raise DatasetError(f"{where}: {shapes['inputs'][0]} inputs but {shapes['outputs'][0]} outputs")
    for k, v in (("inputs", inputs), ("outputs", outputs), ("coords", coords)):
        if not np.issubdtype(np.asarray(v).dtype, np.floating):
            raise DatasetError(f"{where}: {k} must be floating point, got {np.asarray(v).dtype}")
        if not np.all(np.isfinite(v)):
            raise DatasetError(f"{where}: {k} contains NaN or Inf")


def save_dataset(path: str | os.PathLike, data: OperatorDataset) -> None:
    """Write ``data`` to ``path`` (NPZ, the documented layout), atomically."""
    from .._io import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(
        buf,
        inputs=data.inputs,
        outputs=data.outputs,
        coords=data.coords,
        name=np.asarray(data.name),
        params=np.asarray(json.dumps(data.params)),
    )
    atomic_write_bytes(path, buf.getvalue())


def load_dataset(path: str | os.PathLike) -> OperatorDataset:
    """Read a dataset written by :func:`save_dataset`; a PDEBench ``.h5``/``.hdf5`` file goes to
    :func:`read_pdebench`. Raises :class:`DatasetError` naming what was expected when the layout is wrong."""
    path = Path(path)
    if path.suffix in (".h5", ".hdf5"):
        return read_pdebench(path)
    if not path.exists():
        raise DatasetError(f"no dataset file at {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in LAYOUT if k not in f.files]
            if missing:
                raise DatasetError(
                    f"{path}: missing {', '.join(missing)}; a pdejax dataset holds {', '.join(LAYOUT)} "
                    f"(found {', '.join(f.files) or 'nothing'})"
                )
            arrays = {k: f[k] for k in LAYOUT}
    except DatasetError:
        raise
    except Exception as e:  # zip/pickle errors all mean an unusable file
        raise DatasetError(f"{path} is not a readable NPZ dataset ({type(e).__name__}: {e})") from None
    try:
        params = json.loads(str(arrays["params"]))
    except json.JSONDecodeError:
        raise DatasetError(f"{path}: params is not JSON") from None
    _check_layout(arrays["inputs"], arrays["outputs"], arrays["coords"], str(path))
    return OperatorDataset(arrays["inputs"], arrays["outputs"], arrays["coords"], str(arrays["name"]), params)


def read_pdebench(path: str | os.PathLike, time_index: int = -1) -> OperatorDataset:
    """Read a PDEBench HDF5 file of 1D Burgers or 2D Darcy flow (Takamoto et al., NeurIPS 2022).

    * 1D Burgers (``1D_Burgers_Sols_Nu*.hdf5``): ``tensor (n, t, x)``, ``x-coordinate (x,)``; inputs are
      the fields at the first time, outputs at ``time_index``.
    * 2D Darcy (``2D_DarcyFlow_beta*.hdf5``): ``nu (n, x, y)`` (coefficient), ``tensor (n, 1, x, y)``
      (solution), ``x-coordinate``, ``y-coordinate``.

    Needs ``h5py`` (``pip install h5py``).
    """
    try:
        import h5py
    except ImportError:
        raise DatasetError("reading PDEBench HDF5 files needs h5py: pip install h5py") from None
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"no dataset file at {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path} is not a readable HDF5 file ({e})") from None
    with f:
        keys = set(f.keys())
        if {"nu", "tensor", "x-coordinate", "y-coordinate"} <= keys:
            a, u = np.asarray(f["nu"]), np.asarray(f["tensor"])
            x, y = np.asarray(f["x-coordinate"]), np.asarray(f["y-coordinate"])
            if a.ndim != 3 or u.shape != (a.shape[0], 1, *a.shape[1:]) or a.shape[1:] != (x.size, y.size):
                raise DatasetError(
                    f"{path}: PDEBench Darcy expects nu (n, {x.size}, {y.size}) and tensor (n, 1, {x.size}, "
                    f"{y.size}); got nu {a.shape}, tensor {u.shape}"
                )
            coords = np.stack(np.meshgrid(x, y, indexing="ij"), axis=-1)
            return OperatorDataset(
                a[:, None].astype(np.float32), u.astype(np.float32), coords, "darcy", {"source": str(path)}
            )
        if {"tensor", "x-coordinate"} <= keys:
            u, x = np.asarray(f["tensor"]), np.asarray(f["x-coordinate"])
            if u.ndim != 3 or u.shape[2] != x.size or u.shape[1] < 2:
                raise DatasetError(f"{path}: PDEBench 1D Burgers expects tensor (n, t >= 2, {x.size}); got {u.shape}")
            return OperatorDataset(
                u[:, :1].astype(np.float32),
                u[:, time_index][:, None].astype(np.float32),
                x[:, None],
                "burgers1d",
                {"source": str(path), "time_index": time_index},
            )
        raise DatasetError(
            f"{path}: not a PDEBench Burgers or Darcy file: expected datasets 'tensor' and 'x-coordinate' "
            f"(plus 'nu', 'y-coordinate' for Darcy); found {sorted(keys)}"
        )


# ---------------------------------------------------------------------------------------------- generation


def burgers1d_pairs(
    key: PRNGKeyArray, n: int, resolution: int = 256, nu: float = 0.1, t: float = 1.0, dt: float = 1e-3
) -> tuple[Float[Array, "n 1 x"], Float[Array, "n 1 x"]]:
    """Random initial fields and the Burgers solutions at time ``t`` (the FNO paper's setting).

    ``u_t + (u^2/2)_x = nu u_xx`` on the periodic unit interval, ``u0 ~ N(0, 625 (-Lap + 25 I)^-2)``
    (Li et al., ICLR 2021), solved with the 2/3-dealiased ETDRK4 pseudo-spectral stepper of
    :func:`pdejax.solvers.burgers` on ``resolution`` points with steps ``<= dt``.
    """
    grid = solvers.PeriodicGrid(resolution, 1.0)
    u0 = solvers.gaussian_random_field(key, grid, alpha=2.0, tau=5.0, sigma=25.0, shape=(n,))
    steps = int(np.ceil(t / dt - 1e-9))
    run = solvers.repeat(solvers.burgers(grid, nu, t / steps), steps, check=True)
    return u0[:, None], jax.vmap(run)(u0)[:, None]


def darcy_pairs(
    key: PRNGKeyArray, n: int, resolution: int = 85, high: float = 12.0, low: float = 3.0, rtol: float = 1e-8
) -> tuple[Float[Array, "n 1 s s"], Float[Array, "n 1 s s"]]:
    """Random piecewise-constant permeability and the Darcy pressure (the FNO paper's setting).

    ``a = high`` where a Gaussian random field ``psi ~ N(0, (-Lap + 9 I)^-2)`` is >= 0, ``low`` elsewhere
    (Li et al., ICLR 2021); ``-div(a grad u) = 1`` on the unit square with ``u = 0`` on the boundary,
    solved by :func:`pdejax.solvers.darcy` (finite volumes, preconditioned CG) on a ``resolution^2``
    vertex grid. ``psi`` is drawn on a periodic square twice as large and cropped, so it is not periodic.
    """
    h = 1.0 / (resolution - 1)
    m = 2 * (resolution - 1)
    grid = solvers.PeriodicGrid((m, m), m * h)
    psi = solvers.gaussian_random_field(key, grid, alpha=2.0, tau=3.0, shape=(n,))[:, :resolution, :resolution]
    a = jnp.where(psi >= 0, high, low)
    u = jax.vmap(lambda c: solvers.darcy(c, 1.0, solver="cg", rtol=rtol, atol=rtol * 1e-2))(a)
    return a[:, None], u[:, None]


def darcy_residual(a: Float[Array, "s s"], u: Float[Array, "s s"], f: float = 1.0) -> Float[Array, "s-2 s-2"]:
    """The discrete Darcy residual ``-div(a grad u) - f`` at the interior vertices (the finite-volume
    operator of :class:`pdejax.solvers.DarcyOperator`, whose exact zero is the solver's solution); ``u``'s
    boundary values are ignored here (penalise them separately)."""
    return solvers.DarcyOperator(a)(u[1:-1, 1:-1]) - f


def source_sink(n: int, width: float = 0.125, rate: float = 10.0) -> np.ndarray:
    """The PIDM paper's Darcy source on ``n x n`` cells: ``+rate`` on ``[0, width]^2``, ``-rate`` on
    ``[1 - width, 1]^2``, zero elsewhere, as cell averages (so the sum is exactly zero on any grid)."""
    edges = np.arange(n + 1) / n
    lo = np.clip(np.minimum(edges[1:], width) - edges[:-1], 0.0, None) * n  # overlap of each cell with [0, w]
    hi = lo[::-1]
    return rate * (np.outer(lo, lo) - np.outer(hi, hi))


def darcy_lognormal_pairs(
    key: PRNGKeyArray, n: int, resolution: int = 64, length_scale: float = 0.1, terms: int = 64, rtol: float = 1e-9
) -> tuple[Float[Array, "n 1 s s"], Float[Array, "n 1 s s"]]:
    """Log-normal permeability and the Darcy pressure of the PIDM paper (Bastek, Sun, Kochmann, ICLR 2025).

    ``K = exp(G)``, ``G`` Gaussian with exponential covariance (length 0.1, 64 Karhunen–Loève terms,
    :func:`pdejax.solvers.lognormal_permeability`); ``-div(K grad p) = f`` on the unit square with a source
    and a sink in opposite corners (:func:`source_sink`), no flux through the walls and ``mean(p) = 0``,
    solved by :func:`pdejax.solvers.darcy_flux_free` on ``resolution^2`` cells. ``rtol``: CG's, 100x below
    the float32 storage (at 1e-10 one high-contrast field of seed 1's 32x32 data, K up to 45, stalled short of
    it in the jitted batch: its true residual was 3e-13, but CG stopped at its step limit and raised).
    """
    K = solvers.lognormal_permeability(key, resolution, length_scale, terms, shape=(n,))
    f = jnp.asarray(source_sink(resolution), K.dtype)
    p = jax.vmap(lambda k: solvers.darcy_flux_free(k, f, rtol=rtol, atol=rtol * 1e-2))(K)
    return K[:, None], p[:, None]


def darcy_flux_free_residual(
    K: Float[Array, "s s"], p: Float[Array, "s s"], f: Float[Array, "s s"] | None = None
) -> Float[Array, "s s"]:
    """The discrete residual ``-div(K grad p) - f`` of the no-flux Darcy problem on every cell (the
    operator of :class:`pdejax.solvers.DarcyFluxFreeOperator`, whose zero is the solver's solution;
    the walls' no-flux condition is built into the stencil). ``f`` defaults to :func:`source_sink`."""
    f = source_sink(K.shape[0]) if f is None else f
    return solvers.DarcyFluxFreeOperator(K)(p) - f


@dataclasses.dataclass(frozen=True)
class DatasetKind:
    """How to generate one kind of dataset: its pair generator, default resolution and coordinates."""

    pairs: Callable
    resolution: int
    description: str
    coords: Callable[[int], np.ndarray]


DS_OPERATOR_NT = 51  # saved times of the diffusion-sorption operator dataset
NS_OPERATOR_NT = 11  # saved times of the Navier-Stokes operator dataset (t = 0, 0.1, ..., 1)


def _pihc():
    # imported when used: _pihc builds on the trainer, which imports this module
    from . import _pihc

    return _pihc


def diffusion_sorption_operator_physics(a: Float[Array, "1 s nt"], u: Float[Array, "1 s nt"]) -> Float[Array, ""]:
    """The diffusion-sorption physics loss of one (x, t) field: the sum of the PDE, IC and BC rows' mean
    squares (:func:`pdejax.operators.diffusion_sorption_residual` on ``u``'s grid, ``a`` the initial state
    broadcast over time)."""
    return _pihc().grid_physics(_pihc().diffusion_sorption_residual(*u.shape[1:]))(a, u)


def navier_stokes_operator_physics(a: Float[Array, "1 s s nt"], u: Float[Array, "1 s s nt"]) -> Float[Array, ""]:
    """The Navier–Stokes physics loss of one vorticity field on the (x, y, t) grid: the PDE and IC rows' mean
    squares (:func:`pdejax.operators.navier_stokes_residual`, ``a`` the initial vorticity broadcast over time)."""
    return _pihc().grid_physics(_pihc().navier_stokes_residual(u.shape[1], u.shape[3]))(a, u)


def _burgers_coords(s):
    return (np.arange(s) / s)[:, None]


def _cell_coords(s):
    x = (np.arange(s) + 0.5) / s
    return np.stack(np.meshgrid(x, x, indexing="ij"), axis=-1)


def _darcy_coords(s):
    x = np.linspace(0.0, 1.0, s)
    return np.stack(np.meshgrid(x, x, indexing="ij"), axis=-1)


DATASETS: dict[str, DatasetKind] = {
    "burgers1d": DatasetKind(
        burgers1d_pairs, 256, "1D Burgers nu=0.1, random u0 -> u(t=1), periodic (FNO paper)", _burgers_coords
    ),
    "darcy": DatasetKind(
        darcy_pairs, 85, "2D Darcy, piecewise-constant a in {3, 12} -> pressure, f=1 (FNO paper)", _darcy_coords
    ),
    "darcy_lognormal": DatasetKind(
        darcy_lognormal_pairs,
        64,
        "2D Darcy, log-normal K -> pressure, source/sink, no-flux walls (PIDM paper)",
        _cell_coords,
    ),
    "diffusion_sorption_operator": DatasetKind(
        lambda key, n, s: _pihc().diffusion_sorption_pairs(key, n, s, nt=DS_OPERATOR_NT),
        64,
        "1D diffusion-sorption, random u0 -> u(x, t) on an (x, t) grid of 51 times (PI-HC paper's setting)",
        lambda s: _pihc().diffusion_sorption_grid(s, DS_OPERATOR_NT),
    ),
    "navier_stokes_operator": DatasetKind(
        lambda key, n, s: _pihc().navier_stokes_pairs(key, n, s, nt=NS_OPERATOR_NT),
        32,
        "2D Navier-Stokes (vorticity, nu=1e-3), random w0 -> w(x, y, t) on an (x, y, t) grid of 11 times (PI-HC paper)",
        lambda s: _pihc().navier_stokes_grid(s, NS_OPERATOR_NT),
    ),
}


def generate(
    name: str,
    n: int,
    *,
    resolution: int | None = None,
    seed: int = 0,
    batch: int = 100,
    progress: bool = False,
    **params,
) -> OperatorDataset:
    """Generate ``n`` input/output pairs of dataset ``name`` (one of :data:`DATASETS`) with pdejax.solvers.

    Samples are produced in jitted, vmapped batches of ``batch`` (a progress bar with ``progress``);
    the result is reproducible from ``seed`` and ``batch``.

    Returns:
        An :class:`OperatorDataset` with float32 ``inputs``/``outputs`` of shape ``(n, 1, *grid)`` (solved in
        float64).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    if n < 1 or batch < 1:
        raise ValueError(f"need n >= 1 and batch >= 1, got n={n}, batch={batch}")
    kind = DATASETS[name]
    s = kind.resolution if resolution is None else int(resolution)
    even = name in ("burgers1d", "navier_stokes_operator")
    if s < 8 or (even and s % 2):
        raise ValueError(f"resolution must be >= 8{' and even' if even else ''}, got {s}")
    # the solves run in float64 whatever the global setting (float32 CG cannot reach the tolerance); the
    # pairs are stored as float32, far below any operator's learning error
    with jax.enable_x64(True):
        make = jax.jit(lambda k: kind.pairs(k, batch, s, **params))
        keys = jax.random.split(jax.random.PRNGKey(seed), -(-n // batch))
        pairs = (make(k) for k in keys)
        return _collect(
            pairs, n, batch, kind.coords(s), name, {"resolution": s, "seed": seed, "n": n, **params}, progress
        )


def _collect(pairs, n, batch, coords, name, params, progress) -> OperatorDataset:
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, unit="sample", desc=f"{name} data", dynamic_ncols=True)
    ins, outs = [], []
    for a, u in pairs:
        ins.append(np.asarray(a, np.float32))
        outs.append(np.asarray(u, np.float32))
        if bar is not None:
            bar.update(min(batch, n - bar.n))
    if bar is not None:
        bar.close()
    inputs, outputs = np.concatenate(ins)[:n], np.concatenate(outs)[:n]
    return OperatorDataset(inputs, outputs, coords, name, params)


def _inverse_laplacian(r: Float[Array, "m m"]) -> Float[Array, "m m"]:
    """``(-Lap_h)^-1 r`` with zero Dirichlet values (5-point Laplacian on the unit square's interior
    vertices), exactly, by the sine transform ``S`` that diagonalises it (``S^2 = (m+1)/2 I``)."""
    m = r.shape[0]
    j = np.arange(1, m + 1)
    S = np.sin(np.pi * np.outer(j, j) / (m + 1))
    half = np.sin(np.pi * j / (2 * (m + 1))) ** 2
    lam = 4 * (m + 1) ** 2 * (half[:, None] + half[None])
    if isinstance(r, np.ndarray):  # constants (the source's norm) stay in NumPy float64
        return (2 / (m + 1)) ** 2 * S @ ((S @ r @ S) / lam) @ S
    S = jnp.asarray(S, r.dtype)
    return (2 / (m + 1)) ** 2 * S @ ((S @ r @ S) / jnp.asarray(lam, r.dtype)) @ S


def darcy_physics(a: Float[Array, "1 s s"], u: Float[Array, "1 s s"]) -> Float[Array, ""]:
    """Per-sample PINO loss for Darcy: the preconditioned discrete residual, relative to the source.

    The residual ``r = -div(a grad u) - f`` (:func:`darcy_residual`) scales like ``e / h^2`` for an error
    ``e``, so its plain mean square weights the finest grid modes ``h^-4`` times more than the smooth
    ones and gradient descent stalls on it. Mapped back by ``(-mean(a) Lap_h)^-1`` it is about the error
    itself: the loss ``|| (mean(a) Lap_h)^-1 r || / || (mean(a) Lap_h)^-1 f ||`` is a relative error of
    the solution in a norm equivalent to L2 — on the scale of the relative-L2 data loss, so one weight
    balances the two at every accuracy (a squared norm would fade as the error falls). Zero exactly at the
    finite-volume solution (the data's).
    """
    r = darcy_residual(a[0], u[0])
    z = _inverse_laplacian(r)  # the factor 1/mean(a) cancels in the ratio
    # the source's norm depends on the grid only: a trace-time constant, not work per sample and step
    zf = _inverse_laplacian(np.ones(r.shape))
    # + tiny: a finite gradient even where the residual vanishes exactly
    return jnp.sqrt(jnp.sum(z**2) / float(np.sum(zf**2)) + jnp.finfo(z.dtype).tiny)


PHYSICS: dict[str, Callable] = {
    "darcy": darcy_physics,
    "diffusion_sorption_operator": diffusion_sorption_operator_physics,
    "navier_stokes_operator": navier_stokes_operator_physics,
}
