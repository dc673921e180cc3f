"""Neural operators (FNO, DeepONet, MultiONet): models, datasets from pdejax.solvers, and their training."""

from ._data import (
    DATASETS,
    LAYOUT,
    PHYSICS,
    DatasetError,
    OperatorDataset,
    burgers1d_pairs,
    darcy_pairs,
    darcy_physics,
    darcy_residual,
    generate,
    load_dataset,
    read_pdebench,
    save_dataset,
)
from ._fno import FNO, Pointwise, SpectralConv
from ._onet import DeepONet, MultiONet
from ._train import (
    Normalised,
    OperatorConfig,
    OperatorResult,
    OperatorTrainingDiverged,
    channel_stats,
    predict_batched,
    relative_l2_per_sample,
    train_operator,
)

__all__ = [
    "DATASETS",
    "LAYOUT",
    "PHYSICS",
    "DatasetError",
    "DeepONet",
    "FNO",
    "MultiONet",
    "Normalised",
    "OperatorConfig",
    "OperatorDataset",
    "OperatorResult",
    "OperatorTrainingDiverged",
    "Pointwise",
    "SpectralConv",
    "burgers1d_pairs",
    "channel_stats",
    "darcy_pairs",
    "darcy_physics",
    "darcy_residual",
    "generate",
    "load_dataset",
    "predict_batched",
    "read_pdebench",
    "relative_l2_per_sample",
    "save_dataset",
    "train_operator",
]
