"""Registry of named benchmark problems: ``names()``, ``get(name, **params)``, ``register``."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from . import _benchmarks, _navier_stokes
from ._problem import Problem

_REGISTRY: dict[str, Callable[..., Problem]] = {}


def register(name: str, factory: Callable[..., Problem]) -> None:
    """Register ``factory(**params) -> Problem`` under ``name``; its keyword defaults are the parameters."""
    if not name.isidentifier():
        raise ValueError(f"problem names must be identifiers, got {name!r}")
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Names of all registered problems, sorted."""
    return sorted(_REGISTRY)


def parameters(name: str) -> dict[str, object]:
    """The parameters of problem ``name`` with their default values."""
    factory = _lookup(name)
    return {
        p.name: p.default
        for p in inspect.signature(factory).parameters.values()
        if p.default is not inspect.Parameter.empty
    }


def get(name: str, **params) -> Problem:
    """Build problem ``name`` with ``params`` overriding its defaults.

    Values may be strings (from the command line); they are converted to the type of the default.
    Raises ``ValueError`` for an unknown name or parameter (naming the valid choices) and for values
    of the wrong type or out of range.
    """
    factory = _lookup(name)
    defaults = parameters(name)
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        valid = ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "none"
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for problem {name!r}; valid: {valid}")
    converted = {k: _convert(name, k, v, defaults[k]) for k, v in params.items()}
    return factory(**converted)


def _lookup(name: str) -> Callable[..., Problem]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown problem {name!r}; choose one of: {', '.join(names())}")
    return _REGISTRY[name]


def _convert(problem: str, key: str, value, default):
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return low in ("true", "1", "yes")
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            out = float(value)
            return out
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"parameter {key} of problem {problem!r} must be of type {kind.__name__}, got {value!r}"
        ) from None


for _factory in (
    _benchmarks.allen_cahn,
    _benchmarks.allen_cahn_teng,
    _benchmarks.burgers,
    _benchmarks.burgers_teng,
    _benchmarks.convection,
    _benchmarks.diffusion_sorption,
    _benchmarks.heat2d,
    _benchmarks.helmholtz2d,
    _benchmarks.kovasznay,
    _navier_stokes.navier_stokes2d,
    _benchmarks.poisson2d,
    _benchmarks.reaction_diffusion,
):
    register(_factory.__name__, _factory)
