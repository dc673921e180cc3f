"""Where a PI-HC operator's training step goes: trained CLI runs of hc / hc-moe timed side by side, in pieces.

For each run directory (``pdejax solve diffusion_sorption_operator|navier_stokes_operator --method hc|hc-moe
--out DIR``) this loads the trained weights and times, on one training batch (medians of ``--repeats``, after
compilation): the training step's value and gradient of the physics loss, the forward constraint solve alone,
the FNO backbone's forward and backward pass alone, and for hc-moe with a Schwarz pass the same weights without
the pass and with the solves batched (``loop="vmap"``) instead of one after another. Every call is timed once
per round, the rounds alternate over all calls (so the machine's drifts hit each alike), and ratios are against
the first run given.

    python benchmarks/pihc_step_breakdown.py runs/ds-hc runs/ds-hc-moe

With several (forced host) devices hc-moe's experts are sharded over them, as in training:

    XLA_FLAGS=--xla_force_host_platform_device_count=2 \\
        python benchmarks/pihc_step_breakdown.py runs/ds-hc runs/ds-hc-moe
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pdejax import operators as O
from pdejax._io import load_checkpoint


def load_run(run: Path):
    """The trained model (the trainer's identity-scaled wrapper around the constraint layer), the run's training
    inputs and grid coordinates, and its settings."""
    meta = json.loads((run / "run.json").read_text())
    st, dataset = meta["settings"], meta["problem"]
    data = O.load_dataset(run / "data.npz")
    train, _ = data.split(st["n_train"], st["n_test"])
    net = O.build_pihc_operator(st, data, key=jax.random.PRNGKey(st["seed"]))
    c_in, c_out = train.inputs.shape[1], train.outputs.shape[1]
    # the PI-HC methods train unnormalised: the wrapper's statistics are the identity
    model = O.Normalised(net, (0.0,) * c_in, (1.0,) * c_in, (0.0,) * c_out, (1.0,) * c_out)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    cfg = O.OperatorConfig(epochs=st["epochs"], batch_size=st["batch_size"], grad_clip=float(st.get("grad_clip", 0)),
                           warmup=int(st.get("warmup", 0)), normalise=False)  # fmt: skip
    like = (params, O.operator_optimizer(cfg, st["n_train"] // st["batch_size"]).init(params), jax.random.PRNGKey(0))
    (params, _, _), _, _ = load_checkpoint(run / "checkpoint.npz", like)
    return eqx.combine(params, static), train, st, dataset


def variant(model, **fields):
    """The same weights with other static settings of the constraint layer (``schwarz``, ``loop``)."""
    net = copy.copy(model.net)
    for k, v in fields.items():
        object.__setattr__(net, k, v)
    return eqx.tree_at(lambda m: m.net, model, net)


def timed_calls(model, a, x, physics) -> tuple[dict, dict]:
    """Zero-argument jitted calls of the step (value and gradient of the batch's physics loss) and of the
    forward solve, and the solves' mean / max Levenberg-Marquardt iterations."""
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss(p):
        u = O.apply_batch(eqx.combine(p, static), a, x)
        return jnp.mean(jax.vmap(physics)(a, u))

    step = jax.jit(jax.value_and_grad(loss))
    solve = eqx.filter_jit(lambda m: m.net.solve(a, x))
    stats = solve(model)[1]
    calls = {"step": lambda: step(params), "solve": lambda: solve(model)[0]}
    return calls, {"iters": f"{float(jnp.mean(stats.steps)):.1f} / {int(jnp.max(stats.steps))}"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="CLI run directories of hc / hc-moe (the first is the baseline)")
    ap.add_argument("--repeats", type=int, default=9, help="rounds; every call is timed once per round, alternating")
    args = ap.parse_args()
    calls, info = {}, {}
    for run in args.runs:
        model, train, st, dataset = load_run(run)
        a = jnp.asarray(train.inputs[: st["batch_size"]])
        x = jnp.asarray(train.coords)
        label = f"{run.name} ({st['method']})"
        variants = {label: model}
        if getattr(model.net, "schwarz", "none") != "none":
            variants[f"{label}, no pass"] = variant(model, schwarz="none")
            variants[f"{label}, loop=vmap"] = variant(model, loop="vmap")
        for name, m in variants.items():
            calls[name], info[name] = timed_calls(m, a, x, O.PHYSICS[dataset])
        backbone, bstatic = eqx.partition(model.net.net, eqx.is_inexact_array)
        fno = jax.jit(
            jax.value_and_grad(lambda p, a=a, x=x, s=bstatic: jnp.mean(O.apply_batch(eqx.combine(p, s), a, x) ** 2))
        )
        calls[f"{label}: FNO alone"], info[f"{label}: FNO alone"] = {"step": lambda f=fno, b=backbone: f(b)}, {}
    times = {name: {k: [] for k in c} for name, c in calls.items()}
    for r in range(args.repeats + 1):  # round 0 compiles
        for name, c in calls.items():
            for k, f in c.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f())
                if r:
                    times[name][k].append(1e3 * (time.perf_counter() - t0))
                else:  # compilation and the first call: progress on slow configurations
                    print(f"compiled {name}: {k} in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    med = {name: {k: float(np.median(v)) for k, v in t.items()} for name, t in times.items()}
    first = next(iter(med))
    print(f"| {len(args.runs)} runs, medians of {args.repeats} alternating rounds | step [ms] | vs {first} | "
          "forward solve [ms] | iterations mean / max |")  # fmt: skip
    print("| --- | --- | --- | --- | --- |")
    for name, m in med.items():
        solve = f"{m['solve']:.1f}" if "solve" in m else ""
        speed = med[first]["step"] / m["step"]
        print(f"| {name} | {m['step']:.1f} | {speed:.2f}x | {solve} | {info[name].get('iters', '')} |")


if __name__ == "__main__":
    main()
