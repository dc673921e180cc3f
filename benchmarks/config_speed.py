"""ConFIG step speed: pdejax vs the authors' `conflictfree` package (PyTorch) on the Burgers PINN.

Same network (2-20-20-20-1 tanh), same points (2540 residual, 80 boundary, 160 initial; pdejax samples
them and hands the very same arrays to PyTorch), float32, three loss terms, Adam(lr 1e-3) on the ConFIG
direction. PyTorch follows the package's documented recipe: one backward pass per loss term,
`get_gradient_vector`, `ConFIG_update`, `apply_gradient_vector`, `optimizer.step()`. Timed blocks
alternate between the frameworks. Also times pdejax's plain Adam step on the weighted sum, for the cost
of ConFIG relative to Adam (target <= 1.5x) and prints pdejax / PyTorch speed (target >= 3x).

    pip install -e ".[bench]"        # torch==2.13.0 (CPU), conflictfree
    python benchmarks/config_speed.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import numpy as np


def build_pdejax(block: int, optimizer: str, width: int = 20, depth: int = 3):
    import jax

    import pdejax.problems as P
    from pdejax import pinns

    problem = P.get("burgers")
    field, tp = pinns.make_field(problem, "mlp", width=width, depth=depth, constraints="soft",
                                 key=jax.random.PRNGKey(0))  # fmt: skip
    cfg = pinns.TrainConfig(steps=10**7, decay_rate=1.0, n_points={"pde": 2540, "bc": 80, "ic": 160})
    trainer = pinns.Trainer(tp, field, cfg, pinns.config(1e-3) if optimizer == "config" else None)
    box = {"state": trainer.init_state()}

    def run():
        box["state"], (rows, *_) = trainer.step(box["state"], block)
        jax.block_until_ready(rows)

    points = {k: np.asarray(v) for k, v in box["state"].points.items()}
    return run, points, problem.params["nu"]


def build_torch(points, nu: float, threads: int, block: int, width: int = 20, depth: int = 3):
    import torch
    from conflictfree.grad_operator import ConFIG_update
    from conflictfree.utils import apply_gradient_vector, get_gradient_vector

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sizes = [2] + [width] * depth
    layers = [m for a, b in zip(sizes[:-1], sizes[1:]) for m in (torch.nn.Linear(a, b), torch.nn.Tanh())]
    net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    pde = torch.tensor(points["pde"], dtype=torch.float32, requires_grad=True)
    ic = torch.tensor(points["ic"], dtype=torch.float32)
    bc = torch.tensor(points["bc"], dtype=torch.float32)

    def loss_pde():
        u = net(pde)
        du = torch.autograd.grad(u.sum(), pde, create_graph=True)[0]
        ux, ut = du[:, 0:1], du[:, 1:2]
        uxx = torch.autograd.grad(ux.sum(), pde, create_graph=True)[0][:, 0:1]
        return ((ut + u * ux - nu * uxx) ** 2).mean()

    def loss_ic():
        return ((net(ic) + torch.sin(math.pi * ic[:, 0:1])) ** 2).mean()

    def loss_bc():
        return (net(bc) ** 2).mean()

    def run():
        for _ in range(block):
            grads = []
            for loss_fn in (loss_pde, loss_ic, loss_bc):
                opt.zero_grad()
                loss_fn().backward()
                grads.append(get_gradient_vector(net))
            apply_gradient_vector(net, ConFIG_update(torch.stack(grads)))
            opt.step()

    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", default=None)
    ap.add_argument("--width", type=int, default=20, help="hidden width (default: the 2-20-20-20-1 network)")
    ap.add_argument("--depth", type=int, default=3, help="hidden layers (the ConFIG paper's Burgers net: 50, 5)")
    a = ap.parse_args()
    run_cfg, points, nu = build_pdejax(a.block, "config", a.width, a.depth)
    run_adam, _, _ = build_pdejax(a.block, "adam", a.width, a.depth)
    runners = {
        "pdejax_config": run_cfg,
        "pdejax_adam": run_adam,
        "torch_config": build_torch(points, nu, a.threads, a.block, a.width, a.depth),
    }
    for run in runners.values():
        run()  # warm-up / compilation
    rates = {k: [] for k in runners}
    for _ in range(a.rounds):
        for name, run in runners.items():
            t = time.perf_counter()
            run()
            rates[name].append(a.block / (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in rates.items()}
    for k, v in med.items():
        print(f"{k:14s} {v:8.1f} steps/s (median of {a.rounds} blocks of {a.block})")
    out = {
        "steps_per_s": med,
        "config_over_adam_cost": med["pdejax_adam"] / med["pdejax_config"],
        "pdejax_over_torch_speed": med["pdejax_config"] / med["torch_config"],
    }
    print(f"ConFIG step cost / Adam step cost (pdejax) = {out['config_over_adam_cost']:.2f}x (target <= 1.5)")
    print(f"pdejax ConFIG / conflictfree PyTorch ConFIG speed = {out['pdejax_over_torch_speed']:.2f}x (target >= 3)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
