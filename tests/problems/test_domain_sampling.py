"""Domains and collocation samplers."""

import jax
import numpy as np
import pytest
from scipy.stats import qmc

from pdejax.problems import Box, Domain, Interval, Rectangle, sample, sobol, unit_points


def test_domain_properties_and_grid():
    dom = Rectangle((0.0, -1.0), (2.0, 1.0), time=(0.0, 3.0))
    assert dom.spatial_dim == 2 and dom.dim == 3 and dom.has_time
    np.testing.assert_array_equal(dom.lower, [0, -1, 0])
    np.testing.assert_array_equal(dom.lengths, [2, 2, 3])
    g = dom.grid((3, 4, 5))
    assert g.shape == (60, 3)
    assert g[:, 0].min() == 0 and g[:, 0].max() == 2 and g[:, 2].max() == 3
    assert bool(dom.contains(g).all())
    assert not bool(dom.contains(np.array([[2.5, 0.0, 1.0]]))[0])
    assert Box((0, 0, 0), (1, 1, 1)).dim == 3 and Interval(0, 1).dim == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: Interval(1.0, 0.0),
        lambda: Interval(0.0, float("nan")),
        lambda: Domain((0.0,), (1.0, 2.0)),
        lambda: Interval(0, 1, time=(1.0, 1.0)),
        lambda: Rectangle((0, 0, 0), (1, 1, 1)),
    ],
)
def test_domain_rejects_bad_bounds(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("dim", [1, 2, 3, 5, 12])
def test_sobol_matches_scipy(dim):
    np.testing.assert_array_equal(sobol(512, dim), qmc.Sobol(dim, scramble=False).random(512))


def test_sobol_rejects_too_many_dims():
    with pytest.raises(ValueError, match="dim"):
        sobol(8, 13)


@pytest.mark.parametrize("method", ["uniform", "sobol", "lhs"])
def test_unit_points_are_uniform_and_keyed(method):
    key = jax.random.PRNGKey(3)
    u = np.asarray(unit_points(method, key, 1024, 3))
    assert u.shape == (1024, 3) and u.min() >= 0 and u.max() < 1
    # mean and variance of U(0,1) within 5 standard errors of i.i.d. sampling (QMC/LHS are tighter)
    assert np.all(np.abs(u.mean(0) - 0.5) < 5 * np.sqrt(1 / 12 / 1024))
    assert np.all(np.abs(u.var(0) - 1 / 12) < 0.01)
    np.testing.assert_array_equal(u, unit_points(method, key, 1024, 3))
    assert not np.array_equal(u, unit_points(method, jax.random.PRNGKey(4), 1024, 3))


def test_lhs_hits_every_stratum_once():
    u = np.asarray(unit_points("lhs", jax.random.PRNGKey(0), 200, 4))
    for j in range(4):
        assert sorted(np.floor(u[:, j] * 200).astype(int)) == list(range(200))


def test_sobol_shift_keeps_net_property():
    # a digitally shifted Sobol set of 2^m points still has exactly one point in each dyadic cell
    u = np.asarray(unit_points("sobol", jax.random.PRNGKey(1), 256, 2))
    cells = np.floor(u * 16).astype(int)
    counts = np.zeros((16, 16), int)
    np.add.at(counts, (cells[:, 0], cells[:, 1]), 1)
    assert np.all(counts == 1)


@pytest.mark.parametrize("method", ["uniform", "sobol", "lhs"])
def test_regions(method):
    dom = Rectangle((0.0, 0.0), (2.0, 1.0), time=(0.5, 1.5))
    key = jax.random.PRNGKey(0)
    inner = np.asarray(sample(dom, "interior", key, 500, method))
    assert inner.shape == (500, 3) and bool(dom.contains(inner).all())
    init = np.asarray(sample(dom, "initial", key, 100, method))
    assert np.all(init[:, 2] == 0.5) and bool(dom.contains(init).all())
    face = np.asarray(sample(dom, "face:1:hi", key, 100, method))
    assert np.all(face[:, 1] == 1.0) and bool(dom.contains(face).all())
    bnd = np.asarray(sample(dom, "boundary", key, 4000, method))
    assert bool(dom.contains(bnd).all())
    on_x = np.isin(bnd[:, 0], [0.0, 2.0])
    on_y = np.isin(bnd[:, 1], [0.0, 1.0])
    assert np.all(on_x | on_y)
    # faces are chosen in proportion to their length: x-faces have length 1, y-faces length 2
    assert abs(on_x.mean() - 1 / 3) < 0.04


def test_boundary_of_interval_is_its_endpoints():
    dom = Interval(-1.0, 1.0, time=(0.0, 1.0))
    pts = np.asarray(sample(dom, "boundary", jax.random.PRNGKey(2), 1000))
    assert set(np.unique(pts[:, 0])) == {-1.0, 1.0}
    assert abs((pts[:, 0] == 1.0).mean() - 0.5) < 0.06
    assert pts[:, 1].min() >= 0 and pts[:, 1].max() <= 1


@pytest.mark.parametrize("region", ["inside", "face:2:lo", "face:0:mid"])
def test_bad_region(region):
    with pytest.raises(ValueError, match="region"):
        sample(Interval(0, 1, time=(0, 1)), region, jax.random.PRNGKey(0), 10)


def test_initial_needs_time_and_bad_method():
    with pytest.raises(ValueError, match="time"):
        sample(Interval(0, 1), "initial", jax.random.PRNGKey(0), 10)
    with pytest.raises(ValueError, match="method"):
        sample(Interval(0, 1), "interior", jax.random.PRNGKey(0), 10, "halton")
