"""Training flows by reverse KL (docs/theory.md#training-reverse-kl): objective, metrics, loop, checkpoints."""

from .checkpoint import load_flow, save_flow
from .loop import (
    NonFiniteLossError,
    TrainingDivergedError,
    TrainState,
    check_training,
    make_optimizer,
    make_train_chunk,
    make_train_step,
    train_flow,
)
from .objectives import (
    effective_sample_size,
    evaluate_flow,
    flow_metrics,
    mh_acceptance,
    reverse_kl_loss,
    reverse_kl_weights,
)

__all__ = [
    "NonFiniteLossError",
    "TrainState",
    "TrainingDivergedError",
    "check_training",
    "effective_sample_size",
    "evaluate_flow",
    "flow_metrics",
    "load_flow",
    "make_optimizer",
    "make_train_chunk",
    "make_train_step",
    "mh_acceptance",
    "reverse_kl_loss",
    "reverse_kl_weights",
    "save_flow",
    "train_flow",
]
