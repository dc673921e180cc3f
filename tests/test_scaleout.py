"""Scale-out: PINN collocation points sharded over 4 devices, in one process and in two (jax.distributed)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import forced_devices

# residual-based adaptive resampling (RAD, every 20 steps) and L-BFGS both run sharded; float64 so the
# comparison is tight
_ARGS = ["solve", "poisson2d", "--steps", "50", "--resample-every", "20", "--adaptive", "rad", "--lbfgs-steps", "3",
         "--points", "512", "--width", "16", "--x64", "--no-progress"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(out, local_devices: int, extra=()):
    env = {**os.environ, "XLA_FLAGS": forced_devices(local_devices), "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "pdejax", *_ARGS, "--out", str(out), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.long
def test_sharded_pinn_on_2_processes_x_2_devices_matches_one_device(tmp_path):
    # (one process with 4 devices runs the same code on a mesh that is not split across processes; 4 forced
    # devices in one process are tested for operators, diffusion and hard-constraint experts)
    port = _free_port()
    procs = {
        "one": _launch(tmp_path / "one", 1),
        # 2 processes x 2 CPU devices = one 4-device mesh through jax.distributed
        **{
            f"proc{i}": _launch(
                tmp_path / "dist",
                2,
                [
                    "--devices",
                    "4",
                    "--coordinator",
                    f"localhost:{port}",
                    "--num-processes",
                    "2",
                    "--process-id",
                    str(i),
                ],
            )  # fmt: skip
            for i in range(2)
        },
    }
    for name, p in procs.items():
        _, err = p.communicate(timeout=500)
        assert p.returncode == 0, (name, err[-2000:])
    one, dist = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "dist"))
    assert (one["devices"], dist["devices"]) == (1, 4) and dist["processes"] == 2
    # the same points, steps and updates; only the order of the cross-device sums differs (float64 rounding)
    for run in (dist,):
        assert run["steps"] == one["steps"] == 53
        assert run["rel_l2"] == pytest.approx(one["rel_l2"], rel=1e-9)
        np.testing.assert_allclose(run["loss_terms"]["pde"], one["loss_terms"]["pde"], rtol=1e-9)
        np.testing.assert_allclose(run["rel_l2_history"]["rel_l2"], one["rel_l2_history"]["rel_l2"], rtol=1e-9)
    assert (tmp_path / "dist" / "checkpoint.npz").exists()  # process 0 wrote it (gathered from both)


_DIFFUSION = """
import jax, numpy as np
jax.config.update("jax_enable_x64", True)
from pdejax import operators as O
fields = np.random.default_rng(0).normal(size=(16, 2, 8, 8))
model = O.build_diffusion(O.FNOBackbone(2, 10, modes=3, width=8, depth=2, key=jax.random.PRNGKey(0)),
                          O.cosine_schedule(10), fields)
runs = {}
for d in (1, 4):
    cfg = O.DiffusionConfig(steps=6, batch_size=8, chunk=3, physics_weight=0.0, devices=d)
    res = O.train_diffusion(model, fields, cfg, progress=False)
    x = O.sample(res.model, jax.random.PRNGKey(1), 8, sampler="ddpm", devices=d)
    w = jax.tree_util.tree_leaves(res.model.net)[0]
    runs[d] = (np.asarray(res.history["data"]), x, np.asarray(w), len(w.sharding.device_set))
np.testing.assert_allclose(runs[4][0], runs[1][0], rtol=1e-10)
np.testing.assert_allclose(runs[4][1], runs[1][1], rtol=1e-8, atol=1e-10)
np.testing.assert_allclose(runs[4][2], runs[1][2], rtol=1e-9, atol=1e-12)
assert (runs[1][3], runs[4][3]) == (1, 4), (runs[1][3], runs[4][3])
print("ok")
"""


@pytest.mark.long
def test_diffusion_training_and_sampling_on_4_devices_match_one_device():
    env = {**os.environ, "XLA_FLAGS": forced_devices(4), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", _DIFFUSION], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
