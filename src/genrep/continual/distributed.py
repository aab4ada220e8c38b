"""Data-parallel continual learning over the default `torch.distributed` process group.

`genrep continual METHOD --devices N` starts N processes (Lightning Fabric's launcher, torchrun or
srun). Every rank builds the same scenario, learner and RNG states and walks the same loop; what
is split is each mini-batch: rank r of W takes rows r, r+W, … of the new rows and of the replayed
rows (`rows_of_rank`), its loss is its share of the full batch's loss (sums over its rows divided
by the full counts; for summed losses the plain sum), and the gradients are summed over the ranks
(`all_reduce_gradients`) before every optimiser step, so that each step is the full batch's step
and the weights stay identical on every rank. This covers the classifier of every classifier
method (`fit_classifier`) and the VAEs of the generator methods (`VAELearner.train_vae`, Multiband's
global iteration); a penalty (EWC, SI) is added after the sum, once. Replay is drawn identically on
every rank before it is split (the same buffer rows, the same generator samples: the global RNG
streams stay in step because dropout and the VAEs' reparameterisation / Gumbel noise draw from a
per-rank fork, `rank_noise`); the replay generator of gr and the autoencoder of binplay train
replicated on every rank. Batch-norm statistics come from each rank's rows and rank 0's running
statistics are broadcast at the end of each fit (`broadcast_buffers`), as DDP's default does.
Global rank 0 alone writes files and logs; every rank evaluates (the same numbers).

Differences from 1 process, by construction: batch norm sees part batches, the noise (dropout,
reparameterisation, Gumbel) is drawn elsewhere, and sums are added in another order; the results
match to within run-to-run noise, not bit for bit (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn


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
