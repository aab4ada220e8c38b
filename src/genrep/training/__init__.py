"""Training infrastructure: an explicit loop (`Trainer`) over Lightning Fabric, atomic
checkpoints with exact resume, EMA, and metrics logging (metrics.jsonl + TensorBoard)."""

from genrep.training.checkpoint import load_checkpoint, load_weights, save_checkpoint, save_weights
from genrep.training.config import TrainConfig
from genrep.training.ema import EMA
from genrep.training.fabric import launch_fabric
from genrep.training.logger import MetricsLogger
from genrep.training.loop import Trainer, TrainResult, TrainState

__all__ = ["EMA", "MetricsLogger", "TrainConfig", "TrainResult", "TrainState", "Trainer", "launch_fabric",
           "load_checkpoint", "load_weights", "save_checkpoint", "save_weights"]
