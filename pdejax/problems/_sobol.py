"""Sobol low-discrepancy points (Joe–Kuo direction numbers) in NumPy, for quasi-random collocation."""

from __future__ import annotations

import numpy as np

# (s, a, m_1..m_s) for dimensions 2..12, from Joe & Kuo, "Constructing Sobol sequences with better
# two-dimensional projections", SIAM J. Sci. Comput. 30 (2008), file new-joe-kuo-6.21201.
_JOE_KUO = [
    (1, 0, (1,)),
    (2, 1, (1, 3)),
    (3, 1, (1, 3, 1)),
    (3, 2, (1, 1, 1)),
    (4, 1, (1, 1, 3, 3)),
    (4, 4, (1, 3, 5, 13)),
    (5, 2, (1, 1, 5, 5, 17)),
    (5, 4, (1, 1, 5, 5, 5)),
    (5, 7, (1, 1, 7, 11, 19)),
    (5, 11, (1, 1, 5, 1, 1)),
    (5, 13, (1, 1, 1, 3, 11)),
]
MAX_DIM = len(_JOE_KUO) + 1
_BITS = 32


def _directions(dim: int) -> np.ndarray:
    """Direction integers ``V[j, k]`` (scaled to 32 bits) for dimensions ``j < dim``."""
    v = np.zeros((dim, _BITS), dtype=np.uint64)
    v[0] = [1 << (_BITS - 1 - k) for k in range(_BITS)]
    for j in range(1, dim):
        s, a, m = _JOE_KUO[j - 1]
        for k in range(_BITS):
            if k < s:
                v[j, k] = m[k] << (_BITS - 1 - k)
            else:
                val = v[j, k - s] ^ (v[j, k - s] >> np.uint64(s))
                for j2 in range(1, s):
                    if (a >> (s - 1 - j2)) & 1:
                        val ^= v[j, k - j2]
                v[j, k] = val
    return v


def sobol(n: int, dim: int) -> np.ndarray:
    """The first ``n`` points of the unscrambled Sobol sequence in ``[0, 1)^dim``.

    Gray-code order, first point at the origin (as ``scipy.stats.qmc.Sobol(scramble=False)``).

    Returns:
        float64 array of shape ``(n, dim)``.
    """
    if not 1 <= dim <= MAX_DIM:
        raise ValueError(f"Sobol points are available for 1 <= dim <= {MAX_DIM}, got dim={dim}")
    if n < 1:
        raise ValueError(f"number of Sobol points must be >= 1, got {n}")
    v = _directions(dim)
    i = np.arange(n, dtype=np.uint64)
    gray = i ^ (i >> np.uint64(1))
    out = np.zeros((n, dim), dtype=np.uint64)
    for k in range(_BITS):
        # X_i is the XOR of the direction integers selected by the bits of the Gray code of i.
        bit = ((gray >> np.uint64(k)) & np.uint64(1)).astype(bool)
        out[bit] ^= v[:, k]
    return out.astype(np.float64) / float(1 << _BITS)
