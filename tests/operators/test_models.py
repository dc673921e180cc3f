"""FNO spectral convolutions against explicit DFTs; DeepONet and MultiONet against their formulas."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdejax import operators as O


def _weights(conv):
    return np.asarray(conv.weight[0]) + 1j * np.asarray(conv.weight[1])


@pytest.mark.parametrize("transform", ["fft", "dft"])
def test_spectral_conv_1d_equals_an_explicit_truncated_dft(transform):
    n, m = 16, 5
    conv = O.SpectralConv(3, 2, m, transform, key=jax.random.PRNGKey(0))
    v = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (3, n)))
    x = np.arange(n)
    # forward DFT coefficients of modes 0..m-1, the weights multiply them, and the real inverse puts each
    # mode k > 0 back with its conjugate (factor 2, imaginary part of mode 0 dropped)
    F = np.exp(-2j * np.pi * np.outer(np.arange(m), x) / n)
    out_hat = np.einsum("ik,iok->ok", v @ F.T, _weights(conv))
    expect = np.zeros((2, n))
    for k in range(m):
        c = 1.0 if k == 0 else 2.0
        expect += c * np.real(out_hat[:, k, None] * np.exp(2j * np.pi * k * x / n)) / n
    np.testing.assert_allclose(conv(jnp.asarray(v)), expect, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("transform", ["fft", "dft"])
def test_spectral_conv_2d_keeps_both_signs_of_the_first_axis_modes(transform):
    n1, n2, m1, m2 = 12, 10, 3, 4
    conv = O.SpectralConv(2, 2, (m1, m2), transform, key=jax.random.PRNGKey(0))
    v = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (2, n1, n2)))
    vh = np.fft.rfft2(v)
    w = _weights(conv)
    keep = np.zeros((2, n1, n2 // 2 + 1), complex)
    rows = list(range(m1)) + list(range(n1 - m1, n1))
    for r_i, r in enumerate(rows):
        keep[:, r, :m2] = np.einsum("il,iol->ol", vh[:, r, :m2], w[:, :, r_i, :])
    np.testing.assert_allclose(conv(jnp.asarray(v)), np.fft.irfft2(keep, s=(n1, n2)), rtol=1e-10, atol=1e-12)


def test_spectral_conv_3d_keeps_both_signs_of_the_first_two_axes():
    n, m = (8, 10, 6), (2, 3, 2)
    conv = O.SpectralConv(2, 3, m, key=jax.random.PRNGKey(0))
    assert conv.weight.shape == (2, 2, 3, 4, 6, 2)
    v = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (2,) + n))
    vh, w = np.fft.rfftn(v, axes=(1, 2, 3)), _weights(conv)
    keep = np.zeros((3,) + vh.shape[1:], complex)
    rows = [list(range(mi)) + list(range(ni - mi, ni)) for ni, mi in zip(n[:2], m[:2])]
    for a, r in enumerate(rows[0]):
        for b, c in enumerate(rows[1]):
            keep[:, r, c, : m[2]] = np.einsum("il,iol->ol", vh[:, r, c, : m[2]], w[:, :, a, b, :])
    expect = np.fft.irfftn(keep, s=n, axes=(1, 2, 3))
    np.testing.assert_allclose(conv(jnp.asarray(v)), expect, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="covers 1D and 2D grids"):
        O.SpectralConv(2, 3, m, "dft", key=jax.random.PRNGKey(0))(jnp.asarray(v))
    with pytest.raises(ValueError, match="too coarse for"):
        conv(jnp.ones((2, 3, 10, 6)))
    # the FNO on a 3D grid, padded on the last (non-periodic) axis only; batched = per sample
    fno = O.FNO(1, 2, m, width=4, depth=2, proj=8, padding=(0, 0, 3), key=jax.random.PRNGKey(2))
    x = jnp.asarray(np.stack(np.meshgrid(*[np.linspace(0, 1, k) for k in n], indexing="ij"), -1))
    a = jax.random.normal(jax.random.PRNGKey(3), (2, 1) + n)
    out = fno.batched(a, x)
    assert out.shape == (2, 2) + n
    np.testing.assert_allclose(out[1], fno(a[1], x), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="one count per grid axis"):
        O.FNO(1, 2, m, padding=(1, 2), key=jax.random.PRNGKey(2))


def test_the_dft_path_hands_a_retained_nyquist_mode_to_the_fft():
    v = jax.random.normal(jax.random.PRNGKey(1), (3, 10))
    auto, fft = (O.SpectralConv(3, 2, 6, t, key=jax.random.PRNGKey(0)) for t in ("auto", "fft"))
    np.testing.assert_allclose(auto(v), fft(v), atol=1e-14)  # 6 modes on 10 points: mode 5 is Nyquist
    with pytest.raises(ValueError, match="leaves out the Nyquist mode"):
        O.SpectralConv(3, 2, 6, "dft", key=jax.random.PRNGKey(0))(v)
    with pytest.raises(ValueError, match="transform must be one of"):
        O.SpectralConv(3, 2, 6, "fast", key=jax.random.PRNGKey(0))


def test_spectral_conv_is_resolution_independent_on_band_limited_fields():
    # a field whose modes all lie below the grid's Nyquist: the layer's output sampled on a 4x finer grid
    # equals the coarse output at the shared points (the weights act on modes, not grid points)
    conv = O.SpectralConv(1, 1, (4, 4), key=jax.random.PRNGKey(2))

    def field(n):
        x = np.arange(n) / n
        X, Y = np.meshgrid(x, x, indexing="ij")
        return jnp.asarray((np.sin(2 * np.pi * X) * np.cos(6 * np.pi * Y) + np.cos(4 * np.pi * (X + Y)))[None])

    coarse, fine = conv(field(16)), conv(field(64))
    np.testing.assert_allclose(fine[:, ::4, ::4], coarse, atol=1e-12)
    with pytest.raises(ValueError, match="too coarse for"):
        conv(field(6))


def test_fno_shapes_errors_and_evaluation_on_other_grids():
    fno = O.FNO(1, 1, (4, 4), width=8, depth=2, proj=16, padding=3, key=jax.random.PRNGKey(0))
    for n in (16, 24):  # trained at one resolution, evaluated at any other
        x = np.stack(np.meshgrid(*(np.linspace(0, 1, n),) * 2, indexing="ij"), -1)
        assert eqx.filter_jit(fno)(jnp.ones((1, n, n)), jnp.asarray(x)).shape == (1, n, n)
    with pytest.raises(ValueError, match=r"FNO2d needs a of shape \(channels, \*grid\)"):
        fno(jnp.ones((1, 16)), jnp.ones((16, 1)))
    with pytest.raises(ValueError, match="width, depth, proj >= 1"):
        O.FNO(1, 1, 4, width=0, key=jax.random.PRNGKey(0))


def test_deeponet_and_multionet_follow_their_formulas():
    key = jax.random.PRNGKey(0)
    a = jax.random.normal(key, (1, 7))
    x = jnp.linspace(0, 1, 5)[:, None]
    net = O.DeepONet(7, 1, out_channels=2, width=8, depth=2, p=3, key=key)
    b = net.branch(a.reshape(-1)).reshape(2, 3)
    t = jax.nn.gelu(jax.vmap(net.trunk)(x))
    net = eqx.tree_at(lambda m: m.bias, net, jnp.array([0.5, -1.0]))
    np.testing.assert_allclose(net(a, x), b @ t.T + jnp.array([[0.5], [-1.0]]), rtol=1e-12)

    mo = O.MultiONet(7, 1, out_channels=1, width=4, depth=3, key=key)
    mo = eqx.tree_at(lambda m: m.layer_weights, mo, jnp.array([2.0, -3.0]))
    act = jax.nn.gelu
    bs, ts = [act(mo.branch[0](a.reshape(-1)))], [act(jax.vmap(mo.trunk[0])(x))]
    for lb, lt in zip(mo.branch[1:], mo.trunk[1:]):
        bs.append(act(lb(bs[-1])))
        ts.append(act(jax.vmap(lt)(ts[-1])))
    # (1/L) sum over the layers after the input layer of w_k <b_k, t_k>, plus the bias
    expect = (2.0 * ts[1] @ bs[1] - 3.0 * ts[2] @ bs[2]) / 2
    np.testing.assert_allclose(mo(a, x)[0], expect, rtol=1e-12)
    with pytest.raises(ValueError, match="reads 7 sensor values"):
        net(jnp.ones((1, 8)), x)


def test_the_batched_channels_last_fno_equals_the_per_sample_layers():
    # FNO.batched (channels-last GEMMs, DFT as matrix products) against the same layers applied one sample
    # at a time in the channels-first form that the DFT tests above check
    for modes, n in (((5,), 16), ((3, 4), 12)):
        fno = O.FNO(2, 1, modes, width=6, depth=2, proj=8, padding=2, key=jax.random.PRNGKey(0))
        d = len(modes)
        a = jax.random.normal(jax.random.PRNGKey(1), (3, 2) + (n,) * d)
        x = jnp.asarray(np.stack(np.meshgrid(*[np.linspace(0, 1, n)] * d, indexing="ij"), -1))

        def one(ai):
            v = fno.lift(jnp.concatenate([ai, jnp.moveaxis(x, -1, 0)]))
            v = jnp.pad(v, [(0, 0)] + [(0, 2)] * d)
            v = jax.nn.gelu(fno.spectral[0](v) + fno.skip[0](v))
            v = (fno.spectral[1](v) + fno.skip[1](v))[(slice(None),) + (slice(0, n),) * d]
            return fno.proj2(jax.nn.gelu(fno.proj1(v)))

        one = jax.jit(one)  # jitted: eager dispatch of the per-sample layers costs seconds
        np.testing.assert_allclose(
            eqx.filter_jit(fno.batched)(a, x), jnp.stack([one(ai) for ai in a]), rtol=1e-10, atol=1e-12
        )
        np.testing.assert_allclose(eqx.filter_jit(fno)(a[1], x), one(a[1]), rtol=1e-10, atol=1e-12)
