"""Atomic file writes and single-file checkpoints of JAX pytrees (shared by every training loop)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

CHECKPOINT_NAME = "checkpoint.npz"
_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated, or does not match the run it should resume."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the complete new one, never a part.

    The bytes go to a temporary file in the same directory, are flushed to disk, and the file is
    renamed over ``path`` (``os.replace`` is atomic on POSIX and Windows).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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
    digest = _digest(leaves)
    header = {"format": _FORMAT, "n_leaves": len(leaves), "sha256": digest, "meta": meta}
    arrays = {f"leaf_{i}": a for i, a in enumerate(leaves)}
    for k, v in (extra or {}).items():
        arrays[f"extra_{k}"] = np.asarray(v)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _read_header(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(bytes(data["header"]).decode())
    except Exception as e:  # zipfile, json and KeyError all mean an unusable file
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {e})") from None


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The JSON metadata stored in a checkpoint (raises :class:`CheckpointError` if unreadable)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    return _read_header(path)["meta"]


def load_checkpoint(path: str | os.PathLike, like: Any) -> tuple[Any, dict, dict[str, np.ndarray]]:
    """Load a checkpoint into the structure of ``like`` (a pytree with the same leaves' shapes/dtypes).

    Returns ``(state, meta, extra)``. Raises :class:`CheckpointError` naming what is wrong when the file
    is missing, unreadable, corrupt, or was written for a different model/optimizer.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
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
