"""Data-parallel continual learning over the default `torch.distributed` process group.

`genrep continual METHOD --devices N` starts N processes (Lightning Fabric's launcher, torchrun or
srun). Every rank builds the same scenario, learner and RNG states and walks the same loop; what
is split is the classifier's mini-batch: rank r of W takes rows r, r+W, … of the new rows and of
the replayed rows of every batch (`rows_of_rank`), the loss is the rank's share of the full-batch
loss (sums over its rows divided by the full counts), and the gradients are summed over ranks
(`all_reduce_gradients`) before every optimiser step, so that the step is the full batch's step
and the weights stay identical on every rank. Replay is drawn identically on every rank before it
is split (the same buffer rows, the same generator samples: the global RNG streams stay in step
because dropout draws from a per-rank fork, `rank_noise`); a replay generator or autoencoder
(gr, binplay) trains replicated on every rank. Batch-norm statistics come from each rank's rows
and rank 0's running statistics are broadcast at the end of each fit (`broadcast_buffers`), as
DDP's default does. Global rank 0 alone writes files and logs.

Differences from 1 process, by construction: batch-norm sees half batches, dropout masks differ,
and sums are added in another order; the accuracies match to within run-to-run noise, not bit for
bit (benchmarks/RESULTS.md). Generator learners (multiband and its baselines) train their VAEs with
their own loops, which are not sharded: they run in one process and refuse --devices > 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn


def check_data_parallel(method: str, processes: int) -> None:
    """Refuse `--devices` > 1 for a learner that cannot train data parallel, saying why (ConfigError)."""
    from genrep.continual.registry import get_learner
    from genrep.errors import ConfigError

    if get_learner(method).kind != "classifier":
        raise ConfigError(f"{method} cannot run on {processes} processes: it trains its VAEs with its own loops, which "
                          "are not split over processes (only the classifier methods are data parallel); run it with "
                          "--devices 1, or run several seeds in parallel processes with --seeds 0, / --seeds 1,")


def world() -> tuple[int, int]:
    """(global rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes files and logs (global rank 0, or the only process)."""
    return world()[0] == 0


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def rows_of_rank(start: int, stop: int) -> torch.Tensor:
    """Positions start + r, start + r + W, … < stop: this rank's rows of the block [start, stop)."""
    rank, size = world()
    return torch.arange(start + rank, max(stop, start + rank), size)


def all_reduce_gradients(model: nn.Module) -> None:
    """Sum every parameter's gradient over the ranks (in place; parameters without a gradient, the
    same on every rank, are skipped). The per-rank losses are shares of the full-batch loss, so the
    sum is the full batch's gradient."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def sum_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """`value` summed over the ranks (a new tensor)."""
    total = value.detach().clone()
    if dist.get_backend() == "nccl" and not total.is_cuda:
        total = total.cuda()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.to(value.device)


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (batch-norm running statistics, counters) copied to every rank."""
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


@contextlib.contextmanager
def rank_noise(base: int, step: int) -> Iterator[None]:
    """The global RNG forked and seeded by (base, rank, step) for the block: per-rank randomness
    (dropout masks) that leaves the shared streams (replay draws, generator noise) in step."""
    rank, _ = world()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed((base + 1_000_003 * (rank + 1) + step) % (1 << 63))
        yield
