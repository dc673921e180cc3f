"""Fault tolerance of `pdejax solve`: SIGKILL mid-run then --resume, and a corrupt newest checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

# Adam in chunks of 250 steps: checkpoints at steps 250 and 300
_RUN = ["solve", "poisson2d", "--optimizer", "adam", "--steps", "300", "--checkpoint-every", "50", "--width", "16",
        "--points", "256", "--no-progress"]  # fmt: skip


def _pdejax(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, "-m", "pdejax", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _finish(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    return err


def _leaves(path):
    with np.load(path) as data:
        return [data[k] for k in sorted(data.files) if k.startswith("leaf_")]


@pytest.mark.long
def test_sigkill_then_resume_equals_uninterrupted_run_and_corrupt_checkpoint_falls_back(tmp_path):
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    straight = _pdejax(*_RUN, "--out", str(straight_dir))
    killed = _pdejax(*_RUN, "--out", str(killed_dir))
    deadline = time.monotonic() + 240
    while not (killed_dir / "checkpoint.npz").exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert killed.poll() is None, "the run ended before it could be killed"
    killed.send_signal(signal.SIGKILL)  # right after the first checkpoint (step 250): 50 steps are lost
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    assert not (killed_dir / "metrics.json").exists()  # no partial results
    _finish(straight)
    metrics = json.loads((straight_dir / "metrics.json").read_text())
    leaves = _leaves(straight_dir / "checkpoint.npz")

    # at the same time: resume the killed run, and resume the finished one after truncating its newest
    # checkpoint (step 300), which must say so in one line and continue from the previous one (step 250),
    # here going on to step 330 (bitwise equality after such a fallback: tests/pinns/test_trainer.py)
    ckpt = straight_dir / "checkpoint.npz"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    resumed = _pdejax("solve", "poisson2d", "--resume", str(killed_dir), "--no-progress")
    fallback = _pdejax("solve", "poisson2d", "--resume", str(straight_dir), "--steps", "330", "--no-progress")
    _finish(resumed)
    resumed_metrics = json.loads((killed_dir / "metrics.json").read_text())
    for key in ("steps", "rel_l2", "rel_l2_history", "loss_terms"):
        assert resumed_metrics[key] == metrics[key], key
    for x, y in zip(_leaves(killed_dir / "checkpoint.npz"), leaves, strict=True):
        np.testing.assert_array_equal(x, y)

    err = _finish(fallback)
    warning = [line for line in err.splitlines() if line.startswith("pdejax: warning:")]
    assert len(warning) == 1 and "corrupt or truncated" in warning[0] and "(step 250)" in warning[0], err[-2000:]
    assert json.loads((straight_dir / "metrics.json").read_text())["steps"] == 330
