"""LPINN: Lagrangian residuals on exact solutions, the learned characteristics, Eulerian inversion, errors."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pdejax.problems as P
from pdejax import pinns
from pdejax.pinns import LagrangianForm, eulerian_predict, lagrangian_form, lagrangian_residuals

jax.config.update("jax_enable_x64", True)


class _Exact(eqx.Module):
    """An exact Lagrangian solution ``(x0, t) -> (X, U)`` with the attributes :func:`eulerian_predict` reads."""

    fn: object = eqx.field(static=True)
    lower: tuple = eqx.field(static=True)
    upper: tuple = eqx.field(static=True)
    periodic: bool = eqx.field(static=True)

    def __call__(self, z):
        return self.fn(z)


def _burgers_wave(c=0.3, a=0.5, nu=0.05):
    """Viscous Burgers travelling wave ``u = c - a tanh(a (x - c t) / (2 nu))`` along its characteristics:
    ``xi = x - c t`` obeys ``d xi/dt = -a tanh(a xi / 2 nu)``, so ``sinh(a xi / 2 nu)`` decays like
    ``exp(-a^2 t / 2 nu)``: ``X = c t + (2 nu / a) asinh(sinh(a x0 / 2 nu) exp(-a^2 t / 2 nu))``."""
    k = a / (2 * nu)

    def lag(z):
        x0, t = z
        xi = jnp.arcsinh(jnp.sinh(k * x0) * jnp.exp(-(a**2) * t / (2 * nu))) / k
        return jnp.stack([xi + c * t, c - a * jnp.tanh(k * xi)])

    return lag, (lambda x, t: c - a * np.tanh(k * (x - c * t)))


def test_lagrangian_residuals_vanish_on_exact_solutions():
    # advection-diffusion: X = x0 + beta t, U = exp(-nu t) sin x0 (X' = 1, u_xx = -U)
    beta, nu = 40.0, 0.3
    form = lagrangian_form(P.get("convection", beta=beta, nu=nu))
    exact = lambda z: jnp.stack([z[0] + beta * z[1], jnp.exp(-nu * z[1]) * jnp.sin(z[0])])  # noqa: E731
    zs = jax.random.uniform(jax.random.PRNGKey(0), (64, 2), minval=jnp.array([0.0, 0.0]), maxval=jnp.array([6.28, 1.0]))
    r = jax.vmap(lambda z: lagrangian_residuals(form, exact, z))(zs)
    assert float(jnp.max(jnp.abs(r))) < 1e-12
    # viscous Burgers: a travelling wave, whose characteristics compress (X' != 1, X'' != 0), so the
    # chain-rule u_xx = (U'' X' - U' X'') / X'^3 is exercised
    nu = 0.05
    lag, _ = _burgers_wave(nu=nu)
    bform = LagrangianForm(lambda u, x, t: u, nu)
    zs = zs * jnp.array([0.3, 1.0]) - jnp.array([0.9, 0.0])  # x0 in [-0.9, 1], t in [0, 1]
    r = jax.vmap(lambda z: lagrangian_residuals(bform, lag, z))(zs)
    assert float(jnp.max(jnp.abs(r))) < 1e-9
    # the residual is not blind: the wrong diffusion coefficient leaves one
    wrong = LagrangianForm(lambda u, x, t: u, 2 * nu)
    r = jax.vmap(lambda z: lagrangian_residuals(wrong, lag, z))(zs)
    assert float(jnp.max(jnp.abs(r[:, 1]))) > 1e-2 and float(jnp.max(jnp.abs(r[:, 0]))) < 1e-9


def test_eulerian_prediction_inverts_the_characteristics():
    # periodic, large non-uniform displacement (several periods): X = x0 + 37 t + 0.4 t sin x0 (X' >= 0.6)
    L = 2 * math.pi
    fn = lambda z: jnp.stack([z[0] + 37 * z[1] + 0.4 * z[1] * jnp.sin(z[0]), jnp.cos(z[0]) + z[1] * jnp.sin(2 * z[0])])  # noqa: E731
    field = _Exact(fn, (0.0, 0.0), (L, 1.0), True)
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0, L, 500)
    t = rng.choice(np.linspace(0, 1, 7), 500)
    xt = np.asarray(jax.vmap(fn)(jnp.stack([x0, t], 1)))
    pts = np.stack([np.mod(xt[:, 0], L), t], 1)
    np.testing.assert_allclose(eulerian_predict(field, pts, n_characteristics=256), xt[:, 1], atol=1e-10)
    # Dirichlet: the Burgers wave on [-1, 1] (its characteristics do not leave through the boundary
    # exactly, but inside they are a monotone map, which is all the inversion needs)
    lag, u = _burgers_wave()
    field = _Exact(lag, (-1.0, 0.0), (1.0, 1.0), False)
    grid = P.Interval(-0.15, 0.75, time=(0.0, 1.0)).grid((41, 5))  # inside X([-1, 1], t) for all t
    np.testing.assert_allclose(eulerian_predict(field, grid), u(grid[:, 0], grid[:, 1]), atol=1e-10)


def test_characteristic_branch_learns_constant_velocity_and_lpinn_solves_advection_diffusion():
    # without the velocity prior the characteristic branch starts at X = x0 and must learn x0 + beta t;
    # the diffusion term exercises the chain-rule u_xx of the state residual in training
    beta, nu = 8.0, 0.1
    problem = P.get("convection", beta=beta, nu=nu)
    s = pinns.lpinn_settings(width=16, depth=2, steps=150, lbfgs_steps=250, n_points=256, prior=False)
    sol = pinns.solve_lpinn(problem, s, progress=False)
    assert sol.result.term_names == ("characteristic", "state")
    z = jax.random.uniform(jax.random.PRNGKey(3), (200, 2), maxval=jnp.array([2 * math.pi, 1.0]))
    xu = np.asarray(jax.vmap(sol.result.field)(z))
    x0, t = np.asarray(z[:, 0]), np.asarray(z[:, 1])
    # L-BFGS in float64 drives the velocity residual to ~1e-5; the displacement error is beta t times that
    assert np.max(np.abs(xu[:, 0] - (x0 + beta * t))) < 1e-3 * beta
    # 400 iterations of a 16x2 state branch: ~2e-3 along characteristics and on the Eulerian grid
    np.testing.assert_allclose(xu[:, 1], np.exp(-nu * t) * np.sin(x0), atol=1e-2)
    assert sol.result.rel_l2 < 1e-2  # against exp(-nu t) sin(x - beta t)
    assert sol.prediction.shape == (problem.eval_points()[0].shape[0],)


@pytest.mark.parametrize("name", ["reaction_diffusion", "heat2d", "poisson2d"])
def test_lpinn_rejects_problems_without_a_velocity(name):
    with pytest.raises(ValueError, match="Supported problems: burgers, burgers_teng, convection"):
        lagrangian_form(P.get(name))


def test_lpinn_rejects_non_1d_or_unbounded_problems():
    form = LagrangianForm(lambda u, x, t: u)
    with pytest.raises(ValueError, match="1D time-dependent"):
        pinns.lagrangian_problem(P.get("heat2d"), form)
    with pytest.raises(ValueError, match="nu must be"):
        LagrangianForm(lambda u, x, t: u, -1.0)
    with pytest.raises(ValueError, match="unknown LPINN settings"):
        pinns.lpinn_settings(constraints="soft")


def test_curriculum_warm_starts_and_sums_budget():
    assert pinns.ramp(50, 5) == [1.0, 13.25, 25.5, 37.75, 50.0]
    assert pinns.ramp(7, 1) == [7.0]
    # two stages of the same problem: the second must start where the first ended
    problems = pinns.curriculum_problems("convection", "beta", [2.0, 2.0], nu=0.0)
    assert [p.params["beta"] for p in problems] == [2.0, 2.0]
    settings = pinns.settings_for(problems[-1], "adam+lbfgs", width=16, depth=2, steps=401, lbfgs_steps=50)
    sol = pinns.curriculum(problems, settings, progress=False)
    assert sol.result.steps == 451  # 200 + 25 on stage one, 201 + 25 on the last
    assert sol.result.rel_l2 < 0.1  # beta = 2 is easy for a PINN
    # warm start: the second stage's first loss is far below that of a fresh network
    fresh, train_pb = pinns.make_field(
        problems[-1], width=16, depth=2, key=jax.random.fold_in(jax.random.PRNGKey(0), 1)
    )
    pts = train_pb.sample(jax.random.PRNGKey(1))
    assert sol.result.loss_history[0].sum() < 0.1 * float(train_pb.losses(fresh, pts).sum())
    with pytest.raises(ValueError, match="share the domain"):
        pinns.curriculum([P.get("convection"), P.get("burgers")], settings)


@pytest.mark.slow
@pytest.mark.parametrize("beta, target", [(50.0, 1e-2), (100.0, 5e-2)])
def test_lpinn_fixes_the_convection_failure_mode(beta, target):
    # issue 6: LPINN <= 1e-2 at beta = 50 and <= 5e-2 at beta = 100 over 3 seeds (float32 defaults);
    # the vanilla PINN of Krishnapriyan et al. fails at beta = 50 (benchmarks/failure_modes.py)
    jax.config.update("jax_enable_x64", False)
    try:
        problem = P.get("convection", beta=beta)
        errs = [
            pinns.solve_lpinn(problem, pinns.lpinn_settings(seed=s), progress=False).result.rel_l2 for s in range(3)
        ]
        assert max(errs) <= target, errs
    finally:
        jax.config.update("jax_enable_x64", True)
