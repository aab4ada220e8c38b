"""`TrainConfig`: the typed settings of one training run (a plain dataclass of simple types).

The generic YAML / `--set train.lr=...` machinery wraps this dataclass; `__post_init__` checks
every value and raises `ConfigError` naming the field and what it allows.
"""

from __future__ import annotations

import dataclasses
import math

from genrep.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "exponential")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
ACCELERATORS = ("cpu", "cuda", "auto")

# Fields that may change when a run is resumed: they decide how long to train and what gets
# written, never the trajectory of the parameters (see `Trainer.fit`).
RESUMABLE_FIELDS = ("steps", "log_every", "eval_every", "checkpoint_every", "sample_every", "progress")


@dataclasses.dataclass
class TrainConfig:
    """Settings of the training loop.

    steps: optimiser steps in total. batch_size: images per step and process.
    optimizer: adam | adamw | sgd (sgd uses `momentum`); betas: Adam(W) betas.
    scheduler: none | cosine (cosine decay to 0 over `steps`, stepped per step) | exponential
    (lr *= lr_gamma at the end of each epoch, like the thesis code's ExponentialLR(0.95)).
    grad_clip: max global gradient norm, or None. ema_decay: decay of the parameter EMA, or None.
    log_every / eval_every / checkpoint_every / sample_every: in steps; eval_every=0 never
    validates, checkpoint_every=0 and sample_every=0 act only at the end.
    precision: 32-true | bf16-mixed | 16-mixed (16-mixed becomes bf16-mixed on CPU).
    accelerator: cpu | cuda | auto; devices × num_nodes processes (DDP when more than one).
    init_from: start from the weights of a finished run (its folder or a .safetensors file) instead of
    a fresh initialisation, e.g. the domain-adaptation fine-tune of a joint diffusion model.
    """

    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.0
    scheduler: str = "none"
    lr_gamma: float = 0.95
    grad_clip: float | None = None
    ema_decay: float | None = None
    seed: int = 0
    log_every: int = 50
    eval_every: int = 0
    checkpoint_every: int = 500
    sample_every: int = 0
    precision: str = "32-true"
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    progress: bool = True
    init_from: str | None = None

    def __post_init__(self) -> None:
        for name, choices in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS),
                              ("precision", PRECISIONS), ("accelerator", ACCELERATORS)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"train.{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        for name in ("steps", "batch_size", "log_every", "devices", "num_nodes"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("eval_every", "checkpoint_every", "sample_every", "seed"):
            _check_int(name, getattr(self, name), minimum=0)
        _check_float("lr", self.lr, minimum=0.0, strict=True)  # lr 0 would train nothing
        for name in ("weight_decay", "momentum"):
            _check_float(name, getattr(self, name), minimum=0.0)
        if not _is_number(self.lr_gamma) or not 0.0 < self.lr_gamma <= 1.0:
            raise ConfigError(f"train.lr_gamma must lie in (0, 1], got {self.lr_gamma!r}")
        if self.grad_clip is not None:
            _check_float("grad_clip", self.grad_clip, minimum=0.0, strict=True)
        if self.ema_decay is not None and (not _is_number(self.ema_decay) or not 0.0 <= self.ema_decay < 1.0):
            raise ConfigError(f"train.ema_decay must lie in [0, 1) or be null, got {self.ema_decay!r}")
        betas = tuple(self.betas) if isinstance(self.betas, (list, tuple)) else ()
        if len(betas) != 2 or not all(_is_number(b) and 0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"train.betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        if not isinstance(self.strategy, str) or not self.strategy:
            raise ConfigError(
                f"train.strategy must be a Lightning Fabric strategy name (auto, ddp, ...), got {self.strategy!r}")
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from.strip()):
            raise ConfigError(f"train.init_from must be a run folder or a .safetensors file, got {self.init_from!r}")
        if not isinstance(self.progress, bool):
            raise ConfigError(f"train.progress must be true or false, got {self.progress!r}")


def _check_int(name: str, value, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"train.{name} must be an integer >= {minimum}, got {value!r}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_float(name: str, value, *, minimum: float, strict: bool = False) -> None:
    """A finite number >= minimum (> minimum when `strict`); NaN and ±inf are refused."""
    if not _is_number(value) or not math.isfinite(value) or value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise ConfigError(f"train.{name} must be a finite number {relation} {minimum:g}, got {value!r}")
