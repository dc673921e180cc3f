"""Device meshes, placements and gathers shared by the data-parallel loops (points, samples, experts)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def data_mesh(devices: int | None, axis: str) -> Mesh | None:
    """A 1D mesh over the first ``devices`` devices (all processes' devices under ``jax.distributed``).

    ``None`` or 1 gives ``None`` (no sharding). Raises ``ValueError`` when fewer devices exist.
    """
    if devices is None or devices == 1:
        return None
    have = jax.devices()
    if devices < 1 or devices > len(have):
        raise ValueError(f"devices={devices} but only {len(have)} are available ({have[0].platform})")
    return Mesh(np.asarray(have[:devices]), (axis,))


def _specs(mesh: Mesh) -> tuple[NamedSharding, NamedSharding]:
    """The two layouts on a 1D mesh: split along the first axis, and replicated."""
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0])), NamedSharding(mesh, PartitionSpec())


def _leading_spec(a: Any, mesh: Mesh) -> NamedSharding:
    """Split ``a`` along its first axis if it has one that the mesh size divides, else replicate it."""
    split, rep = _specs(mesh)
    return split if getattr(a, "ndim", 0) >= 1 and a.shape[0] % mesh.devices.size == 0 else rep


def constrain_leading(tree: Any, mesh: Mesh | None) -> Any:
    """Inside ``jit``: split every array of ``tree`` whose first axis the mesh size divides, replicate the rest.

    A no-op without a mesh. The same rule as :func:`place_leading`, so a jitted loop's inputs and outputs
    keep one sharding (no recompilation between calls).
    """
    if mesh is None:
        return tree
    return jax.tree_util.tree_map(lambda a: jax.lax.with_sharding_constraint(a, _leading_spec(a, mesh)), tree)


def constrain_replicated(tree: Any, mesh: Mesh | None) -> Any:
    """Inside ``jit``: every array of ``tree`` on every device of the mesh (no-op without a mesh)."""
    if mesh is None:
        return tree
    rep = _specs(mesh)[1]
    return jax.tree_util.tree_map(lambda a: jax.lax.with_sharding_constraint(a, rep), tree)


def place_leading(tree: Any, mesh: Mesh | None) -> Any:
    """Outside ``jit``: put ``tree``'s arrays on the mesh by the rule of :func:`constrain_leading`.

    Under ``jax.distributed`` every process passes the same values and gets the global arrays.
    """
    if mesh is None:
        return tree
    return jax.tree_util.tree_map(lambda a: _put(a, _leading_spec(a, mesh)), tree)


def place_replicated(tree: Any, mesh: Mesh | None) -> Any:
    """Outside ``jit``: a copy of every array of ``tree`` on every device of the mesh."""
    if mesh is None:
        return tree
    rep = _specs(mesh)[1]
    return jax.tree_util.tree_map(lambda a: _put(a, rep), tree)


def _put(a: Any, sharding: NamedSharding) -> jax.Array:
    if jax.process_count() == 1:
        return jax.device_put(a, sharding)
    # each process holds the whole (identical) value and contributes the shards its devices own
    host = np.asarray(jax.device_get(a)) if isinstance(a, jax.Array) and a.is_fully_addressable else np.asarray(a)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def to_host(a: Any) -> np.ndarray:
    """The whole value of array ``a`` as NumPy, gathering shards held by other processes if needed."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(jax.device_get(a))
