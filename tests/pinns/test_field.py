"""Backbones and hard-constraint output transforms."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pdejax.problems as P
from pdejax.pinns import MLP, FourierFeatureMLP, ModifiedMLP, make_field, predict
from pdejax.problems import partial

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize("cls", [MLP, FourierFeatureMLP, ModifiedMLP])
def test_backbone_shapes_and_dtype(cls):
    net = cls(3, 2, width=16, depth=3, key=KEY)
    out = net(jnp.ones(3))
    assert out.shape == (2,) and out.dtype == jnp.float64
    assert jax.vmap(net)(jnp.ones((5, 3))).shape == (5, 2)


def test_fourier_features_are_not_trained():
    net = FourierFeatureMLP(2, 1, width=8, depth=2, n_features=4, key=KEY)
    g = jax.grad(lambda m: m(jnp.array([0.3, 0.2]))[0])(net)
    assert np.all(np.asarray(g.frequencies) == 0)
    assert np.any(np.asarray(g.mlp.layers[0].weight) != 0)


def test_modified_mlp_depth_counts_gated_layers():
    net = ModifiedMLP(2, 1, width=8, depth=4, key=KEY)
    assert len(net.hidden) == 3


@pytest.mark.parametrize("kwargs,match", [({"width": 0}, "width"), ({"activation": "relu6"}, "activation")])
def test_backbone_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(2, 1, key=KEY, **kwargs)


def test_hard_initial_and_dirichlet_are_exact():
    pb = P.get("burgers")
    field, train_pb = make_field(pb, "mlp", width=16, depth=2, key=KEY)
    assert train_pb.term_names == ("pde",)
    x = jnp.linspace(-1, 1, 9)
    u_t0 = jax.vmap(lambda s: field(jnp.array([s, 0.0])))(x)
    np.testing.assert_allclose(u_t0, -np.sin(np.pi * np.asarray(x)), atol=1e-15)
    t = jnp.linspace(0, 1, 7)
    for side in (-1.0, 1.0):
        np.testing.assert_allclose(jax.vmap(lambda s: field(jnp.array([side, s])))(t), 0, atol=1e-15)
    # and the field is not trivially the initial condition elsewhere
    assert abs(float(field(jnp.array([0.3, 0.5]))) - float(-np.sin(0.3 * np.pi))) > 1e-6


def test_hard_periodic_embedding_is_exactly_periodic_with_derivatives():
    pb = P.get("allen_cahn")
    field, train_pb = make_field(pb, "mlp", width=16, depth=2, harmonics=2, key=KEY)
    # x^2 cos(pi x) has a kink in its periodic extension, so the initial condition stays soft
    assert set(train_pb.term_names) == {"pde", "ic"} and field.initial is None
    for t in (0.2, 0.9):
        lo, hi = jnp.array([-1.0, t]), jnp.array([1.0, t])
        for k in range(3):
            np.testing.assert_allclose(partial(field, lo, *[0] * k), partial(field, hi, *[0] * k), atol=1e-12)


def test_compatible_initial_condition_is_hard_with_periodic_axes():
    field, train_pb = make_field(P.get("convection"), width=8, depth=2, key=KEY)
    assert train_pb.term_names == ("pde",) and field.initial is not None and field.periodic == (0,)


def test_soft_constraints_keep_every_term():
    pb = P.get("heat2d")
    field, train_pb = make_field(pb, constraints="soft", width=8, depth=2, key=KEY)
    assert train_pb.term_names == pb.term_names
    assert field.initial is None and field.periodic == ()


def test_partial_dirichlet_stays_soft_and_vector_output():
    pb = P.get("kovasznay")
    field, train_pb = make_field(pb, width=8, depth=2, key=KEY)
    assert train_pb.term_names == pb.term_names  # velocity-only/outlet conditions are not hard-enforced
    assert field(jnp.array([0.1, 0.2])).shape == (3,)
    assert predict(field, np.zeros((10, 2))).shape == (10, 3)


def test_predict_batches_match_vmap():
    pb = P.get("poisson2d")
    field, _ = make_field(pb, width=8, depth=2, key=KEY)
    pts = np.random.default_rng(0).uniform(size=(1000, 2))
    np.testing.assert_allclose(predict(field, pts, batch=300), jax.vmap(field)(jnp.asarray(pts)), rtol=1e-14)


def test_make_field_errors():
    pb = P.get("poisson2d")
    with pytest.raises(ValueError, match="model"):
        make_field(pb, "transformer", key=KEY)
    with pytest.raises(ValueError, match="constraints"):
        make_field(pb, constraints="medium", key=KEY)


def test_field_is_a_pytree_of_arrays_only_for_training():
    field, _ = make_field(P.get("burgers"), width=8, depth=2, key=KEY)
    params, static = eqx.partition(field, eqx.is_inexact_array)
    assert all(isinstance(x, jax.Array) for x in jax.tree_util.tree_leaves(params))


class _NoRows(eqx.Module):
    """The same field seen through a wrapper without ``derivative_rows``: forces nested JVPs."""

    f: eqx.Module

    def __call__(self, x):
        return self.f(x)


@pytest.mark.parametrize("name", ["burgers", "allen_cahn", "kovasznay", "heat2d"])
@pytest.mark.parametrize("model,activation", [("mlp", "tanh"), ("modified", "sin"), ("fourier", "gelu")])
@pytest.mark.parametrize("constraints", ["soft", "hard"])
def test_stacked_derivative_rows_equal_nested_jvps(name, model, activation, constraints):
    # The stacked pass (one matrix product per layer for u and all its derivatives) must give the nested
    # JVPs' numbers, with hard-constraint transforms, periodic embeddings and vector outputs (kovasznay).
    pb = P.get(name)
    field, _ = make_field(pb, model, width=12, depth=3, activation=activation, constraints=constraints, key=KEY)
    pts = jnp.asarray(pb.sample(jax.random.PRNGKey(3), n_points={n: 4 for n in pb.terms})[next(iter(pb.terms))])
    d = pts.shape[1]
    first = tuple(range(d))[::-1]
    second = tuple((a, a) for a in range(0, d, 2)) + ((0, d - 1),)  # pure and mixed
    rows = field.derivative_rows(pts, first, second)
    assert rows.shape == (4, 1 + d + len(second), *jnp.shape(field(pts[0])))
    for x, got in zip(pts, rows):
        want = [field(x)] + [partial(_NoRows(field), x, a) for a in first]
        want += [partial(_NoRows(field), x, a, b) for a, b in second]
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12 * (1 + float(jnp.max(jnp.abs(w)))))


@pytest.mark.parametrize("name", ["burgers", "helmholtz2d", "kovasznay"])
def test_losses_and_gradients_are_unchanged_by_the_stacked_path(name):
    pb = P.get(name)
    field, _ = make_field(pb, "modified", width=16, depth=3, key=KEY)
    pts = pb.sample(jax.random.PRNGKey(4), n_points={n: 32 for n in pb.terms})
    params, static = eqx.partition(field, eqx.is_inexact_array)
    fast = jax.value_and_grad(lambda p: jnp.sum(pb.losses(eqx.combine(p, static), pts)))(params)
    slow = jax.value_and_grad(lambda p: jnp.sum(pb.losses(_NoRows(eqx.combine(p, static)), pts)))(params)
    for a, b in zip(jax.tree_util.tree_leaves(fast), jax.tree_util.tree_leaves(slow)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_a_backbone_without_rows_falls_back_to_nested_jvps():
    pb = P.get("burgers")
    field, _ = make_field(pb, "mlp", width=8, depth=2, key=KEY)
    plain = eqx.tree_at(lambda f: f.backbone, field, _NoRows(field.backbone))
    assert plain.derivative_rows(jnp.array([[0.3, 0.4]]), (0, 1), ((0, 0),)) is None
    np.testing.assert_allclose(
        pb.losses(plain, {k: v[:8] for k, v in pb.sample(KEY).items()}),
        pb.losses(field, {k: v[:8] for k, v in pb.sample(KEY).items()}),
        rtol=1e-13,
    )


def test_a_residual_with_mixed_derivatives_matches_nested_jvps():
    # a mixed u_xt next to pure derivatives: served from one stacked pass, equal to nested JVPs
    def res(u, x):
        return partial(u, x, 0, 1) + partial(u, x, 0, 0) * u(x) - partial(u, x, 1)

    from pdejax.problems import Term

    pb = P.get("burgers")
    field, _ = make_field(pb, "modified", width=10, depth=2, key=KEY)
    pts = pb.sample(KEY, n_points={n: 16 for n in pb.terms})["pde"]
    term_pb = eqx.tree_at(lambda p: p.terms, pb, {"pde": Term(res, "interior", 16)})
    fast = term_pb.term_residuals(field, "pde", pts)
    slow = term_pb.term_residuals(_NoRows(field), "pde", pts)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)
