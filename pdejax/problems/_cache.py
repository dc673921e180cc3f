"""On-disk cache of reference solutions under the user cache directory (atomic writes)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """``$PDEJAX_CACHE``, else ``$XDG_CACHE_HOME/pdejax``, else ``~/.cache/pdejax``."""
    if os.environ.get("PDEJAX_CACHE"):
        return Path(os.environ["PDEJAX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pdejax"


def cached(kind: str, key: dict, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Return ``compute()`` (a dict of arrays), loading it from the cache when ``(kind, key)`` was seen.

    The file name is a hash of ``key`` (which must be JSON-serialisable and hold everything the result
    depends on, including a version tag). An unreadable cache file is recomputed and replaced.
    """
    blob = json.dumps({"kind": kind, **key}, sort_keys=True, default=_jsonable)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:20]
    path = cache_dir() / f"{kind}-{digest}.npz"
    if path.exists():
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError):
            pass  # a truncated or foreign file: recompute below
    result = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **result)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache is not an error: the result is still returned
    return result


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"cannot hash {type(x)} in a cache key")
