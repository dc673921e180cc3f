"""Physics-informed diffusion (PIDM) on the paper's Darcy case against the same DDPM without the physics term.

Both models (same U-Net, seed, data, steps) generate joint permeability/pressure fields; the script prints
the mean |PDE residual| of their samples (and of the solver's training data, the floor), the ratio, the
pressure error against the solver run on each generated permeability, and the permeability's mean/std
against the training data's. The solver data are independent of the models (``pdejax.solvers``).

    python benchmarks/pidm_darcy.py --resolution 32 --steps 6000 --cascade --out runs/pidm-bench

Without ``--split`` or ``--cascade`` both models share one U-Net over the channels (unlike ``pdejax solve
darcy --method pidm``, whose default is the cascade), so the commands recorded in the README reproduce.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pdejax import operators as O


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--physics-weight", type=float, default=None)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--sampler", default="ddpm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/pidm-bench")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--normalise", default=None, choices=("channel", "none"), help="see operators.build_diffusion")
    p.add_argument("--physics-through", default=None, choices=("pressure", "all"))
    p.add_argument("--no-ema-warmup", action="store_true", help="fixed EMA decay from the first step")
    p.add_argument("--split", action="store_true", help="one U-Net per channel (operators.ChannelSplit)")
    p.add_argument("--cascade", action="store_true", help="--split, the pressure's U-Net reading the K estimate")
    p.add_argument("--ordered", action="store_true", help="--cascade, the K U-Net reading the K channel only")
    p.add_argument("--snr-floor", type=float, default=None, help="floor of the x0 loss weight (default 1; 0: none)")
    p.add_argument(
        "--low-noise-mix",
        type=float,
        default=None,
        help="share of training steps drawn by the residual term's weight (default 0.5; 0: uniform)",
    )
    p.add_argument("--prediction", default=None, choices=("x0", "eps", "v"), help="what the network predicts")
    p.add_argument("--clip-per-backbone", action="store_true", help="clip each channel's U-Net's gradient alone")
    p.add_argument("--combine", default=None, choices=("sum", "config", "config_per_backbone"),
                   help="PIDM's update: the summed gradient or ConFIG of the data and physics gradients")  # fmt: skip
    p.add_argument("--no-baseline", action="store_true", help="train the PIDM model only (no physics-free twin)")
    p.add_argument(
        "--sample-variance",
        default="posterior",
        choices=("posterior", "data"),
        help="ddpm's reverse noise (data, the library's default: with the posterior covariance from the training "
        "fields; posterior here, so the README's recorded commands reproduce)",
    )
    p.add_argument("--data", default=None, help="a dataset file (pdejax data darcy) instead of generating the pairs")
    a = p.parse_args()
    settings = O.pidm_settings(
        "darcy", resolution=a.resolution, n_train=a.n_train, steps=a.steps, batch_size=a.batch, width=a.width,
        depth=a.depth, learning_rate=a.lr, physics_weight=a.physics_weight, samples=a.samples, sampler=a.sampler,
        seed=a.seed, baseline=not a.no_baseline, normalise=a.normalise, physics_through=a.physics_through,
        ema_warmup=not a.no_ema_warmup, split_channels="ordered" if a.ordered else "cascade" if a.cascade else a.split,
        snr_floor=a.snr_floor,
        low_noise_mix=a.low_noise_mix,
        prediction=a.prediction, clip_per_backbone=a.clip_per_backbone, combine=a.combine, data=a.data,
        sample_variance=a.sample_variance,
    )  # fmt: skip
    t0 = time.perf_counter()
    sol = O.solve_pidm("darcy", settings, out_dir=a.out, resume=a.resume, progress=a.progress)
    report = O.pidm_report(sol)
    report["wall_time_s"] = time.perf_counter() - t0
    report["train_time_s"] = {k: r.wall_time_s for k, r in sol.results.items()}
    report["settings"] = settings
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "report.json").write_text(json.dumps(report, indent=2, default=float))
    res, perm = report["residual_mean_abs"], report["permeability"]
    print(f"Darcy {a.resolution}x{a.resolution}, {a.n_train} training pairs, {a.steps} steps per model, "
          f"{a.samples} samples ({a.sampler})")  # fmt: skip
    print("| model | mean abs residual | pressure rel L2 vs solver | K mean (rel diff) | K std (rel diff) |")
    print("|---|---|---|---|---|")
    for v in [v for v in ("pidm", "ddpm") if v in res]:
        prel = report["pressure_rel_l2"][v]
        prel = "n/a" if prel is None else f"{prel:.3e} ({report['pressure_unsolved_samples'][v]} unsolved)"
        print(f"| {v} | {res[v]:.3e} | {prel} | {perm[v]['mean']:.3f} "
              f"({perm[v]['mean_rel_diff']:.1%}) | {perm[v]['std']:.3f} ({perm[v]['std_rel_diff']:.1%}) |")  # fmt: skip
    print(f"| training data | {res['data']:.3e} | - | {perm['data']['mean']:.3f} | {perm['data']['std']:.3f} |")
    if "residual_ratio" in report:
        print(f"residual ratio (no physics / PIDM): {report['residual_ratio']:.1f}x")
    print(f"wall time {report['wall_time_s']:.0f} s")


if __name__ == "__main__":
    main()
