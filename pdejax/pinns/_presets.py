"""Default PINN settings per benchmark problem (a good result in about a minute on a laptop CPU)."""

from __future__ import annotations

# Keys: model, width, depth, activation, constraints, steps, lbfgs_steps, learning_rate, decay_rate,
# decay_steps, sampler, resample_every, n_points. Anything absent falls back to GENERIC.
GENERIC: dict = {
    "model": "mlp",
    "width": 64,
    "depth": 4,
    "activation": "tanh",
    "constraints": "hard",
    "steps": 5000,
    "lbfgs_steps": 500,
    "learning_rate": 1e-3,
    "decay_rate": 0.9,
    "decay_steps": 1000,
    "sampler": "uniform",
    "resample_every": 0,
    "n_points": None,
}

PRESETS: dict[str, dict] = {
    "burgers": {"width": 32, "depth": 4, "steps": 5000, "lbfgs_steps": 1000},
}


def preset(problem_name: str) -> dict:
    """The default PINN settings for ``problem_name`` (generic ones for problems without a preset)."""
    return {**GENERIC, **PRESETS.get(problem_name, {})}
