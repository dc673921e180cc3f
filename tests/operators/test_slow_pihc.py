"""PI-HC in its paper's setting, at the README's budget (long; excluded from CI, run with `-m slow`)."""

import pytest

from pdejax import operators as O

# float32, as the CLI runs them (the float32 fixture: tests/conftest.py)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("float32")]


def test_hard_constrained_operator_beats_the_soft_loss_on_diffusion_sorption():
    """`pdejax solve diffusion_sorption_operator --method soft|hc --epochs 30` (256 / 64 states, 64 x 51
    grid, physics loss only): ~5 min on 2 cores. The reference is the method of lines, independent of both
    models; measured soft 6.0e-2, hc 3.8e-2 (README)."""
    err = {}
    for method in ("soft", "hc"):
        settings = O.operator_settings("diffusion_sorption_operator", method, epochs=30)
        err[method] = O.solve_operator("diffusion_sorption_operator", settings, progress=False).result.test_rel_l2
    assert err["hc"] < 0.8 * err["soft"] and err["hc"] < 5e-2, err
