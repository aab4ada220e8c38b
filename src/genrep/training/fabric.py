"""The thin adapter over Lightning Fabric: build and launch one `Fabric` from a `TrainConfig`.

Everything else (setup, backward, autocast, clip_gradients, all_reduce, barrier, rank checks) is
used straight from the returned `Fabric` object by the training loop.
"""

from __future__ import annotations

import logging
import warnings

import torch
from lightning_fabric import Fabric
from lightning_fabric.utilities.rank_zero import rank_zero_only

from genrep.errors import ConfigError, GenrepWarning
from genrep.training.checkpoint import one_line
from genrep.training.config import TrainConfig


def launch_fabric(cfg: TrainConfig) -> Fabric:
    """Create `Fabric(accelerator, devices, num_nodes, precision, strategy)` from `cfg`, launch it and
    seed every RNG (python, numpy, torch) with `cfg.seed` on every rank.

    With more than one process in total and `strategy="auto"` the strategy is "ddp" (gloo on CPU,
    NCCL on GPU). Under the "ddp" strategy started from a plain `python` command, `launch()`
    re-executes that command once per extra local rank; SLURM and `torchrun` environments are
    detected by Fabric and used unchanged. Create the run folder on global rank 0 only, after
    this call, then `fabric.barrier()`.
    """
    strategy = cfg.strategy
    if strategy == "auto" and cfg.devices * cfg.num_nodes > 1:
        strategy = "ddp"
    precision = cfg.precision
    if precision == "16-mixed" and _runs_on_cpu(cfg.accelerator):
        # Fabric would switch too, printing two lines of its own; say it once, in genrep's words
        if rank_zero_only.rank == 0:
            warnings.warn("precision 16-mixed is not supported on CPU; using bf16-mixed", GenrepWarning,
                          stacklevel=2)
        precision = "bf16-mixed"
    fabric_log = logging.getLogger("lightning_fabric.utilities.rank_zero")  # "Using bfloat16 AMP" info lines
    level = fabric_log.level
    fabric_log.setLevel(logging.WARNING)
    try:
        fabric = Fabric(accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
                        precision=precision, strategy=strategy)
    except (ValueError, RuntimeError, TypeError) as err:
        raise ConfigError(
            f"cannot start Lightning Fabric with accelerator={cfg.accelerator!r}, devices={cfg.devices},"
            f" num_nodes={cfg.num_nodes}, precision={cfg.precision!r}, strategy={strategy!r}: {one_line(err)}"
        ) from None
    finally:
        fabric_log.setLevel(level)
    fabric.launch()
    fabric.seed_everything(cfg.seed, workers=False, verbose=False)
    return fabric


def _runs_on_cpu(accelerator: str) -> bool:
    """Whether Fabric's `accelerator` ("cpu" | "cuda" | "auto") means the CPU on this machine."""
    if accelerator == "cpu":
        return True
    mps = getattr(torch.backends, "mps", None)
    return accelerator == "auto" and not torch.cuda.is_available() and not (mps is not None and mps.is_available())
