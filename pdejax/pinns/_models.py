"""Neural-field backbones: MLP, random Fourier features, and the modified MLP of Wang, Teng & Perdikaris."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._taylor import Rows

ACTIVATIONS: dict[str, Callable] = {
    "tanh": jnp.tanh,
    "sin": jnp.sin,
    "gelu": jax.nn.gelu,
    "swish": jax.nn.swish,
    "softplus": jax.nn.softplus,
}


def get_activation(name: str) -> Callable:
    """The activation function called ``name`` (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class Dense(eqx.Module):
    """Affine layer ``W z + b`` with Glorot-normal weights and zero bias (the PINN convention)."""

    weight: Float[Array, "out inp"]
    bias: Float[Array, " out"]

    def __init__(self, inp: int, out: int, *, key: PRNGKeyArray, dtype=None):
        dtype = dtype or jnp.zeros(()).dtype
        std = jnp.sqrt(2.0 / (inp + out))
        self.weight = (std * jax.random.normal(key, (out, inp))).astype(dtype)
        self.bias = jnp.zeros((out,), dtype)

    def __call__(self, z: Float[Array, " inp"]) -> Float[Array, " out"]:
        return self.weight @ z + self.bias

    def rows(self, z: Rows) -> Rows:
        """The layer applied to a value and its derivatives (:class:`Rows`) at once."""
        return z.linear(self.weight, self.bias)


def _check_sizes(width: int, depth: int):
    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")


class MLP(eqx.Module):
    """Fully connected network ``z -> out``: ``depth`` hidden layers of ``width`` units.

    Args:
        in_size, out_size: feature and output sizes.
        width, depth: hidden-layer width and number of hidden layers.
        activation: name from :data:`ACTIVATIONS`.
        key: PRNG key.
    """

    layers: tuple[Dense, ...]
    activation: str = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        width: int = 64,
        depth: int = 4,
        activation: str = "tanh",
        *,
        key: PRNGKeyArray,
    ):
        _check_sizes(width, depth)
        get_activation(activation)
        sizes = [in_size] + [width] * depth + [out_size]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(Dense(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys))
        self.activation = activation

    def __call__(self, z: Float[Array, " inp"]) -> Float[Array, " out"]:
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            z = act(layer(z))
        return self.layers[-1](z)

    def rows(self, z: Rows) -> Rows:
        """:meth:`__call__` on a value and its derivatives (:class:`Rows`) at once."""
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            z = layer.rows(z).apply(act)
        return self.layers[-1].rows(z)


class FourierFeatureMLP(eqx.Module):
    """Random Fourier features ``[cos(2 pi B z), sin(2 pi B z)]``, ``B ~ N(0, sigma^2)``, then an MLP.

    The frequencies ``B`` are fixed (not trained). Tancik et al., NeurIPS 2020; Wang, Wang & Perdikaris,
    CMAME 2021 (spectral bias of PINNs).
    """

    frequencies: Float[Array, "m inp"]
    mlp: MLP

    def __init__(
        self,
        in_size: int,
        out_size: int,
        width: int = 64,
        depth: int = 4,
        activation: str = "tanh",
        n_features: int = 64,
        sigma: float = 1.0,
        *,
        key: PRNGKeyArray,
    ):
        get_activation(activation)
        if n_features < 1 or not sigma > 0:
            raise ValueError(f"need n_features >= 1 and sigma > 0, got {n_features}, {sigma}")
        kb, km = jax.random.split(key)
        self.frequencies = sigma * jax.random.normal(kb, (n_features, in_size))
        self.mlp = MLP(2 * n_features, out_size, width, depth, activation, key=km)

    def __call__(self, z: Float[Array, " inp"]) -> Float[Array, " out"]:
        proj = 2 * jnp.pi * jax.lax.stop_gradient(self.frequencies) @ z
        return self.mlp(jnp.concatenate([jnp.cos(proj), jnp.sin(proj)]))

    def rows(self, z: Rows) -> Rows:
        """:meth:`__call__` on a value and its derivatives (:class:`Rows`) at once."""
        proj = z.linear(2 * jnp.pi * jax.lax.stop_gradient(self.frequencies))
        return self.mlp.rows(proj.apply(jnp.cos).concat(proj.apply(jnp.sin)))


class ModifiedMLP(eqx.Module):
    """The "modified MLP" with two gates (Wang, Teng & Perdikaris, SIAM J. Sci. Comput. 43, 2021):

    ``U = s(W_u z)``, ``V = s(W_v z)``, ``H_1 = s(W_1 z)``, ``Z_k = s(W_k H_k)``,
    ``H_{k+1} = (1 - Z_k) * U + Z_k * V``, output ``W H_{L+1}``.
    """

    encoder_u: Dense
    encoder_v: Dense
    first: Dense
    hidden: tuple[Dense, ...]
    last: Dense
    activation: str = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        width: int = 64,
        depth: int = 4,
        activation: str = "tanh",
        *,
        key: PRNGKeyArray,
    ):
        _check_sizes(width, depth)
        get_activation(activation)
        keys = jax.random.split(key, depth + 3)
        self.encoder_u = Dense(in_size, width, key=keys[0])
        self.encoder_v = Dense(in_size, width, key=keys[1])
        self.first = Dense(in_size, width, key=keys[2])
        self.hidden = tuple(Dense(width, width, key=k) for k in keys[3 : 3 + depth - 1])
        self.last = Dense(width, out_size, key=keys[-1])
        self.activation = activation

    def __call__(self, z: Float[Array, " inp"]) -> Float[Array, " out"]:
        act = ACTIVATIONS[self.activation]
        u, v = act(self.encoder_u(z)), act(self.encoder_v(z))
        h = act(self.first(z))
        h = (1 - h) * u + h * v
        for layer in self.hidden:
            g = act(layer(h))
            h = (1 - g) * u + g * v
        return self.last(h)

    def rows(self, z: Rows) -> Rows:
        """:meth:`__call__` on a value and its derivatives (:class:`Rows`) at once."""
        act = ACTIVATIONS[self.activation]
        u, v = self.encoder_u.rows(z).apply(act), self.encoder_v.rows(z).apply(act)
        h = self.first.rows(z).apply(act)
        h = (1 - h) * u + h * v
        for layer in self.hidden:
            g = layer.rows(h).apply(act)
            h = (1 - g) * u + g * v
        return self.last.rows(h)


MODELS = {"mlp": MLP, "fourier": FourierFeatureMLP, "modified": ModifiedMLP}


def output_layer(net: eqx.Module) -> Dense:
    """The output :class:`Dense` layer of any backbone in :data:`MODELS`."""
    if isinstance(net, MLP):
        return net.layers[-1]
    if isinstance(net, ModifiedMLP):
        return net.last
    if isinstance(net, FourierFeatureMLP):
        return net.mlp.layers[-1]
    raise TypeError(f"not a backbone of pdejax.pinns.MODELS: {type(net).__name__}")
