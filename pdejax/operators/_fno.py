"""Fourier neural operators (Li et al., ICLR 2021) in 1D and 2D: spectral convolutions on truncated modes."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

TRANSFORMS = ("auto", "fft", "dft")


def _dtype():
    return jnp.zeros(()).dtype


class Pointwise(eqx.Module):
    """A linear map of the channels at every grid point, ``v(x) -> W v(x) + b`` (a 1x1 convolution).

    Initialised like PyTorch's ``Linear``/``Conv1d`` (uniform in ``+-1/sqrt(inp)``), as the FNO code does.
    """

    weight: Float[Array, "out inp"]
    bias: Float[Array, " out"]

    def __init__(self, inp: int, out: int, *, key: PRNGKeyArray):
        kw, kb = jax.random.split(key)
        bound = 1.0 / np.sqrt(inp)
        self.weight = jax.random.uniform(kw, (out, inp), _dtype(), -bound, bound)
        self.bias = jax.random.uniform(kb, (out,), _dtype(), -bound, bound)

    def __call__(self, v: Float[Array, " inp *grid"]) -> Float[Array, " out *grid"]:
        out = jnp.tensordot(self.weight, v, axes=(1, 0))
        return out + self.bias.reshape((-1,) + (1,) * (v.ndim - 1))

    def last(self, v: Float[Array, "*points inp"]) -> Float[Array, "*points out"]:
        """The same map on channels-last values: one ``(points, inp) @ (inp, out)`` GEMM (CPU-friendly:
        its gradient is two plain GEMMs, where batched contractions over several axes are slow)."""
        out = v.reshape(-1, v.shape[-1]) @ self.weight.T + self.bias
        return out.reshape(v.shape[:-1] + (out.shape[-1],))


class SpectralConv(eqx.Module):
    """Spectral convolution ``v -> F^-1(R . F v)`` with a learned complex ``R`` on the lowest modes.

    ``F`` is the real FFT over the grid axes. In 1D ``R`` acts on modes ``0..m-1``; in 2D on the modes
    ``|k_1| < m_1`` (both signs, the full FFT axis) times ``0 <= k_2 < m_2`` (the half-spectrum axis); in
    3D likewise, both signs on the first two axes; higher modes are zeroed. The weights are stored as real
    and imaginary parts (``(2, in, out, *modes)``) so that every optimizer sees real parameters. Because the
    truncation is in mode space the layer applies to any grid with enough points (resolution-independent
    evaluation).

    ``transform``: ``'fft'`` (real FFT of the whole grid), ``'dft'`` (only the retained modes, as real
    matrix products: faster on CPU for a few modes; 1D and 2D) or ``'auto'`` (``'dft'`` unless the Nyquist
    mode of the last axis is retained, or the grid is 3D). Both compute the same map.
    """

    weight: Float[Array, "2 inp out *modes"]
    modes: tuple[int, ...] = eqx.field(static=True)
    transform: str = eqx.field(static=True)

    def __init__(self, inp: int, out: int, modes: int | tuple[int, ...], transform: str = "auto", *, key: PRNGKeyArray):
        modes = (int(modes),) if np.isscalar(modes) else tuple(int(m) for m in modes)
        if len(modes) not in (1, 2, 3) or min(modes) < 1:
            raise ValueError(f"modes must be 1 to 3 positive integers, got {modes}")
        # every axis but the last (the real FFT's half spectrum) keeps both signs of its modes
        shape = (inp, out) + tuple(2 * m for m in modes[:-1]) + (modes[-1],)
        # the FNO code's initialisation: uniform [0, 1) scaled by 1 / (in * out)
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
        self.weight = jax.random.uniform(key, (2, *shape), _dtype()) / (inp * out)
        self.modes, self.transform = modes, transform

    def check_grid(self, grid: tuple[int, ...]) -> None:
        """Raise ``ValueError`` if ``grid`` has too few points for the retained modes."""
        if len(grid) != len(self.modes):
            raise ValueError(f"a {len(self.modes)}D spectral convolution got a field on a {len(grid)}D grid {grid}")
        ok = grid[-1] // 2 + 1 >= self.modes[-1] and all(n >= 2 * m for n, m in zip(grid[:-1], self.modes[:-1]))
        if not ok:
            raise ValueError(f"grid {grid} is too coarse for {self.modes} Fourier modes")

    def __call__(self, v: Float[Array, " inp *grid"]) -> Float[Array, " out *grid"]:
        grid = v.shape[1:]
        self.check_grid(grid)
        if not self._use_dft(grid):
            return self._fft(v)
        return jnp.moveaxis(_dft_last(self, jnp.moveaxis(v, 0, -1)[None])[0], -1, 0)

    def _use_dft(self, grid: tuple[int, ...]) -> bool:
        dft = self.transform != "fft" and _dft_fits(grid, self.modes)
        if self.transform == "dft" and not dft:
            why = "covers 1D and 2D grids" if len(grid) > 2 else "leaves out the Nyquist mode"
            raise ValueError(f"transform='dft' {why}: {self.modes} modes on grid {grid} need 'fft'")
        return dft

    def _fft(self, v):
        grid = v.shape[1:]
        axes = tuple(range(1, v.ndim))
        vh = jnp.fft.rfftn(v, axes=axes)
        w = (self.weight[0] + 1j * self.weight[1]).astype(vh.dtype)
        spec = (w.shape[1],) + vh.shape[1:]
        if len(grid) == 1:
            m = self.modes[0]
            low = jnp.einsum("ik,iok->ok", vh[:, :m], w)
            out = jnp.zeros(spec, vh.dtype).at[:, :m].set(low)
        elif len(grid) == 2:
            m1, m2 = self.modes
            block = jnp.concatenate([vh[:, :m1, :m2], vh[:, -m1:, :m2]], axis=1)
            low = jnp.einsum("ikl,iokl->okl", block, w)
            out = jnp.zeros(spec, vh.dtype).at[:, :m1, :m2].set(low[:, :m1]).at[:, -m1:, :m2].set(low[:, m1:])
        else:
            # the retained modes as index sets per axis, in the weights' order: 0..m-1, then -m..-1
            idx = [np.r_[0:m, n - m : n] for n, m in zip(grid[:-1], self.modes[:-1])] + [np.arange(self.modes[-1])]
            sel = (slice(None),) + np.ix_(*idx)
            low = jnp.einsum("iabc,ioabc->oabc", vh[sel], w)
            out = jnp.zeros(spec, vh.dtype).at[sel].set(low)
        return jnp.fft.irfftn(out, s=grid, axes=axes)


def _spectral_last(conv: SpectralConv, v: Float[Array, "b *grid inp"]) -> Float[Array, "b *grid out"]:
    """:class:`SpectralConv` on a channels-last batch (the same map). The retained modes' real DFT is one
    GEMM per axis (cosine and sine rows stacked), and the complex mode mixing one batched matmul over
    modes with the real block form ``[re, im] @ [[W_r, W_i], [-W_i, W_r]]``: few large products, which is
    what a CPU (and a GPU) runs fastest, forward and backward."""
    grid = v.shape[1:-1]
    conv.check_grid(grid)
    if not conv._use_dft(grid):
        return jnp.moveaxis(jax.vmap(conv._fft)(jnp.moveaxis(v, -1, 1)), 1, -1)
    return _dft_last(conv, v)


def _dft_last(conv: SpectralConv, v: Float[Array, "b *grid inp"]) -> Float[Array, "b *grid out"]:
    """The DFT path of :func:`_spectral_last` (grid already checked, Nyquist mode not retained)."""
    grid, dt = v.shape[1:-1], v.dtype
    b, c = v.shape[0], v.shape[-1]
    k_all = int(np.prod(conv.weight.shape[3:]))
    wr = jnp.moveaxis(conv.weight[0].astype(dt).reshape(c, -1, k_all), -1, 0)  # (modes, in, out)
    wi = jnp.moveaxis(conv.weight[1].astype(dt).reshape(c, -1, k_all), -1, 0)
    block = jnp.concatenate([jnp.concatenate([wr, wi], -1), jnp.concatenate([-wi, wr], -1)], 1)
    n2, m2 = grid[-1], conv.modes[-1]
    c2, s2 = _cos_sin(n2, np.arange(m2), dt)
    fwd2 = jnp.concatenate([c2, -s2], 1)  # (n2, 2 m2): real and imaginary parts of e^{-i k x}
    mult = np.where(np.arange(m2) == 0, 1.0, 2.0) / n2
    inv2 = jnp.concatenate([c2.T * mult[:, None], -s2.T * mult[:, None]], 0)  # (2 m2, n2): Re of the inverse
    if len(grid) == 1:
        t = jnp.einsum("nk,bnc->kbc", fwd2, v)  # (2m, b, c)
        z = jnp.concatenate([t[:m2], t[m2:]], -1)  # (m, b, 2c)
        o = z @ block  # (m, b, 2 out) = [re, im]
        o = jnp.concatenate([o[..., : o.shape[-1] // 2], o[..., o.shape[-1] // 2 :]], 0)  # (2m, b, out)
        return jnp.einsum("kbo,kn->bno", o, inv2)
    n1, m1 = grid[0], conv.modes[0]
    c1, s1 = _cos_sin(n1, np.r_[0:m1, -m1:0], dt)  # (n1, 2 m1): both signs along the full axis
    u = jnp.einsum("lm,bjlc->jmbc", fwd2, v)  # (n1, 2 m2, b, c)
    ur, ui = u[:, :m2], u[:, m2:]
    tr = jnp.einsum("jk,jmbc->kmbc", c1, ur) + jnp.einsum("jk,jmbc->kmbc", s1, ui)
    ti = jnp.einsum("jk,jmbc->kmbc", c1, ui) - jnp.einsum("jk,jmbc->kmbc", s1, ur)
    z = jnp.concatenate([tr, ti], -1).reshape(-1, b, 2 * c)  # modes (k1, k2) flattened, as in the weights
    o = (z @ block).reshape(2 * m1, m2, b, -1)
    o_r, o_i = o[..., : o.shape[-1] // 2], o[..., o.shape[-1] // 2 :]
    zr = (jnp.einsum("jk,kmbo->jmbo", c1, o_r) - jnp.einsum("jk,kmbo->jmbo", s1, o_i)) / n1
    zi = (jnp.einsum("jk,kmbo->jmbo", c1, o_i) + jnp.einsum("jk,kmbo->jmbo", s1, o_r)) / n1
    return jnp.einsum("jmbo,ml->bjlo", jnp.concatenate([zr, zi], 1), inv2)


def _dft_fits(grid: tuple[int, ...], modes: tuple[int, ...]) -> bool:
    # the real-matrix DFT leaves out the Nyquist mode of the half-spectrum axis; use the FFT when it is kept
    # (and on 3D grids, which the matrix form does not cover)
    return len(modes) <= 2 and modes[-1] <= grid[-1] // 2


def _cos_sin(n: int, k: np.ndarray, dtype) -> tuple[Array, Array]:
    """``cos(2 pi j k / n)`` and ``sin(2 pi j k / n)`` for grid index ``j`` (rows) and modes ``k`` (columns)."""
    phase = 2 * np.pi * np.outer(np.arange(n), k) / n
    return jnp.asarray(np.cos(phase), dtype), jnp.asarray(np.sin(phase), dtype)


class FNO(eqx.Module):
    """Fourier neural operator ``a(x) -> u(x)`` on a 1D, 2D or 3D grid (Li et al., ICLR 2021).

    The input channels and the grid coordinates are lifted pointwise to ``width`` channels; ``depth``
    Fourier layers ``v <- gelu(K v + W v)`` follow (spectral convolution ``K``, pointwise ``W``; no
    activation after the last), then a pointwise two-layer projection (``width -> proj -> out``, GELU).
    ``padding`` (one count, or one per axis: 0 on periodic axes) zero-pads the grid on the high side of
    each axis before the Fourier layers and crops
    after them (the FNO paper's treatment of non-periodic problems such as Darcy). ``transform``: how the
    spectral convolutions transform (:class:`SpectralConv`).

    Call: ``fno(a, x)`` with ``a`` of shape ``(in_channels, *grid)`` and coordinates ``x`` of shape
    ``(*grid, d)``; returns ``(out_channels, *grid)``. Any grid fine enough for ``modes`` works.
    """

    lift: Pointwise
    spectral: tuple[SpectralConv, ...]
    skip: tuple[Pointwise, ...]
    proj1: Pointwise
    proj2: Pointwise
    padding: int | tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: int | tuple[int, ...],
        width: int = 64,
        depth: int = 4,
        proj: int = 128,
        padding: int | tuple[int, ...] = 0,
        transform: str = "auto",
        *,
        key: PRNGKeyArray,
    ):
        modes = (int(modes),) if np.isscalar(modes) else tuple(int(m) for m in modes)
        d = len(modes)
        padding = int(padding) if np.isscalar(padding) else tuple(int(p) for p in padding)
        if not np.isscalar(padding) and len(padding) != d:
            raise ValueError(f"padding needs one count per grid axis ({d}), got {padding}")
        if width < 1 or depth < 1 or proj < 1 or min(np.atleast_1d(padding)) < 0:
            raise ValueError(f"need width, depth, proj >= 1 and padding >= 0; got {width}, {depth}, {proj}, {padding}")
        keys = jax.random.split(key, 2 * depth + 3)
        self.lift = Pointwise(in_channels + d, width, key=keys[0])
        self.spectral = tuple(SpectralConv(width, width, modes, transform, key=k) for k in keys[1 : depth + 1])
        self.skip = tuple(Pointwise(width, width, key=k) for k in keys[depth + 1 : 2 * depth + 1])
        self.proj1 = Pointwise(width, proj, key=keys[-2])
        self.proj2 = Pointwise(proj, out_channels, key=keys[-1])
        self.padding = padding

    @property
    def ndim(self) -> int:
        return len(self.spectral[0].modes)

    def __call__(self, a: Float[Array, " cin *grid"], x: Float[Array, "*grid d"]) -> Float[Array, " cout *grid"]:
        d = self.ndim
        if a.ndim != d + 1 or x.shape != a.shape[1:] + (d,):
            raise ValueError(
                f"FNO{d}d needs a of shape (channels, *grid) and x of shape (*grid, {d}); got {a.shape} and {x.shape}"
            )
        return self.batched(a[None], x)[0]

    def batched(self, a: Float[Array, "b cin *grid"], x: Float[Array, "*grid d"]) -> Float[Array, "b cout *grid"]:
        """``jax.vmap(fno, (0, None))(a, x)``, computed channels-last on the whole batch: every pointwise
        layer is one GEMM over all points of all samples (twice as fast to differentiate on CPU)."""
        d = self.ndim
        if a.ndim != d + 2 or x.shape != a.shape[2:] + (d,):
            raise ValueError(f"FNO{d}d.batched needs a of shape (batch, channels, *grid) and x of shape (*grid, {d}); "
                             f"got {a.shape} and {x.shape}")  # fmt: skip
        xs = jnp.broadcast_to(x.astype(a.dtype), (a.shape[0],) + x.shape)
        v = self.lift.last(jnp.concatenate([jnp.moveaxis(a, 1, -1), xs], axis=-1))
        grid = v.shape[1:-1]
        pads = (self.padding,) * d if np.isscalar(self.padding) else self.padding
        if any(pads):
            v = jnp.pad(v, [(0, 0)] + [(0, p) for p in pads] + [(0, 0)])
        for i, (k, w) in enumerate(zip(self.spectral, self.skip)):
            v = _spectral_last(k, v) + w.last(v)
            if i < len(self.spectral) - 1:
                v = jax.nn.gelu(v, approximate=True)
        if any(pads):
            v = v[(slice(None),) + tuple(slice(0, n) for n in grid)]
        u = self.proj2.last(jax.nn.gelu(self.proj1.last(v), approximate=True))
        return jnp.moveaxis(u, -1, 1)
