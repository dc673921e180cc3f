"""Physics-informed neural networks: neural fields, hard constraints, loss terms and the trainer."""

from ._field import CONSTRAINTS, Field, make_field, predict
from ._models import ACTIVATIONS, MLP, MODELS, Dense, FourierFeatureMLP, ModifiedMLP, get_activation
from ._multiloss import (
    LENGTHS,
    MultiLossTransformation,
    config,
    config_direction,
    config_direction_two,
    lra,
    mconfig,
    multiadam,
    pcgrad,
    pcgrad_direction,
)
from ._presets import GENERIC, PRESETS, preset
from ._solve import FIRST_PHASE, OPTIMIZERS, Solution, make_optimizer, settings_for, solve
from ._teng import INTEGRATORS, TENG_PRESETS, TengConfig, TengResult, spatial_rhs, teng, teng_config_for, teng_field
from ._trainer import TrainConfig, Trainer, TrainingDiverged, TrainResult, TrainState, relative_l2, train

__all__ = [
    "ACTIVATIONS",
    "FIRST_PHASE",
    "LENGTHS",
    "MultiLossTransformation",
    "config",
    "config_direction",
    "config_direction_two",
    "lra",
    "make_optimizer",
    "mconfig",
    "multiadam",
    "pcgrad",
    "pcgrad_direction",
    "GENERIC",
    "OPTIMIZERS",
    "PRESETS",
    "Solution",
    "preset",
    "settings_for",
    "solve",
    "CONSTRAINTS",
    "MLP",
    "MODELS",
    "Dense",
    "Field",
    "FourierFeatureMLP",
    "ModifiedMLP",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "Trainer",
    "TrainingDiverged",
    "get_activation",
    "make_field",
    "predict",
    "relative_l2",
    "train",
    "INTEGRATORS",
    "TengConfig",
    "TengResult",
    "spatial_rhs",
    "teng",
    "teng_field",
    "teng_config_for",
    "TENG_PRESETS",
]
