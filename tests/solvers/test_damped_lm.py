"""DampedLevenbergMarquardt: a Gauss–Newton start that keeps its safeguard, and the float32 stall test."""

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest
import scipy.optimize

from pdejax.solvers import DampedLevenbergMarquardt

_T = np.linspace(0.0, 4.0, 30)
_DATA = 3.0 * np.exp(-1.3 * _T) + 0.5 + 0.01 * np.sin(7 * _T)


def _exp_rows(y, _):
    return y[0] * jnp.exp(-y[1] * jnp.asarray(_T, y.dtype)) + y[2] - jnp.asarray(_DATA, y.dtype)


def _ill_scaled_matrices():
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(200, 16)))
    v, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    return (u * np.logspace(0, -4, 16)) @ v.T, rng.normal(size=200) * 0.1


def _ill_scaled(dtype):
    """Rows like a learned basis's: singular values from 1 down to 1e-4 (``J^T J`` down to 1e-8), mildly
    nonlinear (a quadratic term, as the sorption term is), 200 rows, 16 unknowns."""
    a, b = _ill_scaled_matrices()

    def rows(w, _):
        z = jnp.asarray(a, dtype) @ w
        return z + 0.1 * z**2 - jnp.asarray(b, dtype)

    return rows


def _ill_scaled_min():
    """The ill-scaled rows' minimiser, float64: MINPACK's, then exact Newton steps in numpy (analytic
    gradient and Hessian). MINPACK alone stops where the weakest direction's gradient is still ~1e-9: 0.028
    from the minimum on some CPUs (1.2e-4 of |w|), more than the solvers under test leave."""
    a, b = _ill_scaled_matrices()
    w = _scipy_min(_ill_scaled(jnp.float64), np.zeros(16))
    for _ in range(4):  # quadratic convergence: the step is at rounding level after two
        z = a @ w
        r = z + 0.1 * z**2 - b
        jac = (1 + 0.2 * z)[:, None] * a
        w = w - np.linalg.solve(jac.T @ jac + a.T @ (0.2 * r[:, None] * a), jac.T @ r)
    return w


def _scipy_min(rows, y0):
    """The independent reference: MINPACK's Levenberg–Marquardt through scipy, float64, tight tolerances."""
    f = lambda y: np.asarray(rows(jnp.asarray(y), None))  # noqa: E731
    return scipy.optimize.least_squares(f, y0, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15).x


def test_gauss_newton_start_survives_a_run_of_rejected_steps():
    # from this start the second Gauss-Newton step raises the loss 47x and is rejected 16 times in a row
    # while the damping grows; the stall test must not mistake that for convergence
    with jax.enable_x64(True):
        y0 = np.array([10.0, 5.0, -3.0])
        ref = _scipy_min(_exp_rows, y0)
        sol = optx.least_squares(
            _exp_rows, DampedLevenbergMarquardt(1e-12, 1e-12, damping=1e-10), jnp.asarray(y0), max_steps=200,
            throw=False,
        )  # fmt: skip
        assert sol.result == optx.RESULTS.successful
        assert int(sol.stats["num_steps"]) > 16
        np.testing.assert_allclose(np.asarray(sol.value), ref, rtol=1e-9)


def test_small_first_damping_takes_fewer_iterations_to_the_same_minimum():
    with jax.enable_x64(True):
        rows = _ill_scaled(jnp.float64)
        ref = _ill_scaled_min()
        best = float(jnp.sum(rows(jnp.asarray(ref), None) ** 2))
        steps = {}
        for name, solver in [
            ("optimistix", optx.LevenbergMarquardt(1e-8, 1e-8)),
            ("damped", DampedLevenbergMarquardt(1e-8, 1e-8, damping=1e-10)),
        ]:
            sol = optx.least_squares(rows, solver, jnp.zeros(16), max_steps=500, throw=False)
            assert sol.result == optx.RESULTS.successful, name
            np.testing.assert_allclose(float(jnp.sum(rows(sol.value, None) ** 2)), best, rtol=1e-10)
            # the step test (rtol 1e-8) stops a linearly converging tail within ~1e-8 / (1 - rate) of |w|;
            # 1e-6 allows rates up to 0.99 (measured: 1.2e-9 of |w| for optimistix, 5e-12 damped)
            np.testing.assert_allclose(np.asarray(sol.value), ref, atol=1e-6 * np.abs(ref).max())
            steps[name] = int(sol.stats["num_steps"])
        # damping 1 needs ~log(1e8) / log(3.5) good steps before it resolves the weakest directions
        # (measured: 40 against 7)
        assert steps["damped"] * 2 <= steps["optimistix"], steps


def test_float32_stall_test_stops_at_the_minimum_and_is_all_that_differs_from_optimistix():
    with jax.enable_x64(True):
        best = float(jnp.sum(_ill_scaled(jnp.float64)(jnp.asarray(_ill_scaled_min()), None) ** 2))
    with jax.enable_x64(False):
        rows = _ill_scaled(jnp.float32)
        w0 = jnp.zeros(16, jnp.float32)

        def solve(solver):
            return optx.least_squares(rows, solver, w0, max_steps=200, throw=False)

        plain = solve(optx.LevenbergMarquardt(1e-10, 1e-10))
        # damping 1 without the stall test: optimistix's iterates, bit for bit
        same = solve(DampedLevenbergMarquardt(1e-10, 1e-10, patience=10**6))
        np.testing.assert_array_equal(np.asarray(same.value), np.asarray(plain.value))
        assert int(same.stats["num_steps"]) == int(plain.stats["num_steps"])
        # with it: the iterations at the minimum whose loss changes by rounding only are cut (39 -> 21)
        sol = solve(DampedLevenbergMarquardt(1e-10, 1e-10))
        lowest = float(jnp.sum(rows(sol.value, None) ** 2))
    assert sol.result == optx.RESULTS.successful
    assert int(sol.stats["num_steps"]) <= 0.75 * int(plain.stats["num_steps"]), (sol.stats, plain.stats)
    # float32 sums of 200 squares: the minimum's loss to ~1e-6
    assert abs(lowest - best) <= 1e-5 * best


@pytest.mark.parametrize("kw", [dict(damping=0.0), dict(damping=-1.0), dict(patience=0), dict(ftol=-1.0)])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError, match="damping > 0"):
        DampedLevenbergMarquardt(1e-6, 1e-6, **kw)


def test_float64_solve_whose_step_test_cannot_be_met_stops_once_its_steps_no_longer_move():
    # rtol = atol = 0: optimistix's step test is never met, and in float64 the loss-based stall test is off
    # (ftol 0). The solve must still stop once its steps leave the iterate unchanged. Before, it ran to
    # max_steps here: optimistix accepts such zero steps (the loss does not rise), and an accepted step reset
    # the idle count. (The other way it never stopped, seen on an AVX2 CPU at XLA optimisation level 1: rejected
    # zero steps whose recomputed loss differed in its last bit from optimistix's; tests/operators/test_pihc.py)
    with jax.enable_x64(True):
        rows = _ill_scaled(jnp.float64)
        ref = _ill_scaled_min()
        sol = optx.least_squares(
            rows, DampedLevenbergMarquardt(0.0, 0.0, damping=1e-10), jnp.zeros(16), max_steps=1000, throw=False
        )
        assert sol.result == optx.RESULTS.successful
        # converged in ~12 steps (test above); then the steps shrink until they no longer move the iterate:
        # 39 steps in all, measured
        assert int(sol.stats["num_steps"]) < 200, sol.stats
        np.testing.assert_allclose(np.asarray(sol.value), ref, atol=1e-6 * np.abs(ref).max())
