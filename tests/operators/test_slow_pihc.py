"""PI-HC in its paper's setting, at the README's budget (long; excluded from CI, run with `-m slow`)."""

import pytest

from pdejax import operators as O

# float32, as the CLI runs them (the float32 fixture: tests/conftest.py)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("float32")]


def test_hard_constrained_operator_beats_the_soft_loss_on_diffusion_sorption():
    """`pdejax solve diffusion_sorption_operator --method soft|hc --epochs 30` (256 / 64 states, 64 x 51
    grid, physics loss only): ~5 min on 2 cores. The reference is the method of lines, independent of both
    models; measured with the dataset's tuned defaults (seed 0 of the README's compare) soft 6.7e-2, hc 3.2e-2."""
    err = {}
    for method in ("soft", "hc"):
        settings = O.operator_settings("diffusion_sorption_operator", method, epochs=30)
        err[method] = O.solve_operator("diffusion_sorption_operator", settings, progress=False).result.test_rel_l2
    assert err["hc"] < 0.8 * err["soft"] and err["hc"] < 5e-2, err


def test_navier_stokes_operators_learn_beyond_viscous_decay():
    """`pdejax solve navier_stokes_operator --method soft|hc-moe --epochs 40` (128 / 32 states, 32 x 32 x 11
    grid, physics loss only): ~12 min on 2 cores. The reference is the pseudo-spectral solver; the initial
    state's viscous decay alone is 0.27 from it, the state held still 0.49. Measured (seed 0) soft 9.8e-2,
    hc-moe 0.16 (README); the experts' solves all converge."""
    err = {}
    for method in ("soft", "hc-moe"):
        settings = O.operator_settings("navier_stokes_operator", method, epochs=40)
        sol = O.solve_operator("navier_stokes_operator", settings, progress=False)
        err[method] = sol.result.test_rel_l2
        if sol.constraint_solves is not None:
            assert sol.constraint_solves["converged_fraction"] == 1.0
    assert max(err.values()) < 0.2, err
