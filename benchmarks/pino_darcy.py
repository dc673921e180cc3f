"""Physics-informed operator learning (PINO) on Darcy with 10% of the labels, against data-only training.

Both runs train the same FNO for the same number of optimizer steps on the same labelled 10% of the
training set; the PINO run also sees every training input (labelled or not) through the preconditioned
Darcy residual (:func:`pdejax.operators.darcy_physics`). The data are generated directly on the grid
used for training, so the residual of the true solution is zero there.

    python benchmarks/pino_darcy.py --resolution 43 --n-train 1000 --epochs 60
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax

from pdejax import operators as O


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=43)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--labels", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=60, help="epochs of the PINO run (over all training inputs)")
    p.add_argument("--physics-weight", type=float, default=1.0)
    p.add_argument("--data-dir", default="runs/data")
    p.add_argument("--out", default=None)
    p.add_argument("--progress", action="store_true")
    args = p.parse_args()
    n = args.n_train + args.n_test
    path = Path(args.data_dir) / f"darcy-{args.resolution}-{n}.npz"
    if path.exists():
        data = O.load_dataset(path)
    else:
        data = O.generate("darcy", n, resolution=args.resolution, progress=args.progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        O.save_dataset(path, data)
    train, test = data.split(args.n_train, args.n_test)
    n_lab = int(round(args.labels * args.n_train))
    steps = args.epochs * (args.n_train // 20)
    runs = {
        # data only: the labelled samples alone, as many epochs as give the PINO run's step count
        "data only": O.OperatorConfig(epochs=steps // (n_lab // 20), n_labelled=n_lab, eval_every=10**9),
        "PINO": O.OperatorConfig(
            epochs=args.epochs, n_labelled=n_lab, physics_weight=args.physics_weight, eval_every=10**9
        ),  # fmt: skip
    }
    rows = {}
    for name, cfg in runs.items():
        cfg = O.OperatorConfig(**{**cfg.__dict__, "lr_step_epochs": max(cfg.epochs // 5, 1)})
        fno = O.FNO(1, 1, (12, 12), 32, 4, padding=max(1, args.resolution // 9), key=jax.random.PRNGKey(0))
        r = O.train_operator(fno, train.subset(slice(0, n_lab)) if name == "data only" else train, test, cfg,
                             physics=O.darcy_physics, progress=args.progress)  # fmt: skip
        rows[name] = dict(test_rel_l2=r.test_rel_l2, epochs=r.epochs, steps=r.epochs * (len(train) // 20
                          if name == "PINO" else n_lab // 20), wall_time_s=r.wall_time_s)  # fmt: skip
        print(
            f"{name}: test rel L2 {r.test_rel_l2:.3e} ({rows[name]['steps']} steps, {r.wall_time_s:.0f}s)", flush=True
        )
    print(f"\n| Darcy {args.resolution}x{args.resolution}, {n_lab} of {args.n_train} labelled | test rel L2 | steps |")
    print("|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['test_rel_l2']:.2e} | {r['steps']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(dict(vars(args), rows=rows), indent=2))


if __name__ == "__main__":
    main()
