"""Time-conditioned backbones of diffusion models on grid fields: an Equinox U-Net and an FNO."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._fno import FNO
from ._train import apply_batch


def timestep_embedding(t: Float[Array, ""], dim: int, max_period: float = 10_000.0) -> Float[Array, " dim"]:
    """Sinusoidal embedding of a (possibly fractional) diffusion step ``t`` (Vaswani et al. 2017; Ho et al.
    2020): ``[cos(t w_k), sin(t w_k)]`` with ``w_k = max_period^(-k / (dim/2))``."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.result_type(t, float)) / half)
    args = t * freqs
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)])
    return jnp.pad(emb, (0, dim - 2 * half))


def _groups(channels: int) -> int:
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


def _numpy_rng(key: PRNGKeyArray) -> np.random.Generator:
    # layers are initialised from NumPy, seeded by the key: jax.random would compile one XLA program per
    # weight shape (about 20 for a U-Net, ~0.2-1 s each on a CPU), longer than the layers' use in small runs
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.random.default_rng(np.asarray(data).astype(np.uint64).tolist())


def _uniform(rng, shape, fan_in):
    bound = 1.0 / math.sqrt(fan_in)  # PyTorch's (and Equinox's) default initialisation
    return jnp.asarray(rng.uniform(-bound, bound, shape), jnp.zeros(()).dtype)


class _Conv(eqx.Module):
    """A 2D convolution ``(cin, h, w) -> (cout, h', w')`` with a bias (square kernel, stride, zero padding)."""

    weight: Float[Array, "cout cin k k"]
    bias: Float[Array, " cout"]
    stride: int = eqx.field(static=True)
    padding: int = eqx.field(static=True)

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, *, rng):
        self.weight = _uniform(rng, (cout, cin, k, k), cin * k * k)
        self.bias = _uniform(rng, (cout,), cin * k * k)
        self.stride, self.padding = stride, padding

    def __call__(self, x: Float[Array, "cin h w"]) -> Float[Array, "cout h2 w2"]:
        p = self.padding
        y = jax.lax.conv_general_dilated(
            x[None], self.weight, (self.stride,) * 2, [(p, p), (p, p)], dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
        return y[0] + self.bias[:, None, None]


class _Linear(eqx.Module):
    weight: Float[Array, "o i"]
    bias: Float[Array, " o"]

    def __init__(self, cin: int, cout: int, *, rng):
        self.weight = _uniform(rng, (cout, cin), cin)
        self.bias = _uniform(rng, (cout,), cin)

    def __call__(self, x: Float[Array, " i"]) -> Float[Array, " o"]:
        return self.weight @ x + self.bias


class _GroupNorm(eqx.Module):
    """Group normalisation over ``(channels/groups, h, w)`` blocks with a per-channel affine map (Wu & He 2018)."""

    weight: Float[Array, " c"]
    bias: Float[Array, " c"]
    groups: int = eqx.field(static=True)

    def __init__(self, channels: int):
        dtype = jnp.zeros(()).dtype
        self.weight, self.bias, self.groups = jnp.ones(channels, dtype), jnp.zeros(channels, dtype), _groups(channels)

    def __call__(self, x: Float[Array, "c h w"]) -> Float[Array, "c h w"]:
        g = x.reshape(self.groups, -1)
        g = (g - g.mean(1, keepdims=True)) * jax.lax.rsqrt(g.var(1, keepdims=True) + 1e-5)
        return g.reshape(x.shape) * self.weight[:, None, None] + self.bias[:, None, None]


class _ResBlock(eqx.Module):
    """``x + conv(silu(norm(conv(silu(norm(x))) + W e))))``: a residual block conditioned on the embedding ``e``."""

    norm1: _GroupNorm
    conv1: _Conv
    emb: _Linear
    norm2: _GroupNorm
    conv2: _Conv
    skip: _Conv | None

    def __init__(self, cin: int, cout: int, emb_dim: int, *, rng):
        self.norm1 = _GroupNorm(cin)
        self.conv1 = _Conv(cin, cout, 3, padding=1, rng=rng)
        self.emb = _Linear(emb_dim, cout, rng=rng)
        self.norm2 = _GroupNorm(cout)
        self.conv2 = _Conv(cout, cout, 3, padding=1, rng=rng)
        self.skip = _Conv(cin, cout, 1, rng=rng) if cin != cout else None

    def __call__(self, x: Float[Array, "cin h w"], e: Float[Array, " e"]) -> Float[Array, "cout h w"]:
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        h = h + self.emb(jax.nn.silu(e))[:, None, None]
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))


class UNet(eqx.Module):
    """A U-Net ``(x_t, t) -> output`` over ``c``-channel 2D fields, conditioned on the diffusion step.

    Levels ``l = 0..L-1`` with ``base * mults[l]`` channels each hold ``blocks`` residual blocks (group norm,
    SiLU, 3x3 convolutions, the step's sinusoidal embedding added after the first convolution); between
    levels a stride-2 convolution halves the grid, and on the way up a nearest-neighbour upsampling + 3x3
    convolution doubles it before the skip connection of that level is concatenated (Ho et al., NeurIPS 2020,
    without attention: the fields here are small and the cost on a CPU matters). Grid sides must be
    divisible by ``2^(L-1)``.

    Call: ``net(x, t)`` with ``x`` of shape ``(c, h, w)`` and ``t`` a scalar step; returns ``(c_out, h, w)``
    (``out_channels``, default ``c``).
    """

    inp: _Conv
    emb1: _Linear
    emb2: _Linear
    down: list
    downsample: list
    mid: list
    upsample: list
    up: list
    out_norm: _GroupNorm
    out: _Conv
    channels: int = eqx.field(static=True)
    base: int = eqx.field(static=True)
    levels: int = eqx.field(static=True)

    def __init__(
        self,
        channels: int,
        base: int = 32,
        mults: tuple[int, ...] = (1, 2, 2),
        blocks: int = 1,
        *,
        key: PRNGKeyArray,
        out_channels: int | None = None,
    ):
        out_channels = channels if out_channels is None else out_channels
        if out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels}")
        if channels < 1 or base < 1 or blocks < 1 or not mults or min(mults) < 1:
            raise ValueError(
                f"need channels, base, blocks >= 1 and positive mults; got {channels}, {base}, {blocks}, {mults}"
            )
        rng = _numpy_rng(key)
        self.channels, self.base, self.levels = channels, base, len(mults)
        emb = 4 * base
        self.inp = _Conv(channels, base, 3, padding=1, rng=rng)
        self.emb1 = _Linear(base, emb, rng=rng)
        self.emb2 = _Linear(emb, emb, rng=rng)
        widths = [base * m for m in mults]
        self.down, self.downsample = [], []
        c = base
        for lvl, w in enumerate(widths):
            level = []
            for _ in range(blocks):
                level.append(_ResBlock(c, w, emb, rng=rng))
                c = w
            self.down.append(level)
            if lvl < len(widths) - 1:
                self.downsample.append(_Conv(c, c, 3, stride=2, padding=1, rng=rng))
        self.mid = [_ResBlock(c, c, emb, rng=rng) for _ in range(2)]
        self.upsample, self.up = [], []
        for lvl in reversed(range(len(widths) - 1)):
            w = widths[lvl]
            self.upsample.append(_Conv(c, w, 3, padding=1, rng=rng))
            level = [_ResBlock(2 * w, w, emb, rng=rng)]
            level += [_ResBlock(w, w, emb, rng=rng) for _ in range(blocks - 1)]
            self.up.append(level)
            c = w
        self.out_norm = _GroupNorm(c)
        self.out = _Conv(c, out_channels, 3, padding=1, rng=rng)

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` unless ``shape = (channels, h, w)`` with ``h, w`` divisible by ``2^(L-1)``."""
        m = 2 ** (self.levels - 1)
        if len(shape) != 3 or shape[0] != self.channels or shape[1] % m or shape[2] % m:
            raise ValueError(
                f"this U-Net takes fields of shape ({self.channels}, h, w) with h and w multiples of {m}; got {shape}"
            )

    def __call__(self, x: Float[Array, "c h w"], t: Float[Array, ""]) -> Float[Array, "c_out h w"]:
        e = self.emb2(jax.nn.silu(self.emb1(timestep_embedding(t, self.base))))
        h = self.inp(x)
        skips = []
        for lvl, level in enumerate(self.down):
            for block in level:
                h = block(h, e)
            if lvl < len(self.downsample):
                skips.append(h)
                h = self.downsample[lvl](h)
        for block in self.mid:
            h = block(h, e)
        for conv, level in zip(self.upsample, self.up):
            h = conv(jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2))
            h = jnp.concatenate([h, skips.pop()], axis=0)
            for block in level:
                h = block(h, e)
        return self.out(jax.nn.silu(self.out_norm(h)))


class FNOBackbone(eqx.Module):
    """An :class:`FNO` as a diffusion backbone: the step ``t / steps`` enters as one more constant input channel.

    Call: ``net(x, t)`` with ``x`` of shape ``(c, *grid)``; returns ``(c_out, *grid)`` (``out_channels``,
    default ``c``). Resolution-independent
    like the FNO (the grid coordinates are rebuilt from ``x``'s shape, on the unit square).
    """

    fno: FNO
    channels: int = eqx.field(static=True)
    steps: int = eqx.field(static=True)

    def __init__(
        self,
        channels: int,
        steps: int,
        modes: int = 12,
        width: int = 32,
        depth: int = 4,
        *,
        key: PRNGKeyArray,
        out_channels: int | None = None,
    ):
        self.channels, self.steps = channels, steps
        out_channels = channels if out_channels is None else out_channels
        self.fno = FNO(channels + 1, out_channels, (modes, modes), width, depth, padding=0, key=key)

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` unless ``shape = (channels, h, w)``."""
        if len(shape) != 3 or shape[0] != self.channels:
            raise ValueError(f"this FNO backbone takes fields of shape ({self.channels}, h, w); got {shape}")

    def __call__(self, x: Float[Array, "c h w"], t: Float[Array, ""]) -> Float[Array, "c_out h w"]:
        return self.batched(x[None], jnp.reshape(t, (1,)))[0]

    def batched(self, x: Float[Array, "b c h w"], t: Float[Array, " b"]) -> Float[Array, "b c_out h w"]:
        """The backbone on a batch through :meth:`FNO.batched` (one GEMM per pointwise layer)."""
        grid = x.shape[2:]
        axes = [np.linspace(0.0, 1.0, n) for n in grid]
        coords = jnp.asarray(np.stack(np.meshgrid(*axes, indexing="ij"), -1), x.dtype)
        tch = jnp.broadcast_to((t / self.steps).astype(x.dtype)[:, None, None, None], (x.shape[0], 1, *grid))
        return self.fno.batched(jnp.concatenate([x, tch], axis=1), coords)


class ChannelSplit(eqx.Module):
    """One backbone per group of output channels, each reading the whole field: ``(x, t) -> concat_i net_i(x, t)``.

    A joint model of ``(K, p)`` whose channels share no parameters: a loss on one channel's estimate (the PIDM
    residual trained through the pressure only) then cannot change the other channel's denoiser, which in one
    shared network it does through the common weights (measured on Darcy: the generated permeability's std
    drifted 268% high with the residual's gradient stopped at the permeability, 11% without any physics).

    ``nets``: backbones taking ``(c, *grid)`` fields and returning ``(c_i, *grid)`` with ``sum c_i = c``
    (e.g. :class:`UNet` with ``out_channels=1``). Call: ``net(x, t)``, ``(c, *grid) -> (c, *grid)``.

    ``cascade=True``: backbone ``i`` reads ``x`` and the outputs of backbones ``0..i-1`` (gradient stopped), so it
    takes ``c + sum_{j<i} c_j`` channels. For Darcy the pressure's denoiser then sees the permeability's
    estimate, the field the residual is evaluated on, instead of only its noisy version.

    ``ordered=True`` (one output channel per backbone): backbone ``i`` reads only channels ``0..i`` of ``x``
    (and, in a cascade, the estimates of ``0..i-1``), so channel 0's denoiser is a model of that channel's
    marginal alone: the reverse process generates ``K`` as a DDPM of ``K`` would, whatever the later
    channels' networks do (without it, ``K``'s denoiser reads the noisy pressure, and a pressure network
    trained differently moves the generated ``K``).
    """

    nets: tuple
    channels: int = eqx.field(static=True)
    cascade: bool = eqx.field(static=True, default=False)
    ordered: bool = eqx.field(static=True, default=False)

    def __init__(self, nets, channels: int, cascade: bool = False, ordered: bool = False):
        if len(nets) < 1:
            raise ValueError("ChannelSplit needs at least one backbone")
        if ordered and len(nets) != channels:
            raise ValueError(f"ordered=True needs one backbone per channel: {len(nets)} backbones, {channels} channels")
        self.nets, self.channels, self.cascade, self.ordered = tuple(nets), channels, bool(cascade), bool(ordered)

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` unless every backbone takes ``shape`` (the first one, in a cascade) and it has
        ``channels`` channels (that the outputs add up to them is checked when the backbones are traced)."""
        # in a cascade only the first backbone reads the bare field; the grid checks hold for all of them
        for i, net in enumerate(self.nets[:1] if self.cascade else self.nets):
            check = getattr(net, "check_shape", None)
            if check is not None:
                check((i + 1, *shape[1:]) if self.ordered else tuple(shape))
        if len(shape) < 1 or shape[0] != self.channels:
            raise ValueError(f"this split backbone takes fields of {self.channels} channels; got shape {shape}")

    def __call__(self, x: Float[Array, "c h w"], t: Float[Array, ""]) -> Float[Array, "c h w"]:
        return self.batched(x[None], jnp.reshape(t, (1,)))[0]

    def batched(self, x: Float[Array, "b c h w"], t: Float[Array, " b"]) -> Float[Array, "b c h w"]:
        """The backbones on a batch, each through its own ``batched`` method where it has one (FNO)."""
        outs = []
        for i, net in enumerate(self.nets):
            xi = x[:, : i + 1] if self.ordered else x
            inp = jnp.concatenate([xi, *map(jax.lax.stop_gradient, outs)], axis=1) if self.cascade else xi
            outs.append(apply_batch(net, inp, t, in_axes=(0, 0)))
        y = jnp.concatenate(outs, axis=1)
        if y.shape[1] != self.channels:
            raise ValueError(f"the backbones return {y.shape[1]} channels together, not {self.channels}")
        return y
