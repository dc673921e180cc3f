"""Learn the Burgers solution operator u0 -> u(t=1) with an FNO, then evaluate it on a finer grid.

Generates the data with pdejax's pseudo-spectral solver (the FNO paper's nu = 0.1 setting), trains an
FNO at 64 points and tests it on held-out samples at 64 and, without retraining, at 256 points
(resolution independence: the weights act on Fourier modes, not grid points). About a minute on 2 cores.

    python examples/fno_burgers.py
"""

from __future__ import annotations

import jax

from pdejax import operators as O


def main(n_train: int = 400, n_test: int = 50, epochs: int = 60, progress: bool = True) -> dict[str, float]:
    fine = O.generate("burgers1d", n_train + n_test, resolution=256, seed=0)
    coarse = fine.downsample(4)  # the same fields at 64 points
    train, test = coarse.split(n_train, n_test)
    fno = O.FNO(1, 1, modes=16, width=32, depth=4, key=jax.random.PRNGKey(0))
    cfg = O.OperatorConfig(epochs=epochs, lr_step_epochs=max(epochs // 5, 1), eval_every=max(epochs // 5, 1))
    res = O.train_operator(fno, train, test, cfg, progress=progress)
    _, test_fine = fine.split(n_train, n_test)
    pred = O.predict_batched(res.model, test_fine.inputs, test_fine.coords)
    err_fine = float(O.relative_l2_per_sample(pred, test_fine.outputs).mean())
    print(f"test rel L2 at 64 points: {res.test_rel_l2:.2e}; the same model at 256 points: {err_fine:.2e}")
    return {"coarse": res.test_rel_l2, "fine": err_fine}


if __name__ == "__main__":
    main()
