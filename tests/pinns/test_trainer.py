"""The training loop: loss decreases, L-BFGS, resampling, checkpoints/resume, NaN handling."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pdejax.problems as P
from pdejax._io import (
    CHECKPOINT_NAME,
    CheckpointError,
    CheckpointWarning,
    load_checkpoint,
    previous_checkpoint,
    save_checkpoint,
)
from pdejax.pinns import TrainConfig, TrainingDiverged, make_field, train

KEY = jax.random.PRNGKey(0)


def _small(problem="poisson2d", constraints="hard", **kw):
    pb = P.get(problem)
    field, tp = make_field(pb, width=16, depth=2, constraints=constraints, key=KEY)
    n_points = {name: 64 for name in tp.term_names}
    cfg = dict(steps=200, chunk=50, n_points=n_points, eval_every=100, checkpoint_every=100)
    cfg.update(kw)
    return pb, field, tp, TrainConfig(**cfg)


def test_adam_reduces_loss_and_error_then_lbfgs_reduces_more():
    pb, field, tp, cfg = _small(steps=300, lbfgs_steps=100, learning_rate=5e-3)
    res = train(tp, field, cfg, progress=False)
    h = res.loss_history
    assert h.shape == (400, 1) and res.steps == 400
    assert h[299, 0] < 0.05 * h[0, 0]  # Adam
    assert h[-1, 0] < 0.2 * h[299, 0]  # L-BFGS on the same points
    assert res.eval_steps[-1] == 400 and res.rel_l2 == res.eval_rel_l2[-1]
    assert res.rel_l2 < res.eval_rel_l2[0] and res.rel_l2 < 0.05


def test_weights_scale_terms_and_unknown_weights_fail():
    pb, field, tp, cfg = _small(constraints="soft", steps=1, weights={"bc": 0.0})
    res = train(tp, field, cfg, progress=False)
    assert res.loss_history.shape == (1, 2)
    with pytest.raises(ValueError, match="unknown terms"):
        train(tp, field, TrainConfig(steps=1, weights={"nope": 1.0}), progress=False)


def test_resampling_changes_points_and_stays_deterministic():
    pb, field, tp, cfg = _small(steps=60, resample_every=20, chunk=60, sampler="sobol")
    seen = []
    res1 = train(tp, field, cfg, progress=False, on_chunk=lambda s, rows: seen.append(rows))
    res2 = train(tp, field, cfg, progress=False)
    np.testing.assert_array_equal(res1.loss_history, res2.loss_history)
    res3 = train(tp, field, TrainConfig(**{**cfg.to_dict(), "resample_every": 0}), progress=False)
    assert not np.array_equal(res1.loss_history[25:], res3.loss_history[25:])
    # before the first resampling both runs see the same points (different programs: rounding only)
    np.testing.assert_allclose(res1.loss_history[:20], res3.loss_history[:20], rtol=1e-12)


@pytest.mark.long
def test_resume_gives_bitwise_identical_result(tmp_path):
    pb, field, tp, cfg = _small(steps=100, lbfgs_steps=20, chunk=25, checkpoint_every=25, resample_every=30)
    straight = train(tp, field, cfg, progress=False)
    # stop inside the Adam phase, resume into the middle of the L-BFGS phase, resume to the end
    train(tp, field, TrainConfig(**{**cfg.to_dict(), "steps": 50, "lbfgs_steps": 0}), out_dir=tmp_path, progress=False)
    mid = train(
        tp, field, TrainConfig(**{**cfg.to_dict(), "lbfgs_steps": 10}), out_dir=tmp_path, resume=True, progress=False
    )
    assert mid.steps == 110
    resumed = train(tp, field, cfg, out_dir=tmp_path, resume=True, progress=False)
    assert resumed.steps == 120
    np.testing.assert_array_equal(resumed.loss_history, straight.loss_history)
    for a, b in zip(jax.tree_util.tree_leaves(straight.field), jax.tree_util.tree_leaves(resumed.field)):
        np.testing.assert_array_equal(a, b)


def diverging_problem():
    """Minimising mean(sqrt(1 - u)^2) pushes u past 1, where the residual becomes NaN mid-run."""
    return P.Problem(
        name="diverging",
        domain=P.Interval(0.0, 1.0),
        terms={
            "fine": P.Term(lambda u, x: u(x) * 0.0, n_points=8),
            "blowup": P.Term(lambda u, x: jnp.sqrt(1.0 - u(x)), n_points=16),
        },
    )


def test_nan_stops_training_and_keeps_last_finite_checkpoint(tmp_path):
    pb = diverging_problem()
    field, tp = make_field(pb, width=8, depth=2, key=KEY)
    cfg = TrainConfig(steps=2000, chunk=50, learning_rate=1e-2, decay_rate=1.0, checkpoint_every=50)
    with pytest.raises(TrainingDiverged, match="'blowup' became NaN/Inf at step") as err:
        train(tp, field, cfg, out_dir=tmp_path, progress=False)
    assert err.value.term == "blowup" and 0 < err.value.step < 2000
    ckpt = tmp_path / CHECKPOINT_NAME
    assert ckpt.exists()
    meta = json.loads(bytes(np.load(ckpt)["header"]).decode())["meta"]
    assert meta["step"] <= err.value.step
    state, _, extra = load_checkpoint(ckpt, jax.tree_util.tree_map(jnp.zeros_like, _state_like(tmp_path)))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(state))


def _state_like(path):
    with np.load(path / CHECKPOINT_NAME) as data:
        n = json.loads(bytes(data["header"]).decode())["n_leaves"]
        return [data[f"leaf_{i}"] for i in range(n)]


def test_corrupt_and_mismatched_checkpoints_are_detected(tmp_path):
    state = {"a": jnp.arange(4.0), "b": jnp.ones((2, 2))}
    path = tmp_path / "c.npz"
    save_checkpoint(path, state, {"step": 3})
    loaded, meta, _ = load_checkpoint(path, state)
    assert meta == {"step": 3}
    np.testing.assert_array_equal(loaded["a"], state["a"])
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(path, {"a": jnp.arange(5.0), "b": jnp.ones((2, 2))})
    with pytest.raises(CheckpointError, match="holds 2 arrays"):
        load_checkpoint(path, {"a": jnp.arange(4.0)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path, state)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.npz", state)


def test_bitflip_is_detected_by_checksum(tmp_path):
    path = tmp_path / "c.npz"
    state = {"a": jnp.arange(1000.0)}
    save_checkpoint(path, state, {})
    import zipfile

    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    leaf = bytearray(files["leaf_0.npy"])
    leaf[-9] ^= 0xFF
    files["leaf_0.npy"] = bytes(leaf)
    with zipfile.ZipFile(path, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path, state)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"steps": -1}, "steps"),
        ({"steps": 0, "lbfgs_steps": 0}, "steps"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"sampler": "grid"}, "sampler"),
        ({"chunk": 0}, "chunk"),
    ],
)
def test_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_previous_good_checkpoint_is_kept_and_used_when_the_newest_is_corrupt(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    first, second = {"a": jnp.arange(4.0)}, {"a": jnp.arange(4.0) + 10}
    save_checkpoint(path, first, {"step": 1})
    assert not previous_checkpoint(path).exists()
    save_checkpoint(path, second, {"step": 2})
    _, meta, _ = load_checkpoint(path, first)
    assert meta == {"step": 2}
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # truncated, as by a full disk
    with pytest.warns(CheckpointWarning, match=r"corrupt or truncated.*previous good checkpoint .*\(step 1\)"):
        state, meta, _ = load_checkpoint(path, first)
    assert meta == {"step": 1}
    np.testing.assert_array_equal(state["a"], first["a"])
    # writing over the corrupt newest file keeps the good previous one (not the corrupt one) as previous
    save_checkpoint(path, {"a": jnp.arange(4.0) + 20}, {"step": 3})
    _, meta, _ = load_checkpoint(previous_checkpoint(path), first)
    assert meta == {"step": 1}
    # both unusable: one error naming both
    for p in (path, previous_checkpoint(path)):
        p.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"is corrupt or truncated .*, and the previous one .* is corrupt"):
        load_checkpoint(path, first)
    # a temporary file left by a killed write is removed by the next write
    stale = tmp_path / f".{CHECKPOINT_NAME}.abc.tmp"
    stale.write_bytes(b"partial")
    save_checkpoint(path, first, {"step": 4})
    assert not stale.exists()


def test_resume_from_previous_checkpoint_after_corruption_is_still_bitwise(tmp_path):
    pb, field, tp, cfg = _small(steps=100, chunk=25, checkpoint_every=25, resample_every=30)
    straight = train(tp, field, cfg, progress=False)
    train(tp, field, TrainConfig(**{**cfg.to_dict(), "steps": 75}), out_dir=tmp_path, progress=False)
    ckpt = tmp_path / CHECKPOINT_NAME
    ckpt.write_bytes(ckpt.read_bytes()[:-100])  # step 75 lost; step 50 is the previous good one
    with pytest.warns(CheckpointWarning, match="step 50"):
        resumed = train(tp, field, cfg, out_dir=tmp_path, resume=True, progress=False)
    assert resumed.steps == 100
    np.testing.assert_array_equal(resumed.loss_history, straight.loss_history)
    for a, b in zip(jax.tree_util.tree_leaves(straight.field), jax.tree_util.tree_leaves(resumed.field)):
        np.testing.assert_array_equal(a, b)
