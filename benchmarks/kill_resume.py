"""Fault tolerance: SIGKILL `pdejax solve` at random moments, `--resume`, and compare with an uninterrupted run.

Runs the command once without interruption, then ``--trials`` times: start it, kill it (SIGKILL) after a
random fraction of the uninterrupted wall time, resume it with ``pdejax solve PROBLEM --resume DIR`` (also
killed again at random with probability ``--second-kill``), and check that the final metrics (steps, rel. L2,
its history, the last loss terms) and every array of the final checkpoint are bitwise equal to the
uninterrupted run's. Prints one line per trial and a summary; exits 1 if any trial differs.

    python benchmarks/kill_resume.py --trials 20
    python benchmarks/kill_resume.py --trials 5 -- solve poisson2d --steps 800 --checkpoint-every 100
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT = ["solve", "burgers", "--steps", "1500", "--lbfgs-steps", "250", "--checkpoint-every", "250"]
COMPARED = ("steps", "rel_l2", "rel_l2_history", "loss_terms")


def _run(args: list[str], out: Path, kill_after: float | None = None) -> tuple[str, float]:
    """Run ``pdejax ARGS --out OUT`` (or a resume); kill it after ``kill_after`` seconds. Returns
    ``("killed" | "done", seconds)``; raises if the command fails on its own."""
    cmd = [sys.executable, "-m", "pdejax", *args, "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return "killed", time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.strip()[-500:]}")
    return "done", time.perf_counter() - start


def _checkpoint_step(out: Path) -> int | None:
    try:
        with np.load(out / "checkpoint.npz") as data:
            return json.loads(bytes(data["header"]).decode())["meta"]["step"]
    except (OSError, KeyError, ValueError):
        return None


def _leaves(out: Path) -> list[np.ndarray]:
    with np.load(out / "checkpoint.npz") as data:
        return [data[k] for k in sorted(data.files) if k.startswith("leaf_")]


def _finish(args: list[str], out: Path, rng: random.Random, ref_time: float, second_kill: float) -> int:
    """Resume the killed run in ``out`` until it completes; returns the number of extra kills."""
    kills = 0
    while True:
        # killed before run.json was written: nothing to resume, start the same command again
        cmd = ["solve", args[1], "--resume", str(out)] if (out / "run.json").exists() else [*args, "--out", str(out)]
        kill = rng.uniform(0.1, 0.9) * ref_time if kills == 0 and rng.random() < second_kill else None
        status, _ = _run(cmd, out, kill)
        if status == "done":
            return kills
        kills += 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--second-kill", type=float, default=0.3, help="probability of killing the resumed run too")
    p.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    p.add_argument("command", nargs="*", help="pdejax arguments after '--' (default: a shortened burgers run)")
    a = p.parse_args()
    args = a.command or DEFAULT
    work = Path(a.dir or tempfile.mkdtemp(prefix="pdejax-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(a.seed)

    ref = work / "uninterrupted"
    _, ref_time = _run([*args, "--out", str(ref)], ref)
    ref_metrics = json.loads((ref / "metrics.json").read_text())
    ref_leaves = _leaves(ref)
    print(f"uninterrupted: {' '.join(args)}  {ref_time:.1f} s  rel_l2={ref_metrics['rel_l2']:.6e}  -> {work}")
    print("trial  killed_at_s  checkpoint_step  extra_kills  metrics_equal  checkpoint_bitwise")
    bad = 0
    for i in range(a.trials):
        out = work / f"trial{i:02d}"
        hi = 0.95
        while True:  # every trial is killed once: a run that finished first is redone with an earlier kill
            kill_at = rng.uniform(0.05, hi) * ref_time
            status, _ = _run([*args, "--out", str(out)], out, kill_at)
            if status == "killed":
                break
            hi = max(0.1, hi - 0.2)
            shutil.rmtree(out)
        step = _checkpoint_step(out)
        extra = _finish(args, out, rng, ref_time, a.second_kill)
        metrics = json.loads((out / "metrics.json").read_text())
        same_metrics = all(metrics.get(k) == ref_metrics.get(k) for k in COMPARED)
        leaves = _leaves(out)
        bitwise = len(leaves) == len(ref_leaves) and all(
            x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(leaves, ref_leaves)
        )
        bad += not (same_metrics and bitwise)
        print(f"{i:5d}  {kill_at:11.1f}  {str(step):>15s}  {extra:11d}  {str(same_metrics):>13s}  {str(bitwise):>18s}")
    print(f"{a.trials - bad}/{a.trials} trials ended with the uninterrupted run's metrics and checkpoint")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
