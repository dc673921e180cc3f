"""Operator-learning accuracy: FNO, DeepONet and MultiONet on Burgers (1D) and Darcy (2D), FNO-paper settings.

Generates the datasets with pdejax.solvers (or reads them with --data-dir), trains each model with the
FNO paper's schedule (Adam 1e-3, weight decay 1e-4, lr halved every epochs/5, batch 20) and prints a
table of test relative L2 (mean over test samples). Results go to --out as JSON.

    python benchmarks/operator_accuracy.py --problem burgers1d --epochs 500
    python benchmarks/operator_accuracy.py --problem darcy --epochs 500 --models fno
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

from pdejax import operators as O

SETTINGS = {  # the FNO paper's sizes: Burgers 1000/200 samples, Darcy 1000/100 at 85x85
    "burgers1d": dict(n_train=1000, n_test=200, fno=dict(modes=16, width=64)),
    "darcy": dict(n_train=1000, n_test=100, fno=dict(modes=(12, 12), width=32, padding=9)),
}


def build(model: str, problem: str, data: O.OperatorDataset, key):
    d = data.coords.shape[-1]
    n_sensors = data.inputs[0].size
    if model == "fno":
        return O.FNO(data.inputs.shape[1], data.outputs.shape[1], **SETTINGS[problem]["fno"], key=key)
    if model == "deeponet":
        return O.DeepONet(n_sensors, d, width=128, depth=3, p=128, key=key)
    if model == "multionet":
        return O.MultiONet(n_sensors, d, width=128, depth=5, key=key)
    raise ValueError(model)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problem", choices=sorted(SETTINGS), default="burgers1d")
    p.add_argument("--models", default="fno,deeponet,multionet")
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--data-dir", default="runs/data")
    p.add_argument("--out", default=None)
    p.add_argument("--progress", action="store_true")
    args = p.parse_args()
    s = SETTINGS[args.problem]
    n_train = args.n_train or s["n_train"]
    res = args.resolution or O.DATASETS[args.problem].resolution
    path = Path(args.data_dir) / f"{args.problem}-{res}-{n_train + s['n_test']}.npz"
    if path.exists():
        data = O.load_dataset(path)
    else:
        t = time.perf_counter()
        data = O.generate(args.problem, n_train + s["n_test"], resolution=res, progress=args.progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        O.save_dataset(path, data)
        print(f"generated {len(data)} {args.problem} samples at {res} in {time.perf_counter() - t:.1f}s -> {path}")
    train, test = data.split(n_train, s["n_test"])
    cfg = O.OperatorConfig(
        epochs=args.epochs, lr_step_epochs=max(args.epochs // 5, 1), eval_every=max(args.epochs // 10, 1)
    )
    rows = []
    for m in args.models.split(","):
        net = build(m, args.problem, data, jax.random.PRNGKey(0))
        r = O.train_operator(net, train, test, cfg, progress=args.progress)
        rows.append(
            dict(
                model=m,
                test_rel_l2=r.test_rel_l2,
                wall_time_s=r.wall_time_s,
                epochs=r.epochs,
                curve=list(zip(r.eval_epochs, r.eval_rel_l2)),
            )
        )
        print(
            f"{args.problem} {m}: test rel L2 {r.test_rel_l2:.3e} ({r.wall_time_s:.0f}s, {r.epochs} epochs)", flush=True
        )
    print(
        f"\n| {args.problem} ({n_train}/{s['n_test']}, res {res}, {args.epochs} epochs, {jax.devices()[0].platform}) "
        "| test rel L2 | wall time |\n|---|---|---|"
    )
    for r in rows:
        print(f"| {r['model']} | {r['test_rel_l2']:.2e} | {r['wall_time_s']:.0f} s |")
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                dict(
                    problem=args.problem,
                    resolution=res,
                    n_train=n_train,
                    n_test=s["n_test"],
                    epochs=args.epochs,
                    rows=rows,
                ),
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
