"""PINN failure modes (Krishnapriyan et al., NeurIPS 2021): vanilla PINN vs curriculum vs LPINN.

Rows: convection ``u_t + beta u_x = 0`` for beta in {1, 10, 30, 50, 100}, and reaction-diffusion
``u_t = nu u_xx + rho u (1 - u)`` (nu = 5, rho = 5). Methods, all float32 on the same machine:

- vanilla: the paper's PINN, a 4 x 50 tanh MLP on (x, t) with the initial and periodic conditions as loss
  terms (soft), Adam then L-BFGS;
- curriculum: the same network and total budget, trained on a parameter ramp (beta or rho from 1 to the
  target in 5 stages), each stage warm-started from the last (the paper's curriculum regularisation);
- lpinn: the Lagrangian PINN (Mojgani et al., CMAME 2023) with its defaults (``pdejax.pinns.LPINN_DEFAULTS``);
  reaction-diffusion has no convective velocity, so LPINN does not apply there (n/a).

rel. L2 is measured on the problem's Eulerian evaluation grid against the exact solution (convection) or
the ETDRK4 spectral reference (reaction-diffusion). Prints a markdown table (mean ± std over seeds, and
the mean wall time) and writes it, with every run, to ``--out``.

    python benchmarks/failure_modes.py --seeds 3 --out runs/failure_modes
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ROWS = [("convection", "beta", b) for b in (1.0, 10.0, 30.0, 50.0, 100.0)] + [("reaction_diffusion", "rho", 5.0)]
METHODS = ("vanilla", "curriculum", "lpinn")


def run_one(name: str, param: str, value: float, method: str, seed: int, steps: int, lbfgs: int, stages: int):
    import pdejax.problems as P
    from pdejax import pinns

    problem = P.get(name, **{param: value})
    if method == "lpinn":
        try:
            sol = pinns.solve_lpinn(problem, pinns.lpinn_settings(seed=seed), progress=False)
        except ValueError as e:
            return {"rel_l2": None, "wall_time_s": None, "note": str(e)}
    else:
        settings = pinns.settings_for(
            problem,
            "adam+lbfgs",
            model="mlp",
            width=50,
            depth=4,
            constraints="soft",
            steps=steps,
            lbfgs_steps=lbfgs,
            seed=seed,
        )
        if method == "vanilla":
            sol = pinns.solve(problem, settings, progress=False)
        else:
            stages_ = pinns.curriculum_problems(name, param, pinns.ramp(value, stages if value > 1 else 1))
            sol = pinns.curriculum(stages_, settings, progress=False)
    return {"rel_l2": sol.result.rel_l2, "wall_time_s": sol.result.wall_time_s}


def _cell(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.2e} ± {sd:.1e}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2000, help="PINN Adam steps (total over curriculum stages)")
    ap.add_argument("--lbfgs-steps", type=int, default=1000, help="PINN L-BFGS iterations (total)")
    ap.add_argument("--stages", type=int, default=5, help="curriculum stages")
    ap.add_argument("--rows", default="all", help="comma-separated row labels, e.g. 'beta=50,rho=5' (default all)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", default="runs/failure_modes")
    args = ap.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    rows = ROWS if args.rows == "all" else [r for r in ROWS if f"{r[1]}={r[2]:g}" in args.rows.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for name, param, value in rows:
        for method in methods:
            for seed in range(args.seeds):
                r = run_one(name, param, value, method, seed, args.steps, args.lbfgs_steps, args.stages)
                r.update(problem=name, param=param, value=value, method=method, seed=seed)
                runs.append(r)
                err = "n/a" if r["rel_l2"] is None else f"{r['rel_l2']:.3e}"
                print(f"{name} {param}={value:g} {method} seed {seed}: rel_l2 {err}", flush=True)
                (out / "runs.json").write_text(json.dumps(runs, indent=1))
    lines = [
        f"Failure modes, rel. L2 mean ± std over {args.seeds} seed(s) (mean wall time [s]); PINNs: "
        f"{args.steps} Adam + {args.lbfgs_steps} L-BFGS, curriculum in {args.stages} stages",
        "",
        "| problem | " + " | ".join(methods) + " |",
        "| --- |" + " --- |" * len(methods),
    ]
    for name, param, value in rows:
        cells = []
        for m in methods:
            rs = [r for r in runs if r["problem"] == name and r["value"] == value and r["method"] == m]
            times = [r["wall_time_s"] for r in rs if r["wall_time_s"] is not None]
            t = f" ({statistics.mean(times):.0f})" if times else ""
            cells.append(_cell([r["rel_l2"] for r in rs]) + t)
        lines.append(f"| {name} {param}={value:g} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    (out / "failure_modes.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
