"""Result pictures: prediction / reference / error panels and loss curves (matplotlib, no display)."""

from __future__ import annotations

import os

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_solution(problem, pred: np.ndarray, ref: np.ndarray, path: str | os.PathLike) -> None:
    """Save prediction, reference and |error| side by side on the problem's evaluation grid.

    Args:
        problem: the :class:`~pdejax.problems.Problem` (for its domain, grid and component names).
        pred, ref: values on ``problem.eval_points()``: ``(n,)`` or ``(n, c)``.
        path: output PNG.

    1D + time: x-t images. 2D steady: x-y images. 2D + time: x-y images at the final time.
    One row per field component.
    """
    plt = _plt()
    _, shape = problem.eval_points()
    dom = problem.domain
    c = problem.output_dim
    pred = np.asarray(pred, np.float64).reshape(shape + (c,))
    ref = np.asarray(ref, np.float64).reshape(shape + (c,))
    lo, hi = dom.lower, dom.upper
    if dom.dim == 2:
        extent = (lo[0], hi[0], lo[1], hi[1])
        labels = ("x", "t" if dom.has_time else "y")
        title_suffix = ""
        take = lambda a: a  # noqa: E731
    elif dom.dim == 3:
        extent = (lo[0], hi[0], lo[1], hi[1])
        labels = ("x", "y")
        title_suffix = f" at t = {hi[2]:.3g}" if dom.has_time else f" at z = {hi[2]:.3g}"
        take = lambda a: a[:, :, -1]  # noqa: E731
    else:
        extent, labels, title_suffix = None, ("x", ""), ""
        take = None
    fig, axes = plt.subplots(c, 3, figsize=(13, 3.6 * c), squeeze=False)
    for j in range(c):
        name = problem.output_names[j]
        p, r = pred[..., j], ref[..., j]
        if take is None:  # 1D steady: line plots
            x = np.linspace(lo[0], hi[0], shape[0])
            axes[j, 0].plot(x, p)
            axes[j, 1].plot(x, r)
            axes[j, 2].semilogy(x, np.abs(p - r) + 1e-300)
            for ax, ttl in zip(axes[j], ("prediction", "reference", "|error|")):
                ax.set_title(f"{ttl} {name}")
            continue
        p, r = take(p), take(r)
        vmin, vmax = float(r.min()), float(r.max())
        panels = ((p, "prediction", vmin, vmax), (r, "reference", vmin, vmax), (np.abs(p - r), "|error|", None, None))
        for ax, (img, ttl, a, b) in zip(axes[j], panels):
            im = ax.imshow(
                img.T,
                origin="lower",
                extent=extent,
                aspect="auto",
                vmin=a,
                vmax=b,
                cmap="magma" if ttl == "|error|" else "RdBu_r",
            )
            ax.set_title(f"{ttl} {name}{title_suffix}")
            ax.set_xlabel(labels[0])
            ax.set_ylabel(labels[1])
            fig.colorbar(im, ax=ax)
    fig.suptitle(f"{problem.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_losses(
    history: np.ndarray, names, path: str | os.PathLike, eval_steps=(), eval_values=(), xlabel: str = "step"
) -> None:
    """Save every loss term against the step (log scale) and, if given, rel. L2 against the step."""
    plt = _plt()
    n_panels = 2 if len(eval_steps) else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(6.5 * n_panels, 4), squeeze=False)
    ax = axes[0, 0]
    steps = np.arange(1, history.shape[0] + 1)
    for j, name in enumerate(names):
        ax.semilogy(steps, np.maximum(history[:, j], 1e-300), label=name, lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss term")
    ax.legend()
    ax.grid(alpha=0.3)
    if n_panels == 2:
        ax = axes[0, 1]
        ax.semilogy(eval_steps, eval_values, "o-")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("relative L2 error")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_compare(runs: list[dict], path: str | os.PathLike, title: str = "") -> None:
    """Save rel. L2 error against wall time for every run (one colour per method, log-log axes).

    Each run dict needs ``method``, ``eval_times`` and ``eval_rel_l2``.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    methods = list(dict.fromkeys(r["method"] for r in runs))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for r in runs:
        c = colours[methods.index(r["method"]) % len(colours)]
        label = (
            r["method"]
            if r.get("seed", 0) == min(q.get("seed", 0) for q in runs if q["method"] == r["method"])
            else None
        )
        ax.loglog(r["eval_times"], r["eval_rel_l2"], "o-", color=c, alpha=0.8, ms=3, label=label)
    ax.set_xlabel("wall time [s]")
    ax.set_ylabel("relative L2 error")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_error_history(times, errors, path: str | os.PathLike, title: str = "") -> None:
    """Save the rel. L2 error against time (log scale): ``times``, ``errors`` of equal length ``(m,)``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.semilogy(np.asarray(times), np.maximum(np.asarray(errors), 1e-300), "o-", ms=3)
    ax.set_xlabel("t")
    ax.set_ylabel("relative L2 error")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_operator_samples(
    inputs: np.ndarray,
    pred: np.ndarray,
    true: np.ndarray,
    coords: np.ndarray,
    path: str | os.PathLike,
    labels: tuple[str, ...] | None = None,
) -> None:
    """Save input, prediction, truth and |error| for a few samples of an operator (one row per sample).

    Args:
        inputs: ``(k, c_in, *grid)``; pred, true: ``(k, c_out, *grid)`` (first channel shown);
        coords: ``(*grid, d)`` with ``d`` = 1 (line plots), 2 (images) or 3 (space-time ``(x, y, t)``: the
            input at the first time, the fields at the last); path: output PNG.
        labels: names of the coordinates (grid axis 0 is drawn vertically in images, axis 1 across).
    """
    plt = _plt()
    k, d = len(inputs), coords.shape[-1]
    last = d == 3
    if last:
        coords, d = coords[..., 0, :2], 2
    fig, axes = plt.subplots(k, 4, figsize=(13, 2.8 * k), squeeze=False)
    for i in range(k):
        a, p, t = inputs[i, 0], pred[i, 0], true[i, 0]
        if last:
            a, p, t = a[..., 0], p[..., -1], t[..., -1]
        when = " (last time)" if last else ""
        panels = (("input", a), ("prediction" + when, p), ("truth" + when, t), ("|error|" + when, np.abs(p - t)))
        for ax, (title, v) in zip(axes[i], panels):
            if d == 1:
                ax.plot(coords[:, 0], v, lw=1.2)
                if title.startswith("prediction"):
                    ax.plot(coords[:, 0], t, "k--", lw=0.8, label="truth")
                    ax.legend(fontsize=7)
            else:
                ext = (coords[0, 0, 1], coords[0, -1, 1], coords[0, 0, 0], coords[-1, 0, 0])
                im = ax.imshow(v, origin="lower", extent=ext, aspect="auto", cmap="viridis")
                fig.colorbar(im, ax=ax, fraction=0.046)
                if labels:
                    ax.set_ylabel(labels[0], fontsize=8)
                    ax.set_xlabel(labels[1], fontsize=8)
            rel = np.linalg.norm(p - t) / np.linalg.norm(t)
            ax.set_title(f"{title}" + (f" (rel L2 {rel:.2e})" if title.startswith("|error|") else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_diffusion_samples(samples: dict, physics, path: str | os.PathLike, k: int = 4) -> None:
    """Save generated fields with their PDE residual maps: for each variant (``{'pidm': (n, 2, h, w), ...}``),
    rows permeability, pressure and ``|r|`` (log colour scale, shared by all variants) for ``k`` samples."""
    import jax
    import jax.numpy as jnp
    from matplotlib.colors import LogNorm

    plt = _plt()
    rows = []
    for name, x in samples.items():
        x = np.asarray(x[:k])
        r = np.asarray(jax.vmap(lambda f: jnp.abs(physics.equality(f)))(jnp.asarray(x)))
        rows += [(name, "permeability", x[:, 0]), (name, "pressure", x[:, 1]), (name, "|residual|", r)]
    k = min(k, min(len(v) for v in samples.values()))
    res = np.concatenate([v.ravel() for n, t, v in rows if t == "|residual|"])
    lo, hi = max(float(np.percentile(res, 1)), 1e-12), max(float(res.max()), 1e-11)
    fig, axes = plt.subplots(len(rows), k, figsize=(2.6 * k, 2.3 * len(rows)), squeeze=False)
    for i, (name, title, v) in enumerate(rows):
        for j in range(k):
            ax = axes[i, j]
            field = v[j]
            if title == "|residual|":
                im = ax.imshow(np.maximum(field, lo), origin="lower", cmap="magma", norm=LogNorm(lo, hi))
                ax.set_title(f"{name} |r| mean {np.mean(field):.2e}", fontsize=8)
            else:
                im = ax.imshow(field, origin="lower", cmap="viridis")
                ax.set_title(f"{name} {title}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
