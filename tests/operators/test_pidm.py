"""Physics-informed diffusion: schedules, noising algebra, samplers, the PIDM loss, Darcy physics, training, CLI."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pdejax import operators as O
from pdejax import solvers
from pdejax.cli import main

# ---------------------------------------------------------------------------------------------- Darcy data


def _manufactured(n):
    # K smooth and positive, p = cos(pi x) cos(pi y): zero normal flux on the walls and zero mean
    x = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(x, x, indexing="ij")
    K = 1 + 0.5 * np.sin(2 * X + Y)
    Kx, Ky = np.cos(2 * X + Y), 0.5 * np.cos(2 * X + Y)
    p = np.cos(np.pi * X) * np.cos(np.pi * Y)
    px, py = -np.pi * np.sin(np.pi * X) * np.cos(np.pi * Y), -np.pi * np.cos(np.pi * X) * np.sin(np.pi * Y)
    f = -(K * (-2 * np.pi**2 * p) + Kx * px + Ky * py)
    return K, f, p


def test_flux_free_darcy_solver_is_second_order_with_zero_mean():
    errors = []
    for n in (16, 32):
        K, f, p = _manufactured(n)
        u = np.asarray(solvers.darcy_flux_free(K, f))
        assert abs(u.mean()) < 1e-12
        errors.append(np.max(np.abs(u - (p - p.mean()))))
    # cell-centred finite volumes with arithmetic face means: O(h^2), so halving h divides the error by ~4
    assert 3.6 < errors[0] / errors[1] < 4.4, errors
    assert errors[1] < 2e-3


def test_source_sink_balances_on_any_grid_and_matches_the_paper_on_aligned_grids():
    for n in (8, 10, 13, 32):
        f = O.source_sink(n)
        assert abs(f.sum()) < 1e-12
        assert abs(f.sum(where=f > 0) / n**2 - 10 * 0.125**2) < 1e-12  # rate x area of the source square
    f = O.source_sink(16)  # w = 1/8 covers exactly 2 cells: +10 on the first 2x2 block, -10 on the last
    assert np.all(f[:2, :2] == 10) and np.all(f[-2:, -2:] == -10) and np.count_nonzero(f) == 8


def test_lognormal_permeability_has_the_exponential_covariance():
    n = 6
    G = np.log(np.asarray(solvers.lognormal_permeability(jax.random.PRNGKey(0), n, 0.3, n * n, shape=(20000,))))
    G = G.reshape(len(G), -1)
    x = (np.arange(n) + 0.5) / n
    pts = np.stack(np.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2)
    exact = np.exp(-np.linalg.norm(pts[:, None] - pts[None], axis=-1) / 0.3)
    # all n^2 terms kept: the sample covariance of 20000 draws is exact up to ~3 / sqrt(20000) ~ 0.02
    assert np.max(np.abs(np.cov(G.T) - exact)) < 0.05
    assert np.max(np.abs(G.mean(0))) < 0.05


def test_darcy_residuals_vanish_on_solver_pairs_and_not_on_perturbed_ones():
    K, p = O.darcy_lognormal_pairs(jax.random.PRNGKey(0), 3, resolution=16)
    phys = O.darcy_lognormal_physics(16)
    fields = np.concatenate([np.asarray(K), np.asarray(p)], 1)
    r = phys.mean_abs_residual(fields)
    assert np.all(r < 1e-9 * np.abs(O.source_sink(16)).mean()), r
    bumped = fields.copy()
    bumped[:, 1] *= 1.01
    assert np.all(phys.mean_abs_residual(bumped) > 1e-4)
    # the FNO paper's Dirichlet case: PDE inside, u = 0 on the boundary
    a, u = O.darcy_pairs(jax.random.PRNGKey(1), 2, resolution=12, rtol=1e-12)
    dphys = O.darcy_dirichlet_physics(12)
    assert np.all(dphys.mean_abs_residual(np.concatenate([np.asarray(a), np.asarray(u)], 1)) < 1e-8)


def test_high_contrast_lognormal_batch_is_generated():
    # the highest-contrast of seed 1's ten batches of 100 fields at 32x32 (K up to 45 or more): with CG's
    # rtol at 1e-10 such a jitted batch stopped at the step limit and raised, although the field's solve
    # reaches 3e-13. Chosen by its K (cheap), not by index: which batch it is depends on jax's RNG version.
    # K > 30, not 40: a GPU's eigh returns other eigenvectors, hence other fields (peak 39.1 on an H200)
    keys = jax.random.split(jax.random.PRNGKey(1), 10)
    peak = [float(solvers.lognormal_permeability(k, 32, 0.1, 64, shape=(100,)).max()) for k in keys]
    key = keys[int(np.argmax(peak))]
    K, p = jax.jit(lambda k: O.darcy_lognormal_pairs(k, 100, resolution=32))(key)
    r = O.darcy_lognormal_physics(32).mean_abs_residual(np.concatenate([np.asarray(K), np.asarray(p)], 1))
    assert float(K.max()) > 30 and np.all(r < 1e-8 * np.abs(O.source_sink(32)).mean()), r.max()


def test_preconditioned_darcy_residual_is_the_relative_pressure_error():
    # for K = 1 the preconditioned residual of p + e is exactly e / rms((-Lap)^-1 f) (zero-mean e): the
    # inverse Laplacian undoes the operator, so the loss sees the pressure error in every mode alike
    n = 16
    K = np.ones((n, n))
    f = O.source_sink(n)
    p = np.asarray(solvers.darcy_flux_free(K, f))
    e = np.random.default_rng(0).normal(size=(n, n)) * 1e-3
    e -= e.mean()
    phys = O.darcy_lognormal_physics(n, precondition=True)
    r = np.asarray(phys.equality(jnp.asarray(np.stack([K, p + e]))))
    scale = np.sqrt(np.mean(p**2))  # (-Lap)^-1 f is p itself when K = 1
    np.testing.assert_allclose(r, e / scale, atol=1e-12)


# ---------------------------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("make", [O.linear_schedule, O.cosine_schedule])
def test_schedules_add_noise_monotonically(make):
    s = make(50)
    ab = np.asarray(s.alpha_bar)
    assert s.steps == 50 and np.all(np.diff(ab) < 0) and 0 < ab[-1] < 0.05 and ab[0] > 0.99
    tab = s.tables(jnp.float64)
    # posterior mean coefficients: q(x_{t-1} | x_t, x0) of Ho et al. eq. 7 at t = 0 returns x0 itself
    assert np.isclose(tab["coef_x0"][0], 1.0) and np.isclose(tab["coef_xt"][0], 0.0)


def test_non_monotone_or_invalid_schedules_are_refused():
    with pytest.raises(ValueError, match="non-monotone noise schedule.*alpha_bar\\[2\\]"):
        O.NoiseSchedule((0.9, 0.8, 0.85, 0.1))
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        O.NoiseSchedule((1.0, 0.5))
    with pytest.raises(ValueError, match="betas"):
        O.NoiseSchedule.from_betas([0.1, -0.01, 0.2])
    with pytest.raises(ValueError, match="unknown noise schedule"):
        O.make_schedule("sigmoid", 10)


def test_x0_estimate_inverts_the_forward_noising():
    s = O.cosine_schedule(100)
    key = jax.random.PRNGKey(0)
    x0 = jax.random.normal(key, (100, 2, 4, 4))
    eps = jax.random.normal(jax.random.PRNGKey(1), x0.shape)
    t = jnp.arange(100)
    xt = O.q_sample(s, x0, t, eps)
    np.testing.assert_allclose(O.x0_from_eps(s, xt, t, eps), x0, atol=1e-12 / np.sqrt(s.alpha_bar[-1]))
    np.testing.assert_allclose(O.eps_from_x0(s, xt, t, x0), eps, atol=1e-12 / np.sqrt(1 - s.alpha_bar[0]))
    # at zero noise the noised field is the scaled clean field, and the estimate is exactly x0
    x_clean = O.q_sample(s, x0, t, jnp.zeros_like(x0))
    np.testing.assert_allclose(x_clean, np.sqrt(np.asarray(s.alpha_bar))[:, None, None, None] * x0, rtol=1e-14)
    np.testing.assert_allclose(O.x0_from_eps(s, x_clean, t, jnp.zeros_like(x0)), x0, rtol=1e-13)


# ---------------------------------------------------------------------------------------------- samplers


class _GaussianOracle(eqx.Module):
    """The exact denoiser E[x0 | x_t] for data x0 ~ N(mu, sigma^2) per entry (normalised units)."""

    alpha_bar: tuple = eqx.field(static=True)
    mu: float = eqx.field(static=True)
    sigma: float = eqx.field(static=True)

    def __call__(self, x, t):
        ab = jnp.asarray(self.alpha_bar)[t.astype(int)]
        gain = jnp.sqrt(ab) * self.sigma**2 / (ab * self.sigma**2 + 1 - ab)
        return self.mu + gain * (x - jnp.sqrt(ab) * self.mu)


class _VOracle(_GaussianOracle):
    """The same exact denoiser as a velocity ``v = (sqrt(abar) x_t - x0) / sqrt(1 - abar)``."""

    def __call__(self, x, t):
        ab = jnp.asarray(self.alpha_bar)[t.astype(int)]
        return (jnp.sqrt(ab) * x - super().__call__(x, t)) / jnp.sqrt(1 - ab)


def test_v_prediction_gives_the_same_estimates_as_the_x0_it_encodes():
    s = O.cosine_schedule(50)
    xt = jax.random.normal(jax.random.PRNGKey(0), (50, 1, 4, 4))
    t = jnp.arange(50)
    by_x0 = O.DiffusionModel(_GaussianOracle(s.alpha_bar, 0.7, 0.5), s, (1, 4, 4), "x0", (0.0,), (1.0,))
    by_v = O.DiffusionModel(_VOracle(s.alpha_bar, 0.7, 0.5), s, (1, 4, 4), "v", (0.0,), (1.0,))
    for a, b in zip(by_x0.denoise(xt, t), by_v.denoise(xt, t)):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sampler,steps,prediction", [("ddpm", None, "x0"), ("ddim", 50, "x0"), ("ddpm", None, "v")])
def test_samplers_with_the_exact_denoiser_reproduce_gaussian_data(sampler, steps, prediction):
    s = O.cosine_schedule(200)
    net = (_GaussianOracle if prediction == "x0" else _VOracle)(s.alpha_bar, 0.7, 0.5)
    model = O.DiffusionModel(net, s, (1, 8, 8), prediction, (0.0,), (1.0,))
    x = O.sample(model, jax.random.PRNGKey(0), 256, sampler=sampler, steps=steps, batch=256)
    # 16384 draws: the mean is within ~4 sigma/sqrt(n) = 0.016; the discretised reverse process keeps the
    # spread within a few per cent of 0.5 (a wrong coefficient or sign moves it by far more)
    assert abs(x.mean() - 0.7) < 0.02
    assert abs(x.std() - 0.5) < 0.03, x.std()


class _CorrelatedOracle(eqx.Module):
    """The exact denoiser for Gaussian data ``x0 = V diag(sqrt(lam)) z`` on a (1, n) field: per eigen-direction
    ``E[x0 | x_t] = sqrt(abar) lam / (abar lam + 1 - abar) x_t``."""

    alpha_bar: jax.Array
    basis: jax.Array
    lam: jax.Array

    def __call__(self, x, t):
        ab = self.alpha_bar[t.astype(int)]
        gain = jnp.sqrt(ab) * self.lam / (ab * self.lam + 1 - ab)
        return (self.basis @ (gain * (self.basis.T @ x[0])))[None]


def test_posterior_sampler_spread_loses_the_large_modes_at_few_steps_and_tends_to_one_with_more():
    # unit variance (what the forward process's noise has) loses little even at T = 100; a mode of variance 300
    # loses ~10% there and ~1% at T = 1000 (the discretisation error of the reverse steps)
    lam = np.array([1.0, 300.0])
    few, many = (
        O.posterior_sampler_spread(O.cosine_schedule(100), lam),
        O.posterior_sampler_spread(O.cosine_schedule(1000), lam),
    )
    assert abs(few[0] - 1) < 0.03 and abs(many[0] - 1) < 0.005
    assert few[1] < 0.92 and abs(many[1] - 1) < 0.02


def test_data_variance_restores_the_spread_the_posterior_variance_loses():
    s = O.cosine_schedule(100)
    lam = np.array([300.0, 60.0, 10.0, 1.0, 0.1, 0.01, 1e-3, 1e-4])  # like smooth fields: a few large modes
    basis, _ = np.linalg.qr(np.asarray(jax.random.normal(jax.random.PRNGKey(3), (8, 8))))
    oracle = _CorrelatedOracle(jnp.asarray(s.alpha_bar), jnp.asarray(basis), jnp.asarray(lam))
    model = O.DiffusionModel(oracle, s, (1, 8), "x0", (0.0,), (1.0,))
    data = (np.asarray(jax.random.normal(jax.random.PRNGKey(4), (4096, 8))) * np.sqrt(lam)) @ basis.T

    def spread(x):  # sample std over the data's, per eigen-direction
        return np.std(x[:, 0] @ basis, axis=0) / np.sqrt(lam)

    expected = O.posterior_sampler_spread(s, lam)  # the NumPy recursion, independent of sample()
    assert expected[0] < 0.92  # T = 100 steps lose ~10% of the largest mode's spread even with this denoiser
    post = spread(O.sample(model, jax.random.PRNGKey(0), 8000, batch=8000))
    data_var = spread(O.sample(model, jax.random.PRNGKey(0), 8000, batch=8000, variance="data", fields=data[:, None]))
    # 8000 draws: each std ratio is within ~0.8% (one sigma) of its expectation; 3% is ~4 sigma
    np.testing.assert_allclose(post[:4], expected[:4], atol=0.03)
    np.testing.assert_allclose(data_var[:3], 1.0, atol=0.03)
    assert data_var[0] - post[0] > 0.05
    with pytest.raises(ValueError, match="pass fields"):
        O.sample(model, jax.random.PRNGKey(0), 4, variance="data")
    with pytest.raises(ValueError, match="DDIM sets its own"):
        O.sample(model, jax.random.PRNGKey(0), 4, sampler="ddim", variance="data", fields=data[:, None])
    with pytest.raises(ValueError, match="unknown variance"):
        O.sample(model, jax.random.PRNGKey(0), 4, variance="beta")
    with pytest.raises(ValueError, match="do not match"):
        O.sample(model, jax.random.PRNGKey(0), 4, variance="data", fields=data[:, None, :4])


# ---------------------------------------------------------------------------------------------- loss


class _Mix(eqx.Module):
    """A small backbone: a step-scaled pointwise hidden layer shared by the output channels (a U-Net's eager
    gradients take 20 s to compile; what is tested here does not depend on the architecture)."""

    w1: jax.Array
    w2: jax.Array

    def __init__(self, c_in, c_out, key):
        k1, k2 = jax.random.split(key)
        self.w1 = jax.random.normal(k1, (4, c_in))
        self.w2 = jax.random.normal(k2, (c_out, 4))

    def __call__(self, x, t):
        h = jnp.tanh(jnp.einsum("oc,chw->ohw", self.w1, x) * (1 + t / 10))
        return jnp.einsum("oc,chw->ohw", self.w2, h)


def test_pidm_loss_is_the_residual_likelihood_with_the_reverse_variance():
    s = O.linear_schedule(20)
    fields = np.random.default_rng(0).normal(size=(4, 2, 8, 8))
    model = O.build_diffusion(_Mix(2, 2, jax.random.PRNGKey(0)), s, fields)
    phys = O.FieldPhysics(lambda x: x[0] - 2 * x[1], lambda x: x[0])
    x0 = model.normalise(jnp.asarray(fields))
    key = jax.random.PRNGKey(3)

    @eqx.filter_jit
    def by_hand(model, x0, key, floor=0.0):
        # the same draws (the loss splits the key into steps and noise) and the formulas of the docstring
        kt, ke = jax.random.split(key)
        t = jax.random.randint(kt, (4,), 0, 20)
        eps = jax.random.normal(ke, x0.shape, x0.dtype)
        x0_hat, _ = model.denoise(O.q_sample(s, x0, t, eps), t)
        tab = s.tables(jnp.float64)
        x = model.denormalise(x0_hat)
        r, g = x[:, 0] - 2 * x[:, 1], jnp.maximum(x[:, 0], 0)
        var, w = tab["var"][t], jnp.maximum(jnp.minimum(tab["snr"][t], 5.0), floor)
        data = jnp.mean(w * jnp.mean((x0_hat - x0) ** 2, (1, 2, 3)))
        eq = jnp.mean(0.1 * 0.5 * jnp.mean(r**2, (1, 2)) / var)
        return data, eq, jnp.mean(0.2 * 0.5 * jnp.mean(g**2, (1, 2)) / var), jnp.mean(jnp.abs(r))

    loss = eqx.filter_jit(O.diffusion_loss)
    _, terms = loss(model, x0, key, phys, 0.1, 0.2, min_snr=5.0)
    np.testing.assert_allclose(terms, by_hand(model, x0, key), rtol=1e-10)
    # the truncated-SNR floor lifts the weight of the noisiest steps (this key draws some with SNR < 1)
    floored = loss(model, x0, key, phys, 0.1, 0.2, min_snr=5.0, snr_floor=1.0)[1]
    np.testing.assert_allclose(floored, by_hand(model, x0, key, 1.0), rtol=1e-10)
    assert floored[0] > terms[0] and np.array_equal(floored[1:], terms[1:])
    with pytest.raises(ValueError, match="snr_floor"):
        O.DiffusionConfig(snr_floor=10.0)
    data, eq, ineq, rabs = terms
    assert ineq > 0 and eq > 0  # about half the entries of a zero-mean random field are positive
    # an inequality that holds everywhere costs nothing
    ok = O.FieldPhysics(inequality=lambda x: -jnp.abs(x[0]) - 1.0)
    assert loss(model, x0, key, ok, 0.0, 1.0)[1][2] == 0.0


class _FieldNet(eqx.Module):
    """A "denoiser" whose x0 estimate is its own parameter field, to read the loss's gradient per channel."""

    w: jax.Array

    def __call__(self, x, t):
        return self.w


def test_physics_gradient_flows_only_through_the_chosen_channels():
    s = O.cosine_schedule(10)
    w = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4)))
    model = O.DiffusionModel(_FieldNet(w), s, (2, 4, 4), "x0", (0.0, 0.0), (1.0, 1.0))
    x0 = jnp.zeros((3, 2, 4, 4))

    def grad(through):
        phys = O.FieldPhysics(lambda x: x[0] * x[1] - 1.0, through=through)
        f = lambda m: O.diffusion_loss(m, x0, jax.random.PRNGKey(0), phys, 1.0, 0.0)[1][1]  # noqa: E731
        return np.asarray(eqx.filter_grad(f)(model).net.w)

    g_all, g_p = grad(None), grad((1,))
    assert np.all(np.abs(g_all) > 0)
    assert np.all(g_p[0] == 0) and np.array_equal(g_p[1], g_all[1])


def test_config_combination_follows_neither_term_against_the_other():
    # combine='config': the update is ConFIG's direction of the data and physics gradients, here computed
    # from each term's own gradient; it descends both, where the summed gradient (the physics term 100x the
    # data term's weight) ascends the data term
    from pdejax.operators._diffusion import _update_direction
    from pdejax.pinns import config_direction

    s = O.cosine_schedule(10)
    # the data pull the estimate towards ~0, the residual x0 x1 - 1 pushes its (positive) entries up: conflict
    w = jnp.asarray(0.5 + 0.1 * np.random.default_rng(0).normal(size=(2, 4, 4)))
    model = O.DiffusionModel(_FieldNet(w), s, (2, 4, 4), "x0", (0.0, 0.0), (1.0, 1.0))
    x0 = jnp.asarray(0.1 * np.random.default_rng(1).normal(size=(3, 2, 4, 4)))
    phys = O.FieldPhysics(lambda x: x[0] * x[1] - 1.0)
    p, static = eqx.partition(model, eqx.is_inexact_array)

    def loss_fn(p):
        return O.diffusion_loss(eqx.combine(p, static), x0, jax.random.PRNGKey(2), phys, 100.0, 0.0)

    g_data, g_phys = (np.ravel(jax.grad(lambda p, i=i: loss_fn(p)[1][i])(p).net.w) for i in (0, 1))
    loss, terms, g = _update_direction(loss_fn, p, "config")
    g = np.ravel(g.net.w)
    np.testing.assert_allclose(g, config_direction(jnp.stack([g_data, g_phys])), rtol=1e-10, atol=1e-12)
    assert g @ g_data > 0 and g @ g_phys > 0
    np.testing.assert_allclose(loss, jnp.sum(terms[:3]), rtol=1e-12)
    _, _, g_sum = _update_direction(loss_fn, p, "sum")
    np.testing.assert_allclose(np.ravel(g_sum.net.w), g_data + g_phys, rtol=1e-10)
    assert np.ravel(g_sum.net.w) @ g_data < 0  # the sum conflicts with the data term here

    # trained with it (jitted, through clip and Adam), and with the sum
    def trained(combine):
        cfg = O.DiffusionConfig(steps=40, batch_size=3, chunk=20, warmup=1, ema_decay=0.0, learning_rate=1e-2,
                                physics_weight=100.0, combine=combine)  # fmt: skip
        res = O.train_diffusion(model, np.asarray(x0), cfg, physics=phys, progress=False)
        return [float(v) for v in loss_fn(eqx.filter(res.model, eqx.is_inexact_array))[1][:2]]

    (data0, phys0), (data_c, phys_c), (data_s, phys_s) = loss_fn(p)[1][:2], trained("config"), trained("sum")
    # both lower the residual term; the sum does it by doubling the data term (measured: 0.024 -> 0.048),
    # ConFIG keeps it within a few percent
    assert phys_c < phys0 and phys_s < phys0
    assert data_s > 1.5 * data0 and data_c < 1.1 * data0
    with pytest.raises(ValueError, match="combine='config' needs two loss terms"):
        O.DiffusionConfig(combine="config")
    with pytest.raises(ValueError, match="combine must be one of"):
        O.DiffusionConfig(combine="pcgrad", physics_weight=1.0)


def test_config_per_backbone_leaves_the_network_the_physics_does_not_reach_to_its_data_gradient():
    # combine='config_per_backbone': ConFIG within each channel's backbone. The permeability's network gets no
    # physics gradient (the residual trains through the pressure), so its direction is its data gradient
    # itself; with one global ConFIG the physics term also sets that network's step
    from pdejax.operators._diffusion import _backbone_groups, _update_direction
    from pdejax.pinns import config_direction

    s = O.cosine_schedule(10)
    nets = [_Mix(2, 1, k) for k in jax.random.split(jax.random.PRNGKey(5))]
    x0 = jnp.asarray(np.random.default_rng(6).normal(size=(3, 2, 8, 8)))
    model = O.build_diffusion(O.ChannelSplit(nets, 2), s, np.asarray(x0))
    phys = O.FieldPhysics(lambda x: x[0] * x[1] - 1.0, through=(1,))
    p, static = eqx.partition(model, eqx.is_inexact_array)

    def loss_fn(p):
        return O.diffusion_loss(eqx.combine(p, static), x0, jax.random.PRNGKey(7), phys, 10.0, 0.0)

    def flat(tree):
        return np.asarray(jax.flatten_util.ravel_pytree(tree)[0])

    g_data, g_phys = (jax.grad(lambda p, i=i: loss_fn(p)[1][i])(p).net.nets for i in (0, 1))
    groups = _backbone_groups(p)
    _, _, g = _update_direction(loss_fn, p, "config_per_backbone", groups)
    np.testing.assert_allclose(flat(g.net.nets[0]), flat(g_data[0]), rtol=1e-10)
    expect = config_direction(jnp.stack([flat(g_data[1]), flat(g_phys[1])]))
    np.testing.assert_allclose(flat(g.net.nets[1]), expect, rtol=1e-10, atol=1e-14)
    _, _, g_global = _update_direction(loss_fn, p, "config")
    k_global, k_data = flat(g_global.net.nets[0]), flat(g_data[0])
    assert np.linalg.norm(k_global - k_data) > 0.01 * np.linalg.norm(k_data)
    # one group: the same as the global ConFIG
    np.testing.assert_allclose(flat(_update_direction(loss_fn, p, "config_per_backbone")[2]), flat(g_global),
                               rtol=1e-12)  # fmt: skip

    # trained (jitted, clipped per backbone, Adam): the permeability's network ends as the no-physics twin's
    def trained(weight, combine):
        cfg = O.DiffusionConfig(steps=20, batch_size=3, chunk=10, warmup=1, learning_rate=1e-2,
                                physics_weight=weight, combine=combine, clip_per_backbone=True)  # fmt: skip
        return O.train_diffusion(model, np.asarray(x0), cfg, physics=phys, progress=False).model.net.nets

    pidm, twin = trained(10.0, "config_per_backbone"), trained(0.0, "sum")
    np.testing.assert_allclose(flat(pidm[0]), flat(twin[0]), rtol=1e-9, atol=1e-12)
    assert np.linalg.norm(flat(pidm[1]) - flat(twin[1])) > 1e-3 * np.linalg.norm(flat(twin[1]))
    with pytest.raises(ValueError, match="combine='config_per_backbone' needs two loss terms"):
        O.DiffusionConfig(combine="config_per_backbone")


def test_low_noise_mix_draws_steps_by_the_residual_weight_and_keeps_the_loss_unbiased():
    # a denoiser whose estimate ignores x_t makes every term a known function of the step alone, so the
    # estimator's mean and spread under the step distribution q are exact sums over t
    s = O.cosine_schedule(20)
    rng = np.random.default_rng(2)
    w = jnp.asarray(rng.normal(size=(2, 4, 4)))
    model = O.DiffusionModel(_FieldNet(w), s, (2, 4, 4), "x0", (0.0, 0.0), (1.0, 1.0))
    x0 = jnp.broadcast_to(jnp.asarray(rng.normal(size=(2, 4, 4))), (512, 2, 4, 4))
    phys = O.FieldPhysics(lambda x: x[0] - 2 * x[1])
    tab = {k: np.asarray(v) for k, v in s.tables(jnp.float64).items()}
    per_t = np.stack([np.minimum(tab["snr"], 5.0) * float(jnp.mean((w - x0[0]) ** 2)),
                      0.1 * 0.5 * float(jnp.mean((w[0] - 2 * w[1]) ** 2)) / tab["var"]])  # fmt: skip
    q = np.asarray(O.step_distribution(s, 0.5))
    assert abs(q.sum() - 1) < 1e-12 and np.all(q > 0)
    np.testing.assert_allclose(q, 0.5 / 20 + 0.5 * (1 / tab["var"]) / np.sum(1 / tab["var"]), rtol=1e-12)
    est = jax.jit(jax.vmap(lambda k: O.diffusion_loss(model, x0, k, phys, 0.1, 0.0, low_noise_mix=0.5)[1][:2]))
    terms = np.asarray(est(jax.random.split(jax.random.PRNGKey(0), 64)))  # 64 x 512 steps drawn
    iw = (1 / 20) / q
    mean = per_t.mean(1)
    sd_is = np.sqrt(np.sum(q * (iw * per_t) ** 2, 1) - mean**2)
    se = sd_is / np.sqrt(terms.size / 2)
    # unbiased: within 4 standard errors of the exact uniform-step mean (unweighted draws from q would be
    # 1.7x too high for the data term and 2.5x for the residual term, hundreds of standard errors)
    assert np.all(np.abs(terms.mean(0) - mean) < 4 * se), (terms.mean(0), mean, se)
    # and the residual term's spread is lower than with uniform steps (that is what the mix is for)
    assert sd_is[1] < 0.5 * per_t[1].std()
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="low_noise_mix must be in"):
            O.DiffusionConfig(low_noise_mix=bad)


def test_split_backbone_keeps_the_residual_gradient_out_of_the_permeability_network():
    # one backbone per channel: the residual trained through the pressure gives the permeability's denoiser a
    # gradient of exactly zero (a shared network would receive one through its common weights), while the
    # data term still trains both
    s = O.cosine_schedule(10)
    nets = [_Mix(2, 1, k) for k in jax.random.split(jax.random.PRNGKey(0))]
    x0 = jnp.asarray(np.random.default_rng(1).normal(size=(3, 2, 8, 8)))
    model = O.build_diffusion(O.ChannelSplit(nets, 2), s, np.asarray(x0))
    phys = O.FieldPhysics(lambda x: x[0] * x[1] - 1.0, through=(1,))

    def norms(term):
        f = lambda m: O.diffusion_loss(m, x0, jax.random.PRNGKey(0), phys, 1.0, 0.0)[1][term]  # noqa: E731
        g = eqx.filter_grad(f)(model).net.nets
        return [float(optax.tree.norm(eqx.filter(n, eqx.is_array))) for n in g]

    k_phys, p_phys = norms(1)
    k_data, p_data = norms(0)
    assert k_phys == 0.0 and p_phys > 0
    assert k_data > 0 and p_data > 0
    assert model.denoise(x0, jnp.array([0, 4, 9]))[0].shape == x0.shape
    model1 = O.build_diffusion(_Mix(2, 2, jax.random.PRNGKey(0)), s, np.asarray(x0))
    g1 = eqx.filter_grad(lambda m: O.diffusion_loss(m, x0, jax.random.PRNGKey(0), phys, 1.0, 0.0)[1][1])(model1)
    assert np.all(np.abs(np.asarray(g1.net.w1)) > 0)  # the shared hidden layer is hit
    with pytest.raises(ValueError, match="fields of 3 channels"):
        O.build_diffusion(O.ChannelSplit(nets, 3), s, np.zeros((2, 2, 8, 8)))
    # FNO backbones are split through their batched method; the result is each sample's own call
    fnos = O.ChannelSplit([O.FNOBackbone(2, 10, 3, 8, 2, key=k, out_channels=1) for k in jax.random.split(
        jax.random.PRNGKey(2))], 2)  # fmt: skip
    tf = jnp.array([0.0, 4.0, 9.0])
    np.testing.assert_allclose(fnos.batched(x0, tf), jnp.stack([fnos(xi, ti) for xi, ti in zip(x0, tf)]),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    settings = O.pidm_settings("darcy", split_channels=True, resolution=8, depth=2, width=8)
    split = O.build_pidm(settings, np.ones((2, 2, 8, 8)), key=jax.random.PRNGKey(0))
    assert isinstance(split.net, O.ChannelSplit) and len(split.net.nets) == 2


def test_cascade_backbone_reads_the_earlier_channels_estimates_without_their_gradient():
    # ChannelSplit(cascade=True): the pressure's backbone reads (x_t, K estimate), so it sees the permeability
    # the residual is evaluated on; the residual trained through the pressure still leaves K's denoiser alone
    s = O.cosine_schedule(10)
    kk, kp = jax.random.split(jax.random.PRNGKey(3))
    net = O.ChannelSplit([_Mix(2, 1, kk), _Mix(3, 1, kp)], 2, cascade=True)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 2, 8, 8)))
    t = jnp.array([0.0, 4.0, 9.0])
    k_hat = jnp.stack([net.nets[0](xi, ti) for xi, ti in zip(x, t)])
    p_hat = jnp.stack([net.nets[1](jnp.concatenate([xi, ki]), ti) for xi, ki, ti in zip(x, k_hat, t)])
    np.testing.assert_allclose(net.batched(x, t), jnp.concatenate([k_hat, p_hat], 1), rtol=1e-12)
    model = O.build_diffusion(net, s, np.asarray(x))
    phys = O.FieldPhysics(lambda f: f[0] * f[1] - 1.0, through=(1,))
    g = eqx.filter_grad(lambda m: O.diffusion_loss(m, x, jax.random.PRNGKey(0), phys, 1.0, 0.0)[1][1])(model)
    k_norm, p_norm = (float(optax.tree.norm(eqx.filter(n, eqx.is_array))) for n in g.net.nets)
    assert k_norm == 0.0 and p_norm > 0  # the K estimate enters the pressure's backbone with its gradient stopped
    settings = O.pidm_settings("darcy", split_channels="cascade", resolution=8, depth=2, width=8)
    cascade = O.build_pidm(settings, np.ones((2, 2, 8, 8)), key=jax.random.PRNGKey(0))
    assert cascade.net.cascade and [n.channels for n in cascade.net.nets] == [2, 3]
    with pytest.raises(ValueError, match="split_channels must be True, False, 'cascade' or 'ordered'"):
        O.pidm_settings("darcy", split_channels="yes")
    # ordered: the permeability's backbone reads the permeability channel of x_t only, so its estimate does
    # not change when the pressure channel does (it is a model of K's marginal)
    settings = O.pidm_settings("darcy", split_channels="ordered", resolution=8, depth=2, width=8)
    ordered = O.build_pidm(settings, np.ones((2, 2, 8, 8)), key=jax.random.PRNGKey(0))
    assert ordered.net.ordered and ordered.net.cascade and [n.channels for n in ordered.net.nets] == [1, 3]
    x2 = x.at[:, 1].set(5.0 * x[:, 1] + 1.0)
    out, out2 = (ordered.net.batched(v, t) for v in (x, x2))
    np.testing.assert_array_equal(out[:, 0], out2[:, 0])
    assert float(jnp.max(jnp.abs(out[:, 1] - out2[:, 1]))) > 1e-3  # the pressure's does read it
    with pytest.raises(ValueError, match="one backbone per channel"):
        O.ChannelSplit([_Mix(2, 2, kk)], 2, ordered=True)


def test_per_backbone_clipping_bounds_each_networks_gradient_on_its_own():
    # with one backbone per channel a large gradient into one network (PIDM's residual into the pressure's)
    # must not shrink the other's update, as a global-norm clip does; with one backbone it is the global clip
    from pdejax.operators._diffusion import _backbone_groups, _clip_by_group_norm

    s = O.cosine_schedule(10)
    nets = [_Mix(2, 1, k) for k in jax.random.split(jax.random.PRNGKey(0))]
    x0 = np.random.default_rng(1).normal(size=(3, 2, 8, 8))
    params = eqx.filter(O.build_diffusion(O.ChannelSplit(nets, 2), s, x0), eqx.is_inexact_array)
    groups = _backbone_groups(params)
    assert sorted(set(groups)) == [0, 1] and groups.count(0) == groups.count(1)
    big, small = 30.0, 0.2  # the gradient norms of the two backbones
    g = jax.tree_util.tree_map(jnp.ones_like, params)
    unit = [float(optax.tree.norm(n)) for n in g.net.nets]
    scaled = [jax.tree_util.tree_map(lambda x, f=f / u: x * f, n) for n, f, u in zip(g.net.nets, (small, big), unit)]
    g = eqx.tree_at(lambda m: m.net.nets, g, replace=tuple(scaled))
    per = _clip_by_group_norm(1.0, groups)
    clipped, _ = per.update(g, per.init(params), params)
    k, p = (float(optax.tree.norm(n)) for n in clipped.net.nets)
    np.testing.assert_allclose([k, p], [small, 1.0], rtol=1e-6)  # under the bound: untouched; over: to 1
    glob, _ = optax.clip_by_global_norm(1.0).update(g, optax.clip_by_global_norm(1.0).init(g))
    # what the global clip does to the small one: scaled by 1/30 with the big one
    np.testing.assert_allclose(float(optax.tree.norm(glob.net.nets[0])), small / np.hypot(big, small), rtol=1e-6)
    single = _clip_by_group_norm(1.0, (0,) * len(groups))
    one, _ = single.update(g, single.init(params), params)
    for a, b in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(glob)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    shared = eqx.filter(O.build_diffusion(_Mix(2, 2, jax.random.PRNGKey(0)), s, x0), eqx.is_inexact_array)
    assert _backbone_groups(shared) is None  # one backbone: the optimizer keeps optax's global clip


def test_bad_shapes_and_settings_are_refused():
    s = O.cosine_schedule(10)
    net = O.UNet(2, 8, (1, 2, 2), key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="multiples of 4"):
        O.build_diffusion(net, s, np.zeros((2, 2, 10, 10)))
    with pytest.raises(ValueError, match="takes fields of shape \\(2, h, w\\)"):
        O.build_diffusion(net, s, np.zeros((2, 3, 8, 8)))
    model = O.build_diffusion(net, s, np.random.default_rng(0).normal(size=(2, 2, 8, 8)))
    with pytest.raises(ValueError, match="do not match the model, which takes \\(batch, 2, 8, 8\\)"):
        O.train_diffusion(model, np.zeros((4, 2, 16, 16)), O.DiffusionConfig(steps=1), progress=False)
    with pytest.raises(ValueError, match="needs the physics"):
        O.train_diffusion(model, np.zeros((4, 2, 8, 8)), O.DiffusionConfig(steps=1, physics_weight=1.0))
    with pytest.raises(ValueError, match="prediction"):
        O.DiffusionModel(net, s, (2, 8, 8), "score", (0.0, 0.0), (1.0, 1.0))
    with pytest.raises(ValueError, match="unknown sampler"):
        O.sample(model, jax.random.PRNGKey(0), 1, sampler="euler")
    with pytest.raises(ValueError, match="normalise must be one of"):
        O.build_diffusion(net, s, np.zeros((2, 2, 8, 8)), normalise="minmax")
    with pytest.raises(ValueError, match="normalise must be one of"):
        O.pidm_settings("darcy", normalise="minmax")
    with pytest.raises(ValueError, match="resolution divisible by 4"):
        O.pidm_settings("darcy", resolution=18)
    with pytest.raises(ValueError, match="PIDM has the physics of"):
        O.pidm_settings("burgers1d")


# ---------------------------------------------------------------------------------------------- training


def test_tiny_model_overfits_one_sample():
    rng = np.random.default_rng(0)
    x = np.cumsum(np.cumsum(rng.normal(size=(1, 2, 8, 8)), 2), 3)  # one smooth-ish two-channel field
    x = x / x.std()
    s = O.cosine_schedule(20)
    model = O.build_diffusion(O.UNet(2, 16, (1, 2), key=jax.random.PRNGKey(0)), s, x)
    cfg = O.DiffusionConfig(steps=200, batch_size=8, learning_rate=3e-3, warmup=20, ema_decay=0.0, chunk=100)
    res = O.train_diffusion(model, x, cfg, progress=False)
    assert res.history["data"][-1] < 1e-2 * res.history["data"][0]
    gen = O.sample(res.model, jax.random.PRNGKey(1), 4, sampler="ddim", steps=10)
    err = np.linalg.norm((gen - x).reshape(4, -1), axis=1) / np.linalg.norm(x)
    assert np.all(err < 0.05), err


@pytest.mark.long
def test_training_resumes_bitwise_and_stops_on_nan(tmp_path):
    fields = np.random.default_rng(0).normal(size=(8, 2, 8, 8))
    s = O.cosine_schedule(10)
    # a split backbone (a tuple of modules) of small nets: the checkpoint holds any pytree; a U-Net's training
    # step takes 10 s to compile, three times here, and U-Net runs resume in the CLI test
    nets = O.ChannelSplit([_Mix(2, 1, k) for k in jax.random.split(jax.random.PRNGKey(0))], 2)
    model = O.build_diffusion(nets, s, fields)
    phys = O.FieldPhysics(lambda x: x[0] - x[1])
    cfg = O.DiffusionConfig(steps=6, batch_size=4, chunk=3, checkpoint_every=3, physics_weight=1e-3, warmup=2)
    full = O.train_diffusion(model, fields, cfg, physics=phys, progress=False)
    # interrupted after 3 steps: the same learning-rate schedule (decaying over 6 steps), stopped early
    half = O.DiffusionConfig(steps=3, batch_size=4, chunk=3, physics_weight=1e-3, warmup=2, decay_steps=6)
    O.train_diffusion(model, fields, half, physics=phys, out_dir=tmp_path, progress=False)
    resumed = O.train_diffusion(model, fields, cfg, physics=phys, out_dir=tmp_path, resume=True, progress=False)
    assert resumed.steps == 6 and resumed.history["loss"] == full.history["loss"]
    for a, b in zip(jax.tree_util.tree_leaves(eqx.filter(full.model, eqx.is_array)),
                    jax.tree_util.tree_leaves(eqx.filter(resumed.model, eqx.is_array))):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    bad = O.FieldPhysics(lambda x: jnp.where(x[0] > -1e9, jnp.nan, 0.0))
    with pytest.raises(O.DiffusionTrainingDiverged, match="physics term became NaN/Inf at step 1"):
        O.train_diffusion(model, fields, cfg, physics=bad, progress=False)


def test_fno_backbone_trains_and_samples():
    fields = np.random.default_rng(0).normal(size=(8, 2, 12, 12))
    s = O.cosine_schedule(10)
    model = O.build_diffusion(O.FNOBackbone(2, 10, modes=4, width=8, depth=2, key=jax.random.PRNGKey(0)), s, fields)
    res = O.train_diffusion(model, fields, O.DiffusionConfig(steps=4, batch_size=4, chunk=2), progress=False)
    x = O.sample(res.model, jax.random.PRNGKey(0), 3, sampler="ddim", steps=3)
    assert x.shape == (3, 2, 12, 12) and np.all(np.isfinite(x))


# ---------------------------------------------------------------------------------------------- CLI

_SMALL = ["--resolution", "16", "--n-train", "16", "--steps", "6", "--batch", "4", "--width", "8", "--depth", "2",
          "--samples", "2", "--diffusion-steps", "10", "--no-progress"]  # fmt: skip


@pytest.mark.long
def test_cli_pidm_writes_metrics_and_pictures_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["solve", "darcy", "--method", "pidm", *_SMALL, "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "pidm" and m["steps"] == 6 and m["dataset"] == "darcy_lognormal"
    assert set(m["residual_mean_abs"]) == {"pidm", "ddpm", "data"} and m["residual_mean_abs"]["data"] < 1e-4
    assert m["residual_ratio"] > 0 and 0 < m["rel_l2"] and m["permeability"]["pidm"]["std"] > 0
    for f in ("samples.png", "solution.png", "loss.png", "checkpoint.npz", "ddpm/checkpoint.npz", "data.npz"):
        assert (out / f).exists(), f
    assert "darcy pidm: mean |residual|" in capsys.readouterr().out
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings["split_channels"] == "ordered" and settings["clip_per_backbone"] is True  # the defaults
    assert settings["sample_variance"] == "data"
    assert main(["solve", "darcy", "--resume", str(out), "--steps", "8", "--no-progress"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 8
    # a run.json written before the normalise / ema_warmup / split_channels / snr_floor / low_noise_mix settings
    # existed resumes with the behaviour it had (one shared backbone: what those versions trained)
    from pdejax.cli import _resumed_pidm_settings

    saved = json.loads((out / "run.json").read_text())["settings"]
    before = {"normalise": "channel", "ema_warmup": False, "split_channels": False, "snr_floor": 0.0,
              "low_noise_mix": 0.0, "clip_per_backbone": False, "combine": "sum",
              "sample_variance": "posterior"}  # fmt: skip
    old = {k: v for k, v in saved.items() if k not in before}
    assert _resumed_pidm_settings(old, 12) == {**saved, "steps": 12, **before}
    assert _resumed_pidm_settings(saved, None) == saved  # a current run.json resumes as written


@pytest.mark.parametrize(
    "argv,message",
    [
        (["solve", "burgers", "--sampler", "ddim"], "--sampler ddim samples a diffusion model"),
        (["solve", "burgers", "--samples", "3"], "--samples: options of --method pidm"),
        (["solve", "darcy", "--method", "fno", "--backbone", "unet"], "--backbone: options of --method pidm"),
        (["solve", "heat", "--split-channels", "on"], "--split-channels: options of --method pidm"),
        (["solve", "heat", "--snr-floor", "1"], "--snr-floor: options of --method pidm"),
        (["solve", "darcy", "--method", "pidm", "--epochs", "3"], "--epochs: not options of --method pidm"),
        (["solve", "burgers1d", "--method", "pidm"], "use it with darcy"),
        (["solve", "darcy", "--method", "pidm", "--resolution", "18"], "divisible by 4"),
        (["solve", "darcy", "--method", "pidm", "--sample-steps", "500"], "sample_steps must be in"),
        (["solve", "darcy", "--method", "pidm", "--snr-floor", "-1"], "snr_floor must be in [0, 5]"),
        (["solve", "heat", "--low-noise-mix", "0.5"], "--low-noise-mix: options of --method pidm"),
        (["solve", "darcy", "--method", "pidm", "--low-noise-mix", "1"], "low_noise_mix must be in [0, 1)"),
        (["solve", "heat", "--combine", "config"], "--combine: options of --method pidm"),
        (["solve", "darcy", "--method", "pidm", "--combine", "mean"], "invalid choice: 'mean'"),
        (["solve", "heat", "--sample-variance", "data"], "--sample-variance: options of --method pidm"),
        (
            ["solve", "darcy", "--method", "pidm", "--sampler", "ddim", "--sample-variance", "data"],
            "sample_variance='data' is DDPM's",
        ),
    ],
)
def test_cli_pidm_bad_input(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "flags,split", [([], "ordered"), (["--split-channels", "on"], True), (["--no-split-channels"], False),
                    (["--split-channels", "off"], False), (["--split-channels", "cascade"], "cascade"),
                    (["--split-channels", "ordered"], "ordered")]
)  # fmt: skip
def test_cli_split_channels_flag_maps_to_the_setting(flags, split):
    from pdejax.cli import _pidm_overrides, build_parser

    args = build_parser().parse_args(["solve", "darcy", "--method", "pidm", *flags])
    assert O.pidm_settings("darcy", **_pidm_overrides(args))["split_channels"] == split


@pytest.mark.parametrize(
    "flags,combine", [([], "sum"), (["--combine", "sum"], "sum"), (["--combine", "config"], "config")]
)
def test_cli_combine_flag_maps_to_the_setting(flags, combine):
    from pdejax.cli import _pidm_overrides, build_parser

    args = build_parser().parse_args(["solve", "darcy", "--method", "pidm", *flags])
    assert O.pidm_settings("darcy", **_pidm_overrides(args))["combine"] == combine


@pytest.mark.parametrize(
    "flags,variance",
    [([], "data"), (["--sample-variance", "posterior"], "posterior"), (["--sampler", "ddim"], "posterior")],
)
def test_cli_sample_variance_flag_maps_to_the_setting(flags, variance):
    from pdejax.cli import _pidm_overrides, build_parser

    args = build_parser().parse_args(["solve", "darcy", "--method", "pidm", *flags])
    assert O.pidm_settings("darcy", **_pidm_overrides(args))["sample_variance"] == variance


def test_normalise_none_diffuses_fields_in_their_own_units():
    fields = np.random.default_rng(0).normal(3.0, 0.1, size=(6, 2, 8, 8))
    net = O.UNet(2, 8, (1, 2), key=jax.random.PRNGKey(0))
    s = O.cosine_schedule(10)
    raw = O.build_diffusion(net, s, fields, normalise="none")
    np.testing.assert_array_equal(np.asarray(raw.normalise(jnp.asarray(fields))), fields)
    z = np.asarray(O.build_diffusion(net, s, fields).normalise(jnp.asarray(fields)))
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0.0, atol=1e-6)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1.0, rtol=1e-5)


def test_ema_warmup_averages_with_the_warmup_decay():
    # two steps from the same start (the first at learning rate 0, the warm-up's start): the average after the
    # second weighs the initial parameters by the warm-up decay (1 + 2) / (10 + 2); a fixed 0.999 keeps 99.9%
    fields = np.random.default_rng(1).normal(size=(8, 2, 8, 8))
    w = jnp.asarray(np.random.default_rng(2).normal(size=(2, 8, 8)))  # a parameter field: EMA is per parameter
    model = O.build_diffusion(_FieldNet(w), O.cosine_schedule(10), fields)

    def trained(**kw):
        cfg = O.DiffusionConfig(steps=2, batch_size=4, chunk=2, warmup=1, **kw)
        res = O.train_diffusion(model, fields, cfg, progress=False)
        return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(eqx.filter(res.model, eqx.is_array))])

    init = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))])
    raw = trained(ema_decay=0.0)
    assert np.abs(raw - init).max() > 1e-4
    np.testing.assert_allclose(trained(), 0.25 * init + 0.75 * raw, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(trained(ema_warmup=False), 0.999 * init + 0.001 * raw, rtol=1e-5, atol=1e-7)
