"""Collocation-point samplers (uniform, Sobol, Latin hypercube) on domain regions, all jittable."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._domain import Domain
from ._sobol import sobol

METHODS = ("uniform", "sobol", "lhs")
_FACE = re.compile(r"^face:(\d+):(lo|hi)$")


def float_dtype():
    """The default floating dtype: float64 when ``jax_enable_x64`` is on, else float32."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


@functools.lru_cache(maxsize=64)
def _sobol_bits(n: int, dim: int) -> np.ndarray:
    return (sobol(n, dim) * float(1 << 32)).astype(np.uint32)


def unit_points(method: str, key: PRNGKeyArray, n: int, dim: int) -> Float[Array, "n dim"]:
    """``n`` points in ``[0, 1)^dim`` drawn by ``method``.

    - ``uniform``: i.i.d. uniform.
    - ``sobol``: the first ``n`` Sobol points with a random digital shift (XOR of random bits), which
      keeps the net structure while giving a fresh, unbiased set for every key.
    - ``lhs``: Latin hypercube: one point in each of the ``n`` strata along every axis.
    """
    dtype = float_dtype()
    if dim == 0:
        return jnp.zeros((n, 0), dtype)
    if method == "uniform":
        return jax.random.uniform(key, (n, dim), dtype)
    if method == "sobol":
        base = jnp.asarray(_sobol_bits(n, dim))
        shift = jax.random.bits(key, (dim,), jnp.uint32)
        u = jnp.bitwise_xor(base, shift).astype(jnp.float64 if dtype == jnp.float64 else jnp.float32)
        u = (u / float(1 << 32)).astype(dtype)
        # float32 rounding can map the largest integers onto 1.0; keep the half-open interval.
        return jnp.minimum(u, jnp.asarray(1.0, dtype) - jnp.finfo(dtype).epsneg)
    if method == "lhs":
        kperm, kjit = jax.random.split(key)
        perms = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(kperm, dim)).T
        jitter = jax.random.uniform(kjit, (n, dim), dtype)
        return (perms.astype(dtype) + jitter) / n
    raise ValueError(f"unknown sampling method {method!r}; choose one of {METHODS}")


def check_region(domain: Domain, region: str) -> None:
    """Raise ``ValueError`` unless ``region`` names a part of ``domain`` that can be sampled."""
    if region in ("interior", "boundary"):
        return
    if region == "initial":
        if not domain.has_time:
            raise ValueError("region 'initial' needs a domain with a time interval")
        return
    m = _FACE.match(region)
    if m and int(m.group(1)) < domain.spatial_dim:
        return
    raise ValueError(
        f"unknown region {region!r}; choose 'interior', 'boundary', 'initial' or 'face:<axis>:<lo|hi>' "
        f"with axis < {domain.spatial_dim}"
    )


def region_unit_dim(domain: Domain, region: str) -> int:
    """How many unit-cube coordinates one point of ``region`` consumes."""
    if region in ("interior", "boundary"):
        return domain.dim
    if region == "initial":
        return domain.spatial_dim
    return domain.dim - 1


def map_to_region(domain: Domain, region: str, u: Float[Array, "n k"]) -> Float[Array, "n d"]:
    """Map unit-cube points ``u`` (``k = region_unit_dim``) onto ``region`` of ``domain``.

    ``boundary`` uses the first coordinate to choose a face with probability proportional to its
    measure (spatial extent times the time interval), the rest to place the point on that face.
    """
    dtype = u.dtype
    lo = jnp.asarray(domain.lower, dtype)
    length = jnp.asarray(domain.lengths, dtype)
    s = domain.spatial_dim
    if region == "interior":
        return lo + u * length
    if region == "initial":
        x = lo[:s] + u * length[:s]
        t0 = jnp.full((u.shape[0], 1), domain.time[0], dtype)
        return jnp.concatenate([x, t0], axis=1)
    m = _FACE.match(region)
    if m:
        axis, side = int(m.group(1)), m.group(2)
        full = jnp.insert(u, axis, 0.0, axis=1)
        pts = lo + full * length
        value = domain.hi[axis] if side == "hi" else domain.lo[axis]
        return pts.at[:, axis].set(value)
    if region != "boundary":
        check_region(domain, region)
    # Face (axis i, side) has measure prod_{j != i} L_j over the spatial axes.
    spatial = np.asarray(domain.lengths[:s])
    face_measure = np.array([np.prod(np.delete(spatial, i)) for i in range(s)])
    probs = np.repeat(face_measure / (2.0 * face_measure.sum()), 2)  # (lo_0, hi_0, lo_1, hi_1, ...)
    edges = jnp.asarray(np.cumsum(probs)[:-1], dtype)
    face = jnp.searchsorted(edges, u[:, 0], side="right")
    axis = face // 2
    side_hi = (face % 2) == 1
    rest = u[:, 1:]  # d - 1 coordinates: the tangential ones and time
    full = jax.vmap(lambda r, a: _insert_at(r, a))(rest, axis)
    pts = lo + full * length
    bound = jnp.where(side_hi, jnp.asarray(domain.hi, dtype)[axis], jnp.asarray(domain.lo, dtype)[axis])
    onehot = jax.nn.one_hot(axis, domain.dim, dtype=bool)
    return jnp.where(onehot, bound[:, None], pts)


def _insert_at(r: Float[Array, " k"], axis) -> Float[Array, " k+1"]:
    """Insert a zero at a traced position ``axis`` of ``r``."""
    idx = jnp.arange(r.shape[0] + 1)
    src = jnp.where(idx < axis, idx, idx - 1)
    out = r[jnp.clip(src, 0, r.shape[0] - 1)] if r.shape[0] else jnp.zeros(1, r.dtype)
    return jnp.where(idx == axis, 0.0, out)


def sample(domain: Domain, region: str, key: PRNGKeyArray, n: int, method: str = "uniform") -> Float[Array, "n d"]:
    """Draw ``n`` points of ``region`` ('interior', 'boundary', 'initial', 'face:i:lo|hi') of ``domain``.

    Args:
        domain: the space-time box.
        region: which part to sample.
        key: JAX PRNG key; the same key gives the same points.
        n: number of points.
        method: 'uniform', 'sobol' or 'lhs' (see :func:`unit_points`).

    Returns:
        Points of shape ``(n, d)``, spatial coordinates first, time last.
    """
    check_region(domain, region)
    if n < 1:
        raise ValueError(f"number of points must be >= 1, got {n}")
    u = unit_points(method, key, n, region_unit_dim(domain, region))
    return map_to_region(domain, region, u)
