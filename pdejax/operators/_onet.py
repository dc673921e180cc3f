"""Branch/trunk operators: DeepONet (Lu et al. 2021) and MultiONet (Zang & Koutsourelakis, DGNO 2025)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..pinns._models import MLP, Dense, get_activation


def _sensors(a: Float[Array, " cin *grid"], n_sensors: int) -> Float[Array, " s"]:
    s = a.reshape(-1)
    if s.shape[0] != n_sensors:
        raise ValueError(
            f"the branch net reads {n_sensors} sensor values (the training grid); got an input of shape {a.shape}"
        )
    return s


class DeepONet(eqx.Module):
    """DeepONet ``G(a)(x) = sum_k b_k(a) t_k(x) + b_0`` (Lu, Jin, Pang, Zhang, Karniadakis 2021).

    The branch net reads the input function at its fixed sensor grid (all ``in_channels x grid`` values);
    the trunk net reads a coordinate ``x``. Both are MLPs; the trunk's last layer is followed by the
    activation, the branch's is linear (DeepXDE's convention). ``p`` basis functions per output channel.

    Call: ``net(a, x)`` with ``a`` of shape ``(in_channels, *sensor_grid)`` and query coordinates ``x`` of
    shape ``(*grid, d)``; returns ``(out_channels, *grid)``.
    """

    branch: MLP
    trunk: MLP
    bias: Float[Array, " out"]
    n_sensors: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)

    def __init__(
        self,
        n_sensors: int,
        d: int,
        out_channels: int = 1,
        width: int = 128,
        depth: int = 3,
        p: int = 128,
        activation: str = "gelu",
        *,
        key: PRNGKeyArray,
    ):
        kb, kt = jax.random.split(key)
        self.branch = MLP(n_sensors, p * out_channels, width, depth, activation, key=kb)
        self.trunk = MLP(d, p, width, depth, activation, key=kt)
        self.bias = jnp.zeros((out_channels,), jnp.zeros(()).dtype)
        self.n_sensors, self.out_channels, self.activation = int(n_sensors), int(out_channels), activation

    def __call__(self, a: Float[Array, " cin *sgrid"], x: Float[Array, "*grid d"]) -> Float[Array, " cout *grid"]:
        b = self.branch(_sensors(a, self.n_sensors)).reshape(self.out_channels, -1)
        pts = x.reshape(-1, x.shape[-1])
        t = get_activation(self.activation)(jax.vmap(self.trunk)(pts.astype(b.dtype)))
        u = b @ t.T + self.bias[:, None]
        return u.reshape((self.out_channels,) + x.shape[:-1])


class MultiONet(eqx.Module):
    """MultiONet: DeepONet with branch/trunk inner products taken at several layers (DGNO, Zang &
    Koutsourelakis 2025).

    Branch and trunk are stacks of ``depth`` dense layers of equal ``width``, each followed by the
    activation: ``b_0 = s(W a)``, ``b_k = s(W_k b_{k-1})`` and likewise ``t_k(x)``. The output averages
    the weighted inner products of every layer after the input layer,

    ``G(a)(x) = (1/L) sum_{k=1..L} w_k <b_k(a), t_k(x)> + b``,  ``L = depth - 1``,

    with learned scalars ``w_k`` (initialised to 0, as in the authors' code) and bias ``b``, so deep and
    shallow features both reach the output. With several output channels the branch features are
    ``out_channels`` times wider and split per channel.

    Call: as :class:`DeepONet`.
    """

    branch: tuple[Dense, ...]
    trunk: tuple[Dense, ...]
    layer_weights: Float[Array, " L"]
    bias: Float[Array, " out"]
    n_sensors: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)

    def __init__(
        self,
        n_sensors: int,
        d: int,
        out_channels: int = 1,
        width: int = 128,
        depth: int = 5,
        activation: str = "gelu",
        *,
        key: PRNGKeyArray,
    ):
        if width < 1 or depth < 2:
            raise ValueError(f"MultiONet needs width >= 1 and depth >= 2, got width={width}, depth={depth}")
        get_activation(activation)
        keys = jax.random.split(key, 2 * depth)
        bsizes = [n_sensors] + [width * out_channels] * depth
        tsizes = [d] + [width] * depth
        self.branch = tuple(Dense(i, o, key=k) for i, o, k in zip(bsizes[:-1], bsizes[1:], keys[:depth]))
        self.trunk = tuple(Dense(i, o, key=k) for i, o, k in zip(tsizes[:-1], tsizes[1:], keys[depth:]))
        dtype = jnp.zeros(()).dtype
        self.layer_weights = jnp.zeros((depth - 1,), dtype)
        self.bias = jnp.zeros((out_channels,), dtype)
        self.n_sensors, self.out_channels, self.activation = int(n_sensors), int(out_channels), activation

    def __call__(self, a: Float[Array, " cin *sgrid"], x: Float[Array, "*grid d"]) -> Float[Array, " cout *grid"]:
        act = get_activation(self.activation)
        b = act(self.branch[0](_sensors(a, self.n_sensors)))
        t = act(jax.vmap(self.trunk[0])(x.reshape(-1, x.shape[-1]).astype(b.dtype)))
        u = 0.0
        for wk, lb, lt in zip(self.layer_weights, self.branch[1:], self.trunk[1:]):
            b = act(lb(b))
            t = act(jax.vmap(lt)(t))
            u = u + wk * (t @ b.reshape(self.out_channels, -1).T)  # (points, out)
        u = u / len(self.layer_weights) + self.bias
        return u.T.reshape((self.out_channels,) + x.shape[:-1])
