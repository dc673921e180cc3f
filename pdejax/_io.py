"""Atomic file writes and single-file checkpoints of JAX pytrees (shared by every training loop)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

CHECKPOINT_NAME = "checkpoint.npz"
_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated, or does not match the run it should resume."""


class CheckpointWarning(UserWarning):
    """The newest checkpoint was unusable and the previous good one was loaded instead."""


def previous_checkpoint(path: str | os.PathLike) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint ``path`` held before its last write."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the complete new one, never a part.

    The bytes go to a temporary file in the same directory, are flushed to disk, and the file is
    renamed over ``path`` (``os.replace`` is atomic on POSIX and Windows).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def save_checkpoint(path: str | os.PathLike, state: Any, meta: dict, extra: dict[str, np.ndarray] | None = None):
    """Save the array leaves of pytree ``state``, JSON ``meta`` and ``extra`` arrays to one file, atomically.

    A SHA-256 digest of the leaves is stored with them so :func:`load_checkpoint` detects corruption.
    Under ``jax.distributed`` every process must call this (arrays split across processes are gathered)
    and process 0 writes the file.
    """
    from ._sharding import to_host

    leaves = [to_host(x) for x in jax.tree_util.tree_leaves(state)]
    if jax.process_index() != 0:
        return
    path = Path(path)
    digest = _digest(leaves)
    header = {"format": _FORMAT, "n_leaves": len(leaves), "sha256": digest, "meta": meta}
    arrays = {f"leaf_{i}": a for i, a in enumerate(leaves)}
    for k, v in (extra or {}).items():
        arrays[f"extra_{k}"] = np.asarray(v)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    if _problem(path) is None:
        # the file about to be replaced is good: it becomes the previous checkpoint (a hard link, so this
        # costs no copy and the newest name never disappears); a corrupt one is overwritten, and the
        # previous good checkpoint stays as it is
        prev = previous_checkpoint(path)
        tmp = prev.with_name(f".{prev.name}.{os.getpid()}.tmp")
        try:
            if tmp.exists():
                tmp.unlink()
            os.link(path, tmp)
            os.replace(tmp, prev)
        except OSError:  # no hard links on this file system
            atomic_write_bytes(prev, path.read_bytes())
    atomic_write_bytes(path, data)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a write that was killed
        stale.unlink(missing_ok=True)


def _problem(path: Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be used (missing, unreadable, checksum), or ``None`` if it can."""
    if not path.exists():
        return "missing"
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data["header"]).decode())
            leaves = [data[f"leaf_{i}"] for i in range(header["n_leaves"])]
    except Exception as e:  # zipfile, json and KeyError all mean an unusable file
        return f"corrupt or truncated ({type(e).__name__}: {e})"
    if header.get("format") != _FORMAT:
        return f"of format {header.get('format')}, expected {_FORMAT}"
    if _digest(leaves) != header["sha256"]:
        return "corrupt: its checksum does not match its contents"
    return None


def usable_checkpoint(path: str | os.PathLike) -> Path:
    """``path`` if its checkpoint is intact, else the previous good one (with a :class:`CheckpointWarning`).

    Raises :class:`CheckpointError` naming what is wrong when neither can be used.
    """
    path = Path(path)
    problem = _problem(path)
    if problem is None:
        return path
    if problem == "missing":
        raise CheckpointError(f"no checkpoint at {path}")
    prev = previous_checkpoint(path)
    prev_problem = _problem(prev)
    if prev_problem is None:
        step = _read_header(prev)["meta"].get("step", "?")
        warnings.warn(
            f"checkpoint {path} is {problem}; resuming from the previous good checkpoint {prev} (step {step})",
            CheckpointWarning,
            stacklevel=2,
        )
        return prev
    kept = "" if prev_problem == "missing" else f", and the previous one {prev} is {prev_problem}"
    raise CheckpointError(f"checkpoint {path} is {problem}{kept}")


def _read_header(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(bytes(data["header"]).decode())
    except Exception as e:  # zipfile, json and KeyError all mean an unusable file
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {e})") from None


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The JSON metadata stored in a checkpoint (or in the previous good one, see :func:`usable_checkpoint`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)  # load_checkpoint says it once
        return _read_header(usable_checkpoint(path))["meta"]


def load_checkpoint(path: str | os.PathLike, like: Any) -> tuple[Any, dict, dict[str, np.ndarray]]:
    """Load a checkpoint into the structure of ``like`` (a pytree with the same leaves' shapes/dtypes).

    Returns ``(state, meta, extra)``. Raises :class:`CheckpointError` naming what is wrong when the file
    is missing, unreadable, corrupt, or was written for a different model/optimizer. When the file is
    unreadable or corrupt but the previous checkpoint (:func:`previous_checkpoint`) is intact, that one is
    loaded with a :class:`CheckpointWarning` (training from it again reproduces the lost steps).
    """
    path = usable_checkpoint(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data["header"]).decode())
            leaves = [data[f"leaf_{i}"] for i in range(header["n_leaves"])]
            extra = {k[len("extra_") :]: data[k] for k in data.files if k.startswith("extra_")}
    except Exception as e:  # zipfile, json and KeyError all mean an unusable file
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {e})") from None
    if header.get("format") != _FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {header.get('format')}, expected {_FORMAT}")
    if _digest(leaves) != header["sha256"]:
        raise CheckpointError(f"checkpoint {path} is corrupt: its checksum does not match its contents")
    ref_leaves, treedef = jax.tree_util.tree_flatten(like)
    if len(ref_leaves) != len(leaves):
        raise CheckpointError(
            f"checkpoint {path} holds {len(leaves)} arrays but this run's state has {len(ref_leaves)}: "
            "it was written for a different model or optimizer"
        )
    for i, (a, b) in enumerate(zip(ref_leaves, leaves)):
        a = np.asarray(a)
        if a.shape != b.shape or a.dtype != b.dtype:
            raise CheckpointError(
                f"checkpoint {path} does not match this run: array {i} is {b.dtype}{list(b.shape)}, "
                f"expected {a.dtype}{list(a.shape)} (different model, optimizer or --x64 setting?)"
            )
    state = jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(b) for b in leaves])
    return state, header["meta"], extra


def _digest(leaves: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in leaves:
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()
