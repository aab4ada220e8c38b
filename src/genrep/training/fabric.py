"""The thin adapter over Lightning Fabric: build and launch one `Fabric` from a `TrainConfig`.

Everything else (setup, backward, autocast, clip_gradients, all_reduce, barrier, rank checks) is
used straight from the returned `Fabric` object by the training loop.
"""

from __future__ import annotations

import logging
import os
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
    check_device_count(cfg.accelerator, cfg.devices)
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


def launch_processes(*, accelerator: str = "cpu", devices: int = 1, num_nodes: int = 1) -> Fabric:
    """A launched `Fabric` for the commands that only need ranks, a device and collectives (sharded
    sampling, distributed evaluation): `devices × num_nodes` processes, the "ddp" strategy when more
    than one (gloo on CPU, NCCL on GPU), 32-bit precision; started like `launch_fabric` (a plain
    `python` command re-executes itself per extra local rank; torchrun and SLURM are used as they are)."""
    from genrep.training.config import TrainConfig

    for name, value in (("--devices", devices), ("--num-nodes", num_nodes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    return launch_fabric(TrainConfig(accelerator=accelerator, devices=devices, num_nodes=num_nodes, progress=False))


def check_device_count(accelerator: str, devices: int) -> None:
    """Refuse more processes per node than the accelerator has: CUDA devices, or CPU cores on the CPU
    (more processes than cores only slow each other down). ConfigError names both counts."""
    if _runs_on_cpu(accelerator):
        cores = os.cpu_count() or 1
        if devices > cores:
            raise ConfigError(f"--devices {devices} exceeds the {cores} CPU cores of this machine; pass --devices"
                              f" {cores} or fewer (or --accelerator cuda on a GPU machine)")
        return
    if accelerator in ("cuda", "auto"):
        available = torch.cuda.device_count()
        if available == 0 and accelerator == "cuda":
            raise ConfigError("--accelerator cuda: this machine has no CUDA device; use --accelerator cpu")
        if devices > available:
            raise ConfigError(f"--devices {devices} exceeds the {available} CUDA device(s) of this machine; pass"
                              f" --devices {max(available, 1)} or fewer")


def launcher_devices() -> tuple[int, int] | None:
    """(processes per node, nodes) set by an outer launcher, None without one: torchrun
    (LOCAL_WORLD_SIZE, WORLD_SIZE) or a SLURM step started by `srun` (SLURM_NTASKS_PER_NODE or
    SLURM_NTASKS / SLURM_NNODES). The CLI uses it when --devices / --num-nodes are not given, so the
    same command runs unchanged under `torchrun --nproc_per_node N` and `srun`."""
    env = os.environ
    if "LOCAL_WORLD_SIZE" in env and "WORLD_SIZE" in env:
        local, world = int(env["LOCAL_WORLD_SIZE"]), int(env["WORLD_SIZE"])
        return local, max(world // max(local, 1), 1)
    if "SLURM_STEP_ID" in env and "SLURM_NTASKS" in env:
        nodes = int(env.get("SLURM_NNODES", "1"))
        per_node = env.get("SLURM_NTASKS_PER_NODE", "").split("(")[0]
        local = int(per_node) if per_node.isdigit() else max(int(env["SLURM_NTASKS"]) // nodes, 1)
        return local, nodes
    return None


def cli_devices(devices: int | None, num_nodes: int | None) -> tuple[int, int]:
    """The (devices, num_nodes) a command runs with: the flags where given, else the outer
    launcher's (`launcher_devices`), else one process."""
    found = launcher_devices() or (1, 1)
    return (found[0] if devices is None else devices), (found[1] if num_nodes is None else num_nodes)
