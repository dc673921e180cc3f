"""Fourier neural operators (Li et al., ICLR 2021) in 1D and 2D: spectral convolutions on truncated modes."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray


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


class SpectralConv(eqx.Module):
    """Spectral convolution ``v -> F^-1(R . F v)`` with a learned complex ``R`` on the lowest modes.

    ``F`` is the real FFT over the grid axes. In 1D ``R`` acts on modes ``0..m-1``; in 2D on the modes
    ``|k_1| < m_1`` (both signs, the full FFT axis) times ``0 <= k_2 < m_2`` (the half-spectrum axis);
    higher modes are zeroed. The weights are stored as real and imaginary parts (``(2, in, out, *modes)``)
    so that every optimizer sees real parameters. Because the truncation is in mode space the layer applies
    to any grid with enough points (resolution-independent evaluation).
    """

    weight: Float[Array, "2 inp out *modes"]
    modes: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, inp: int, out: int, modes: int | tuple[int, ...], *, key: PRNGKeyArray):
        modes = (int(modes),) if np.isscalar(modes) else tuple(int(m) for m in modes)
        if len(modes) not in (1, 2) or min(modes) < 1:
            raise ValueError(f"modes must be 1 or 2 positive integers, got {modes}")
        shape = (inp, out) + ((modes[0],) if len(modes) == 1 else (2 * modes[0], modes[1]))
        # the FNO code's initialisation: uniform [0, 1) scaled by 1 / (in * out)
        self.weight = jax.random.uniform(key, (2, *shape), _dtype()) / (inp * out)
        self.modes = modes

    def check_grid(self, grid: tuple[int, ...]) -> None:
        """Raise ``ValueError`` if ``grid`` has too few points for the retained modes."""
        if len(grid) != len(self.modes):
            raise ValueError(f"a {len(self.modes)}D spectral convolution got a field on a {len(grid)}D grid {grid}")
        if len(grid) == 1:
            ok = grid[0] // 2 + 1 >= self.modes[0]
        else:
            ok = grid[0] >= 2 * self.modes[0] and grid[1] // 2 + 1 >= self.modes[1]
        if not ok:
            raise ValueError(f"grid {grid} is too coarse for {self.modes} Fourier modes")

    def __call__(self, v: Float[Array, " inp *grid"]) -> Float[Array, " out *grid"]:
        grid = v.shape[1:]
        self.check_grid(grid)
        axes = tuple(range(1, v.ndim))
        vh = jnp.fft.rfftn(v, axes=axes)
        w = (self.weight[0] + 1j * self.weight[1]).astype(vh.dtype)
        spec = (w.shape[1],) + vh.shape[1:]
        if len(grid) == 1:
            m = self.modes[0]
            low = jnp.einsum("ik,iok->ok", vh[:, :m], w)
            out = jnp.zeros(spec, vh.dtype).at[:, :m].set(low)
        else:
            m1, m2 = self.modes
            block = jnp.concatenate([vh[:, :m1, :m2], vh[:, -m1:, :m2]], axis=1)
            low = jnp.einsum("ikl,iokl->okl", block, w)
            out = jnp.zeros(spec, vh.dtype).at[:, :m1, :m2].set(low[:, :m1]).at[:, -m1:, :m2].set(low[:, m1:])
        return jnp.fft.irfftn(out, s=grid, axes=axes)


class FNO(eqx.Module):
    """Fourier neural operator ``a(x) -> u(x)`` on a 1D or 2D grid (Li et al., ICLR 2021).

    The input channels and the grid coordinates are lifted pointwise to ``width`` channels; ``depth``
    Fourier layers ``v <- gelu(K v + W v)`` follow (spectral convolution ``K``, pointwise ``W``; no
    activation after the last), then a pointwise two-layer projection (``width -> proj -> out``, GELU).
    ``padding`` zero-pads the grid on the high side of each axis before the Fourier layers and crops
    after them (the FNO paper's treatment of non-periodic problems such as Darcy).

    Call: ``fno(a, x)`` with ``a`` of shape ``(in_channels, *grid)`` and coordinates ``x`` of shape
    ``(*grid, d)``; returns ``(out_channels, *grid)``. Any grid fine enough for ``modes`` works.
    """

    lift: Pointwise
    spectral: tuple[SpectralConv, ...]
    skip: tuple[Pointwise, ...]
    proj1: Pointwise
    proj2: Pointwise
    padding: int = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: int | tuple[int, ...],
        width: int = 64,
        depth: int = 4,
        proj: int = 128,
        padding: int = 0,
        *,
        key: PRNGKeyArray,
    ):
        modes = (int(modes),) if np.isscalar(modes) else tuple(int(m) for m in modes)
        if width < 1 or depth < 1 or proj < 1 or padding < 0:
            raise ValueError(f"need width, depth, proj >= 1 and padding >= 0; got {width}, {depth}, {proj}, {padding}")
        d = len(modes)
        keys = jax.random.split(key, 2 * depth + 3)
        self.lift = Pointwise(in_channels + d, width, key=keys[0])
        self.spectral = tuple(SpectralConv(width, width, modes, key=k) for k in keys[1 : depth + 1])
        self.skip = tuple(Pointwise(width, width, key=k) for k in keys[depth + 1 : 2 * depth + 1])
        self.proj1 = Pointwise(width, proj, key=keys[-2])
        self.proj2 = Pointwise(proj, out_channels, key=keys[-1])
        self.padding = int(padding)

    @property
    def ndim(self) -> int:
        return len(self.spectral[0].modes)

    def __call__(self, a: Float[Array, " cin *grid"], x: Float[Array, "*grid d"]) -> Float[Array, " cout *grid"]:
        d = self.ndim
        if a.ndim != d + 1 or x.shape != a.shape[1:] + (d,):
            raise ValueError(
                f"FNO{d}d needs a of shape (channels, *grid) and x of shape (*grid, {d}); got {a.shape} and {x.shape}"
            )
        v = self.lift(jnp.concatenate([a, jnp.moveaxis(x, -1, 0).astype(a.dtype)], axis=0))
        grid = v.shape[1:]
        if self.padding:
            v = jnp.pad(v, [(0, 0)] + [(0, self.padding)] * d)
        for i, (k, w) in enumerate(zip(self.spectral, self.skip)):
            v = k(v) + w(v)
            if i < len(self.spectral) - 1:
                v = jax.nn.gelu(v, approximate=False)
        if self.padding:
            v = v[(slice(None),) + tuple(slice(0, n) for n in grid)]
        return self.proj2(jax.nn.gelu(self.proj1(v), approximate=False))
