"""How much of a PI-HC operator's float32 training gradient is rounding: float32 against float64, same weights.

Loads the models that ``benchmarks/pihc_operator.py`` trained and saved (``model-<method>.eqx`` under its
``--out``, with its ``results.json`` and data cache), and for a few training batches computes the gradient
of the physics loss through the constraint layer twice: in float32, as training does, and in float64 with
the same weights cast up (the float64 solves run to their tolerance, the stall test off). Prints the
relative error ``|g32 - g64| / |g64|`` per batch, for each method and each ``--ridge`` (the layer's Tikhonov
term, set afresh on the trained weights: it measures the solves' conditioning, not a retrained model).

    python benchmarks/pihc_operator.py --methods hc,hc-moe --overlap 12 --schwarz lower --passes 2 \
        --epochs 30 --out runs/sw2
    python benchmarks/pihc_gradient_precision.py --run runs/sw2 --ridge 1e-8,1e-6
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/pihc-op", help="an --out directory of benchmarks/pihc_operator.py")
    ap.add_argument("--methods", default="hc,hc-moe")
    ap.add_argument("--ridge", default="1e-8,1e-6", help="comma-separated ridges to evaluate")
    ap.add_argument("--schwarz", default=None, help="hc-moe: override the trained run's Schwarz edges (e.g. none)")
    ap.add_argument("--batches", type=int, default=3)
    args = ap.parse_args()

    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    from pdejax.operators import OperatorDataset, build_pihc_operator
    from pdejax.operators._pihc import diffusion_sorption_grid, diffusion_sorption_residual, grid_physics

    run = Path(args.run)
    a = json.loads((run / "results.json").read_text())["args"]
    z = np.load(run / f"data-{a['nx']}x{a['nt']}-{a['train'] + a['test']}-{a['seed']}.npz")
    coords = diffusion_sorption_grid(a["nx"], a["nt"]).astype(np.float32)
    data = OperatorDataset(z["a"], z["u"], coords, "diffusion_sorption")
    train, _ = data.split(a["train"], a["test"])
    physics = grid_physics(diffusion_sorption_residual(a["nx"], a["nt"]))
    batches = [np.asarray(train.inputs[i * a["batch"] : (i + 1) * a["batch"]]) for i in range(args.batches)]

    def build(method, ridge):
        moe = method == "hc-moe"
        schwarz = (args.schwarz or a["schwarz"]) if moe else "none"
        settings = dict(method=method, modes=a["modes"], width=a["width"], depth=4, basis=a["basis"],
                        experts=a["experts"], constraint_points=a["constraint_points"], seed=a["seed"],
                        overlap=a["overlap"] if moe else 0.0, schwarz=schwarz,
                        passes=a["passes"] if schwarz != "none" else 1)  # fmt: skip
        layer = dict(max_steps=a["max_steps"], ridge=ridge, rtol=a["rtol"], atol=a["atol"], ramp=a["ramp"])
        layer |= {"damping": a["damping"]} if a.get("damping") is not None else {}
        layer |= {"order": a.get("order", "additive")} if schwarz != "none" else {}
        return build_pihc_operator(settings, data, key=jax.random.PRNGKey(a["seed"]), **layer)

    def gradient(model, batch, x):
        p, s = eqx.partition(model, eqx.is_inexact_array)

        def loss(p):
            return jnp.mean(jax.vmap(physics)(batch, eqx.combine(p, s).batched(batch, x)))

        return np.asarray(jax.flatten_util.ravel_pytree(jax.jit(jax.grad(loss))(p))[0], np.float64)

    ridges = [float(r) for r in args.ridge.split(",")]
    methods = args.methods.split(",")
    models = {(m, r): eqx.tree_deserialise_leaves(run / f"model-{m}.eqx", build(m, r)) for m in methods for r in ridges}
    g32 = {(k, i): gradient(mdl, jnp.asarray(b), jnp.asarray(coords)) for k, mdl in models.items()
           for i, b in enumerate(batches)}  # fmt: skip
    jax.config.update("jax_enable_x64", True)
    up = lambda t: jax.tree_util.tree_map(lambda v: v.astype(jnp.float64) if eqx.is_inexact_array(v) else v, t)
    lines = ["| method | ridge | " + " | ".join(f"batch {i}" for i in range(len(batches))) + " |"]
    lines.append("| --- | --- |" + " --- |" * len(batches))
    for (m, r), mdl in models.items():
        errs = []
        for i, b in enumerate(batches):
            g64 = gradient(up(mdl), jnp.asarray(b, jnp.float64), jnp.asarray(coords, jnp.float64))
            errs.append(np.linalg.norm(g32[(m, r), i] - g64) / np.linalg.norm(g64))
        name = m if m == "hc" else f"{m} (schwarz {args.schwarz or a['schwarz']})"
        lines.append(f"| {name} | {r:g} | " + " | ".join(f"{e:.2e}" for e in errs) + " |")
    print("relative error of the float32 gradient against float64, same weights\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
