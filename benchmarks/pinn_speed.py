"""PINN training speed: DeepXDE's Burgers example (PyTorch backend) vs the same set-up in pdejax.

Both run in this script on the same machine and threads: network 2-20-20-20-1 tanh (Glorot normal),
2540 domain + 80 boundary + 160 initial points, soft constraints, Adam with lr 1e-3, float32. Each side is
warmed up (compilation, first iterations); then timed blocks of iterations alternate between the two
frameworks, so both see the same machine load, and the medians are compared. Prints iterations per
second of each, the ratio pdejax / DeepXDE, and each one's rel. L2 error against the Cole–Hopf reference
afterwards, to show both solve the same problem.

    pip install -e ".[bench]"          # deepxde, torch==2.13.0 (CPU build)
    python benchmarks/pinn_speed.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np


def build_deepxde(threads: int):
    os.environ["DDE_BACKEND"] = "pytorch"
    import deepxde as dde
    import torch

    torch.set_num_threads(threads)
    geom = dde.geometry.Interval(-1, 1)
    timedomain = dde.geometry.TimeDomain(0, 0.99)
    geomtime = dde.geometry.GeometryXTime(geom, timedomain)

    def pde(x, y):
        dy_x = dde.grad.jacobian(y, x, i=0, j=0)
        dy_t = dde.grad.jacobian(y, x, i=0, j=1)
        dy_xx = dde.grad.hessian(y, x, i=0, j=0)
        return dy_t + y * dy_x - 0.01 / np.pi * dy_xx

    bc = dde.icbc.DirichletBC(geomtime, lambda x: 0, lambda _, on_boundary: on_boundary)
    ic = dde.icbc.IC(geomtime, lambda x: -np.sin(np.pi * x[:, 0:1]), lambda _, on_initial: on_initial)
    data = dde.data.TimePDE(geomtime, pde, [bc, ic], num_domain=2540, num_boundary=80, num_initial=160)
    net = dde.nn.FNN([2] + [20] * 3 + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3)

    def run(n: int) -> None:
        model.train(iterations=n, display_every=n, verbose=0)

    return run, lambda pts: model.predict(pts.astype(np.float32))[:, 0]


def build_pdejax(total: int):
    import jax

    import pdejax.problems as P
    from pdejax.pinns import TrainConfig, Trainer, make_field, predict

    problem = P.get("burgers")
    field, tp = make_field(problem, "mlp", width=20, depth=3, constraints="soft", key=jax.random.PRNGKey(0))
    cfg = TrainConfig(steps=total, learning_rate=1e-3, decay_rate=1.0, n_points={"pde": 2540, "bc": 80, "ic": 160})
    trainer = Trainer(tp, field, cfg)
    box = {"state": trainer.init_state()}

    def run(n: int) -> None:
        box["state"], (rows, *_) = trainer.step(box["state"], n)
        jax.block_until_ready(rows)

    return run, lambda pts: predict(trainer.field(box["state"]), pts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block", type=int, default=500, help="iterations per timed block")
    ap.add_argument("--rounds", type=int, default=8, help="timed blocks per framework, interleaved")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    a = ap.parse_args()
    import pdejax.problems as P

    problem = P.get("burgers")
    pts, _ = problem.eval_points()
    ref = problem.reference(pts)
    runners = {"deepxde": build_deepxde(a.threads), "pdejax": build_pdejax(a.block * (a.rounds + 1))}
    rates: dict[str, list[float]] = {k: [] for k in runners}
    for run, _ in runners.values():
        run(a.block)  # warm-up: compilation, first iterations
    # Interleave the timed blocks so that both frameworks see the same machine load.
    for _ in range(a.rounds):
        for name, (run, _) in runners.items():
            t = time.perf_counter()
            run(a.block)
            rates[name].append(a.block / (time.perf_counter() - t))
    out = {}
    its = a.block * (a.rounds + 1)
    for name, (_, pred_fn) in runners.items():
        pred = np.asarray(pred_fn(pts), np.float64).reshape(-1)
        med = float(np.median(rates[name]))
        rel = float(np.linalg.norm(pred - ref) / np.linalg.norm(ref))
        out[name] = {"it_per_s_median": med, "it_per_s_all": rates[name], "rel_l2": rel}
        lo, hi = min(rates[name]), max(rates[name])
        print(
            f"{name:8s} {med:8.1f} it/s (median of {a.rounds}; range {lo:.1f}-{hi:.1f})   "
            f"rel L2 after {its} its: {rel:.3e}"
        )
    ratio = out["pdejax"]["it_per_s_median"] / out["deepxde"]["it_per_s_median"]
    per_round = [p / d for p, d in zip(rates["pdejax"], rates["deepxde"])]
    out["ratio"] = ratio
    out["ratio_per_round"] = per_round
    print(
        f"ratio pdejax / deepxde = {ratio:.2f}x (per round {min(per_round):.2f}-{max(per_round):.2f}; "
        f"threads={a.threads}, cpu_count={os.cpu_count()})"
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0 if math.isfinite(ratio) else 1


if __name__ == "__main__":
    raise SystemExit(main())
