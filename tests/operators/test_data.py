"""Operator datasets: Burgers against the Cole-Hopf solution, Darcy residuals, file layout and its errors."""

import jax
import numpy as np
import pytest

from pdejax import operators as O


def _cole_hopf(u0: np.ndarray, nu: float, t: float, fine: int = 4096) -> np.ndarray:
    """Periodic viscous Burgers on [0, 1) by the Cole-Hopf transform, in float64 NumPy: u = -2 nu phi_x / phi
    with phi_t = nu phi_xx, phi0 = exp(-int u0 / (2 nu)); heat flow is exact in Fourier space."""
    n = u0.size
    uh = np.fft.rfft(u0)
    big = np.zeros(fine // 2 + 1, complex)
    big[: uh.size] = uh * fine / n  # spectral interpolation of the band-limited u0 to a fine grid
    k = 2 * np.pi * np.fft.rfftfreq(fine, d=1.0 / fine)
    with np.errstate(divide="ignore", invalid="ignore"):
        ih = np.where(k == 0, 0.0, big / (1j * k))  # zero-mean u0: its primitive is periodic
    phi0 = np.exp(-np.fft.irfft(ih, fine) / (2 * nu))
    ph = np.fft.rfft(phi0) * np.exp(-nu * k**2 * t)
    u = -2 * nu * np.fft.irfft(1j * k * ph, fine) / np.fft.irfft(ph, fine)
    return u[:: fine // n]


def test_burgers_pairs_match_the_cole_hopf_solution():
    with jax.enable_x64(True):
        a, u = O.burgers1d_pairs(jax.random.PRNGKey(3), 3, resolution=128)
    a, u = np.asarray(a), np.asarray(u)
    assert a.shape == u.shape == (3, 1, 128) and a.dtype == np.float64
    assert 0.5 < np.abs(a).max() < 10  # the N(0, 625 (-Lap + 25)^-2) initial fields are O(1)
    for i in range(3):
        ref = _cole_hopf(a[i, 0], 0.1, 1.0)
        # ETDRK4 with dt = 1e-3 on a diffusion-dominated flow: error far below the data's float32 storage
        assert np.linalg.norm(u[i, 0] - ref) <= 1e-7 * np.linalg.norm(ref), np.abs(u[i, 0] - ref).max()


def test_darcy_pairs_are_piecewise_constant_and_zero_the_discrete_residual():
    with jax.enable_x64(True):
        a, u = O.darcy_pairs(jax.random.PRNGKey(0), 4, resolution=33)
        r = np.asarray(jax.vmap(O.darcy_physics)(a, u))
        # a wrong solution (u scaled by 1.01): the residual is 1% of the source, so the loss is 1e-2
        wrong = np.asarray(jax.vmap(O.darcy_physics)(a, 1.01 * u))
    a, u = np.asarray(a), np.asarray(u)
    assert set(np.unique(a)) == {3.0, 12.0} and 0.2 < np.mean(a == 12.0) < 0.8
    assert np.all(u[:, 0, 0, :] == 0) and np.all(u[:, 0, :, -1] == 0) and u.min() >= 0  # maximum principle
    assert r.max() < 1e-7  # CG tolerance 1e-8 relative to |f| = 1
    np.testing.assert_allclose(wrong, 1e-2, rtol=1e-5)
    # not periodic: the field is cropped from a twice larger periodic draw
    assert np.mean(a[:, 0, 0, :] != a[:, 0, -1, :]) > 0.1


def test_generate_is_reproducible_and_the_file_round_trips(tmp_path):
    d1 = O.generate("darcy", 5, resolution=17, seed=1, batch=3)
    d2 = O.generate("darcy", 5, resolution=17, seed=1, batch=3)
    assert d1.inputs.shape == (5, 1, 17, 17) and d1.coords.shape == (17, 17, 2) and d1.inputs.dtype == np.float32
    np.testing.assert_array_equal(d1.outputs, d2.outputs)
    O.save_dataset(tmp_path / "d.npz", d1)
    back = O.load_dataset(tmp_path / "d.npz")
    np.testing.assert_array_equal(back.outputs, d1.outputs)
    assert back.name == "darcy" and back.params["resolution"] == 17
    train, test = back.split(3, 2)
    assert len(train) == 3 and len(test) == 2
    assert back.downsample(2).grid == (9, 9)
    with pytest.raises(ValueError, match="unknown dataset 'heat'"):
        O.generate("heat", 2)


def test_wrong_layouts_are_named(tmp_path):
    good = dict(
        inputs=np.zeros((4, 1, 8), np.float32),
        outputs=np.zeros((4, 1, 8), np.float32),
        coords=np.zeros((8, 1)),
        name=np.asarray("burgers1d"),
        params=np.asarray("{}"),
    )
    cases = {
        "missing": ({k: v for k, v in good.items() if k != "coords"}, "missing coords"),
        "shape": (
            {**good, "outputs": np.zeros((4, 8), np.float32)},
            r"outputs must have shape \(n, channels, \*grid\)",
        ),
        "count": ({**good, "outputs": np.zeros((3, 1, 8), np.float32)}, "4 inputs but 3 outputs"),
        "coords": ({**good, "coords": np.zeros((8, 2))}, "should end in d = 1"),
        "nan": ({**good, "inputs": np.full((4, 1, 8), np.nan, np.float32)}, "inputs contains NaN"),
    }
    for name, (arrays, msg) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(O.DatasetError, match=msg):
            O.load_dataset(tmp_path / f"{name}.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(O.DatasetError, match="not a readable NPZ dataset"):
        O.load_dataset(tmp_path / "junk.npz")


def test_pdebench_files_are_read_and_checked(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5", "w") as f:
        f["nu"] = np.ones((3, 8, 8))
        f["tensor"] = np.ones((3, 1, 8, 8))
        f["x-coordinate"] = np.linspace(0, 1, 8)
        f["y-coordinate"] = np.linspace(0, 1, 8)
    d = O.load_dataset(tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5")
    assert d.name == "darcy" and d.inputs.shape == (3, 1, 8, 8) and d.coords.shape == (8, 8, 2)
    with h5py.File(tmp_path / "1D_Burgers_Sols_Nu0.1.hdf5", "w") as f:
        f["tensor"] = np.arange(2 * 5 * 16, dtype=float).reshape(2, 5, 16)
        f["x-coordinate"] = np.linspace(0, 1, 16, endpoint=False)
    d = O.load_dataset(tmp_path / "1D_Burgers_Sols_Nu0.1.hdf5")
    np.testing.assert_array_equal(d.outputs[:, 0], np.arange(160).reshape(2, 5, 16)[:, -1])
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["tensor"] = np.ones((2, 5, 16))
        f["x-coordinate"] = np.ones(12)
    with pytest.raises(O.DatasetError, match=r"expects tensor \(n, t >= 2, 12\)"):
        O.load_dataset(tmp_path / "bad.h5")
