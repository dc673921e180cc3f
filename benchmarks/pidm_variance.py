"""The DDPM reverse step's variance on the PIDM permeability: 'posterior' (betatilde) against 'data' sampling.

Trains the network that generates ``log K`` in PIDM's default ordered split (one U-Net reading only the
permeability channel, trained by its data term alone, so it is the same for PIDM and its no-physics twin) on
the Darcy log-normal set, samples it with both variances (``pdejax.operators.sample``), and prints the
generated K's mean and std against the training data's. It also prints what ``T`` DDPM steps with the
posterior variance lose with the *exact* denoiser, from the data's own spectrum (log K is Gaussian: the
linear recursion of each eigen-direction's variance through the reverse steps), a reference that no trained
model enters.

    python benchmarks/pidm_variance.py --resolution 64 --depth 4 --steps 6000 --samples 256 --seed 0
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--diffusion-steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="a dataset file (pdejax data darcy_lognormal) instead of generating")
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    a = p.parse_args()

    import jax

    from pdejax import operators as O

    t0 = time.perf_counter()
    data = (
        O.load_dataset(a.data) if a.data else O.generate("darcy_lognormal", 1000, resolution=a.resolution, seed=a.seed)
    )
    logk = np.log(data.inputs[:1000])
    schedule = O.make_schedule("cosine", a.diffusion_steps)
    # the ordered split's permeability U-Net (operators.build_pidm with split_channels='ordered')
    key = jax.random.split(jax.random.PRNGKey(a.seed), 2)[0]
    net = O.UNet(1, 16, (1, 2, 2, 4, 4, 8)[: a.depth], key=key, out_channels=1)
    model = O.build_diffusion(net, schedule, logk, "x0", "channel")
    cfg = O.DiffusionConfig(steps=a.steps, batch_size=16, learning_rate=1e-3, physics_weight=0.0, snr_floor=1.0,
                            low_noise_mix=0.5, checkpoint_every=0, seed=a.seed)  # fmt: skip
    m = O.train_diffusion(model, logk, cfg, progress=False).model
    train_s = time.perf_counter() - t0

    z = (logk.reshape(len(logk), -1).astype(np.float64) - logk.mean()) / logk.std()
    lam = np.linalg.svd(z - z.mean(0), compute_uv=False) ** 2 / (len(z) - 1)
    lam = lam[lam > 1e-9 * lam[0]]
    spread = O.posterior_sampler_spread(schedule, lam)
    exact_logstd = float(np.sqrt(np.sum(spread**2 * lam) / np.sum(lam)))

    K = np.exp(logk.astype(np.float64))
    report = {"settings": vars(a), "train_s": train_s, "modes": len(lam), "largest_mode_variance": float(lam[0]),
              "exact_denoiser_logk_std_ratio": exact_logstd,
              "data": {"K_mean": K.mean(), "K_std": K.std()}}  # fmt: skip
    print(f"log K: {len(lam)} modes, the largest of variance {lam[0]:.0f} (channel-standardised); with the exact "
          f"denoiser, T = {a.diffusion_steps} posterior-variance steps give its std "
          f"{exact_logstd - 1:+.1%}")  # fmt: skip
    print(f"trained {a.steps} steps in {train_s:.0f} s; {a.samples} samples each")
    print("| variance | K mean (rel diff) | K std (rel diff) | log K std (rel diff) |")
    print("| --- | --- | --- | --- |")
    for variance in ("posterior", "data"):
        x = O.sample(m, jax.random.PRNGKey(a.seed + 1), a.samples, variance=variance, fields=logk, batch=a.samples)
        Ks = np.exp(x.astype(np.float64))
        row = {"K_mean": Ks.mean() / K.mean() - 1, "K_std": Ks.std() / K.std() - 1,
               "logK_std": x.std() / logk.std() - 1}  # fmt: skip
        report[variance] = row
        print(f"| {variance} | {row['K_mean']:+.1%} | {row['K_std']:+.1%} | {row['logK_std']:+.1%} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(report, f, indent=2, default=float)


if __name__ == "__main__":
    main()
