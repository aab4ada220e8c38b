"""Trainer overhead against a bare PyTorch loop (issue 2).

Both train the same MLP VAE (784-400-20 / 20-400-784, Bernoulli likelihood) on the same batches
of 28×28 images with Adam, for --steps steps. The Trainer runs with the progress bar off, logging
every 50 steps (metrics.jsonl + TensorBoard) and one checkpoint + weights file at the end; the
timing covers `Trainer(...)` and `fit(...)` (not the one-off `launch_fabric`). Prints the median of
--repeats runs of each (and the fastest run, the better estimate when other processes share the
cores) and the overhead in percent.

    python benchmarks/bench_trainer.py [--steps 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genrep.data import BatchIterator, ImageDataset
from genrep.models.base import GenerativeModel, Output
from genrep.training import TrainConfig, Trainer, launch_fabric


class MLPVAE(GenerativeModel):
    """A VAE-sized MLP: q(z|x) = N(mu, sigma²) with a 20-d latent, Bernoulli decoder logits."""

    def __init__(self, hidden: int = 400, latent: int = 20):
        super().__init__(image_shape=(1, 28, 28))
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 784))

    def forward(self, batch):
        x = batch["x"]
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        logits = self.decoder(z).view_as(x)
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum() / len(x)
        return Output(rec + kl, {"rec": rec.detach(), "kl": kl.detach()})


def bare_loop(data: ImageDataset, steps: int, batch_size: int) -> float:
    """Seconds for `steps` plain Adam steps over the same seeded batches the Trainer sees."""
    torch.manual_seed(0)
    model = MLPVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = BatchIterator(data, batch_size, seed=0)
    start = time.perf_counter()
    step, epoch = 0, 0
    while step < steps:
        for batch in batches.epoch(epoch):
            optimizer.zero_grad(set_to_none=True)
            loss = model(batch).loss
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                break
        epoch += 1
    return time.perf_counter() - start


def trainer_loop(data: ImageDataset, steps: int, batch_size: int, fabric, run_dir: Path) -> float:
    """Seconds for Trainer construction + fit of `steps` steps into `run_dir`."""
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=1e-3, progress=False, log_every=50, checkpoint_every=0)
    torch.manual_seed(0)
    model = MLPVAE()
    start = time.perf_counter()
    Trainer(cfg, fabric=fabric, run_dir=run_dir).fit(model, data)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = ImageDataset(torch.rand(12_800, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    fabric = launch_fabric(TrainConfig(progress=False))
    bare_loop(data, 20, args.batch_size)  # warm-up (allocator, kernels)
    bare, trainer = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            bare.append(bare_loop(data, args.steps, args.batch_size))
            trainer.append(trainer_loop(data, args.steps, args.batch_size, fabric, Path(tmp) / f"run{repeat}"))
    t_bare, t_trainer = statistics.median(bare), statistics.median(trainer)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps, batch {args.batch_size},"
          f" median of {args.repeats}")
    for label, median, runs in (("bare loop", t_bare, bare), ("Trainer  ", t_trainer, trainer)):
        print(f"{label}: median {median:.2f} s ({1000 * median / args.steps:.2f} ms/step), fastest {min(runs):.2f} s"
              f" ({1000 * min(runs) / args.steps:.2f} ms/step)  runs: {', '.join(f'{t:.2f}' for t in runs)}")
    fastest = 100 * (min(trainer) / min(bare) - 1)
    print(f"overhead:  median {100 * (t_trainer / t_bare - 1):+.1f} %, fastest {fastest:+.1f} %")


if __name__ == "__main__":
    main()
