"""FNO training speed: pdejax (JAX) against neuraloperator (PyTorch), same configuration, same data, side by side.

Both train the FNO paper's model for the same epochs on the same random data (Adam lr 1e-3, batch 20,
relative-L2 loss): 1D Burgers (1000 samples at 256 points, width 64, 16 modes, 4 layers, projection 128)
and 2D Darcy (100 samples at 85x85, width 32, 12x12 modes, 4 layers, projection 128, no padding).
neuraloperator's FNO is configured to do the same work: one linear lifting layer, grid positional
embedding, linear skips, no channel MLP, no normalisation, no domain padding; ``n_modes=(30,)`` and
``(24, 22)`` keep the same 16 and 24x12 modes (its convention counts both signs). Differences left:
neuraloperator applies GELU twice in each block and adds a bias in the spectral convolution; pdejax uses
JAX's default (tanh) GELU. Each side's first epoch (compilation / warm-up) is timed separately.

Needs ``pip install torch==2.13.0 neuraloperator`` (the ``bench`` extra). Run on an otherwise idle machine:

    python benchmarks/fno_speed.py --epochs 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

CASES = {
    1: dict(n=1000, res=256, width=64, modes=16, torch_modes=(30,), proj_ratio=2),
    2: dict(n=100, res=85, width=32, modes=12, torch_modes=(24, 22), proj_ratio=4),
}


def pdejax_epochs(dim: int, X: np.ndarray, Y: np.ndarray, epochs: int, threads: int) -> list[float]:
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    from pdejax import operators as O

    c = CASES[dim]
    net = O.FNO(1, 1, (c["modes"],) * dim, c["width"], 4, proj=128, key=jax.random.PRNGKey(0))
    axes = [np.arange(c["res"]) / c["res"]] * dim
    x = jnp.asarray(np.stack(np.meshgrid(*axes, indexing="ij"), -1), jnp.float32)
    opt = optax.adam(1e-3)
    params, static = eqx.partition(net, eqx.is_inexact_array)
    A, U = jnp.asarray(X), jnp.asarray(Y)
    nb = len(X) // 20

    def loss(p, a, u):
        pred = O.apply_batch(eqx.combine(p, static), a, x)
        axes = tuple(range(1, u.ndim))
        return jnp.sum(jnp.sqrt(jnp.sum((pred - u) ** 2, axes)) / jnp.sqrt(jnp.sum(u**2, axes)))

    def step(carry, idx):
        p, s = carry
        g = jax.grad(loss)(p, A[idx], U[idx])
        upd, s = opt.update(g, s, p)
        return (optax.apply_updates(p, upd), s), None

    @jax.jit
    def epoch(p, s, key):
        key, sub = jax.random.split(key)
        perm = jax.random.permutation(sub, len(X))[: nb * 20].reshape(nb, 20)
        (p, s), _ = jax.lax.scan(step, (p, s), perm)
        return p, s, key

    state = (params, opt.init(params), jax.random.PRNGKey(0))
    times = []
    for _ in range(epochs + 1):
        t0 = time.perf_counter()
        state = jax.block_until_ready(epoch(*state))
        times.append(time.perf_counter() - t0)
    return times


def torch_epochs(dim: int, X: np.ndarray, Y: np.ndarray, epochs: int, threads: int) -> list[float]:
    import torch
    from neuralop.models import FNO

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    c = CASES[dim]
    m = FNO(n_modes=c["torch_modes"], in_channels=1, out_channels=1, hidden_channels=c["width"], n_layers=4,
            lifting_channel_ratio=0, projection_channel_ratio=c["proj_ratio"], positional_embedding="grid",
            use_channel_mlp=False, fno_skip="linear", norm=None, domain_padding=None)  # fmt: skip
    A, U = torch.from_numpy(X), torch.from_numpy(Y)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    times = []
    for _ in range(epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(len(X))
        for b in range(0, len(X) - 19, 20):
            idx = perm[b : b + 20]
            a, u = A[idx], U[idx]
            opt.zero_grad()
            pred = m(a)
            loss = (torch.linalg.vector_norm((pred - u).flatten(1), dim=1)
                    / torch.linalg.vector_norm(u.flatten(1), dim=1)).sum()  # fmt: skip
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return times


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after the first (warm-up) one")
    p.add_argument("--dims", default="1,2")
    p.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads (JAX uses all cores)")
    args = p.parse_args()
    rows = []
    for dim in map(int, args.dims.split(",")):
        c = CASES[dim]
        rng = np.random.default_rng(0)
        X = rng.normal(size=(c["n"], 1) + (c["res"],) * dim).astype(np.float32)
        Y = rng.normal(size=X.shape).astype(np.float32)
        tj = pdejax_epochs(dim, X, Y, args.epochs, args.threads)
        tt = torch_epochs(dim, X, Y, args.epochs, args.threads)
        mj, mt = float(np.median(tj[1:])), float(np.median(tt[1:]))
        rows.append((dim, c, tj[0], mj, tt[0], mt))
        print(f"{dim}D: pdejax first {tj[0]:.2f}s, then {mj:.3f} s/epoch | neuraloperator first {tt[0]:.2f}s, "
              f"then {mt:.3f} s/epoch | ratio {mt / mj:.2f}x", flush=True)  # fmt: skip
    print("\n| case | pdejax s/epoch | neuraloperator s/epoch | speed-up |\n|---|---|---|---|")
    for dim, c, _, mj, _, mt in rows:
        grid = "x".join([str(c["res"])] * dim)
        print(f"| {dim}D FNO, {c['n']} x {grid}, width {c['width']} | {mj:.3f} | {mt:.3f} | {mt / mj:.2f}x |")


if __name__ == "__main__":
    main()
