"""MultiAdam against Adam on Burgers in PINNacle's Burgers1d-C setting (the MultiAdam authors' own benchmark).

PINNacle (Hao et al., NeurIPS 2024; github.com/i207M/PINNacle, ``benchmark.py``, ``src/pde/burgers.py``)
trains a 100x5 tanh MLP on u_t + u u_x = (0.01/pi) u_xx with 8192 interior, 2048 boundary and 2048 initial
points drawn once, loss weights 1, 20000 steps of Adam(lr 1e-3) or MultiAdam(lr 1e-3, betas (0.99, 0.99),
groups [PDE] and [initial + boundary]). Its Table 3 reports rel. L2 1.45e-2 (PINN, Adam) and 4.85e-2
(MultiAdam). This script runs the same setting with pdejax's optimizers, side by side, so the figures can
be compared with the paper's:

    python benchmarks/multiadam_pinnacle.py --steps 20000 --seeds 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from pdejax import pinns, problems


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--methods", default="adam,multiadam")
    p.add_argument("--out", default="runs/multiadam-pinnacle")
    p.add_argument("--progress", action="store_true")
    a = p.parse_args()
    problem = problems.get("burgers")
    rows = []
    for method in a.methods.split(","):
        for seed in range(a.seeds):
            s = pinns.settings_for(
                problem, method, model="mlp", width=100, depth=5, activation="tanh", constraints="soft",
                steps=a.steps, learning_rate=1e-3, decay_rate=1.0, resample_every=0, adaptive="none",
                n_points={"pde": 8192, "ic": 2048, "bc": 2048}, seed=seed,
            )  # fmt: skip
            t0 = time.perf_counter()
            sol = pinns.solve(problem, s, progress=a.progress)
            err = float(np.linalg.norm(sol.prediction - sol.reference) / np.linalg.norm(sol.reference))
            rows.append({"method": method, "seed": seed, "rel_l2": err, "wall_time_s": time.perf_counter() - t0})
            print(f"{method} seed {seed}: rel. L2 {err:.3e} ({rows[-1]['wall_time_s']:.0f} s)", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    print("| method | rel. L2 (mean over seeds) | PINNacle Table 3 |")
    print("|---|---|---|")
    paper = {"adam": "1.45e-2", "multiadam": "4.85e-2"}
    for method in a.methods.split(","):
        errs = [r["rel_l2"] for r in rows if r["method"] == method]
        print(f"| {method} | {np.mean(errs):.3e} | {paper.get(method, '-')} |")


if __name__ == "__main__":
    main()
