"""Scale-out: PINN collocation points sharded over 4 devices, in one process and in two (jax.distributed)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

# burgers' RAD resampling every 100 steps and L-BFGS both run sharded; float64 so the comparison is tight
_ARGS = ["solve", "burgers", "--steps", "120", "--lbfgs-steps", "5", "--points", "512", "--width", "16", "--x64",
         "--no-progress"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(out, local_devices: int, extra=()):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={local_devices}", "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "pdejax", *_ARGS, "--out", str(out), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sharded_pinn_on_4_devices_and_2_processes_matches_one_device(tmp_path):
    port = _free_port()
    procs = {
        "one": _launch(tmp_path / "one", 1),
        "four": _launch(tmp_path / "four", 4, ["--devices", "4"]),
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
    one, four, dist = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "four", "dist"))
    assert (one["devices"], four["devices"], dist["devices"]) == (1, 4, 4)
    assert (four["processes"], dist["processes"]) == (1, 2)
    # the same points, steps and updates; only the order of the cross-device sums differs (float64 rounding)
    for run in (four, dist):
        assert run["steps"] == one["steps"] == 125
        assert run["rel_l2"] == pytest.approx(one["rel_l2"], rel=1e-9)
        np.testing.assert_allclose(run["loss_terms"]["pde"], one["loss_terms"]["pde"], rtol=1e-9)
        np.testing.assert_allclose(run["rel_l2_history"]["rel_l2"], one["rel_l2_history"]["rel_l2"], rtol=1e-9)
    assert (tmp_path / "dist" / "checkpoint.npz").exists()  # process 0 wrote it (gathered from both)
