"""The thin adapter over Lightning Fabric: build and launch one `Fabric` from a `TrainConfig`.

Everything else (setup, backward, autocast, clip_gradients, all_reduce, barrier, rank checks) is
used straight from the returned `Fabric` object by the training loop.
"""

from __future__ import annotations

from lightning_fabric import Fabric

from genrep.errors import ConfigError
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
    try:
        fabric = Fabric(accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
                        precision=cfg.precision, strategy=strategy)
    except (ValueError, RuntimeError, TypeError) as err:
        raise ConfigError(
            f"cannot start Lightning Fabric with accelerator={cfg.accelerator!r}, devices={cfg.devices},"
            f" num_nodes={cfg.num_nodes}, precision={cfg.precision!r}, strategy={strategy!r}: {one_line(err)}"
        ) from None
    fabric.launch()
    fabric.seed_everything(cfg.seed, workers=False, verbose=False)
    return fabric
