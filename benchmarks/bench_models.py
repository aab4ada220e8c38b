"""Training step time of the Table 4.3.1 models, and the Sinkhorn share of the e2e SAE step.

    python benchmarks/bench_models.py [--batch-size 250] [--steps 20] [--scales cpu paper]

For each scale's architecture (benchmarks the configs of `genrep reproduce table-4.3.1`) and data
shape (MNIST 28×28 with 10 labels, calorimeter 44×44 with 9 conditions; random images in range),
times full optimiser steps (forward, backward, update; the GAN's own D+G step) after 3 warm-up
steps, median over `--steps`. For the conditional e2e SAE it also times the Sinkhorn term alone
(forward + backward of S_ε on the same clouds: batch × (latent + condition) dims).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from lightning_fabric import Fabric

from genrep.data.spec import DataSpec
from genrep.experiments.reproduce import table_4_3_1
from genrep.experiments.run_config import run_config_from_dict
from genrep.models import build_model

SHAPES = {"mnist": ((1, 28, 28), 10, None), "calorimeter": ((1, 44, 44), None, 9)}


def batch_for(dataset: str, n: int) -> dict[str, torch.Tensor]:
    shape, classes, cond_dim = SHAPES[dataset]
    batch = {"x": torch.rand(n, *shape) * (2 if dataset == "mnist" else 1) - (1 if dataset == "mnist" else 0)}
    if classes:
        batch["y"] = torch.randint(0, classes, (n,))
    else:
        batch["c"] = torch.randn(n, cond_dim)
    return batch


def median_ms(fn, steps: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def step_function(model, batch, fabric):
    if hasattr(model, "training_step"):
        optimizers = model.configure_optimizers(None)
        return lambda: model.training_step(batch, optimizers, fabric)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)

    def step():
        optimizer.zero_grad()
        model(batch).loss.backward()
        optimizer.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--scales", nargs="+", default=["cpu", "paper"])
    args = parser.parse_args()
    fabric = Fabric(accelerator="cpu", devices=1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"median of {args.steps} steps")
    print("| scale | data | model | arch | step (ms) | Sinkhorn fwd+bwd (ms) | Sinkhorn share |")
    print("|---|---|---|---|---|---|---|")
    for scale in args.scales:
        for dataset, (shape, classes, cond_dim) in SHAPES.items():
            spec = DataSpec(dataset, shape, (-1.0, 1.0) if dataset == "mnist" else (0.0, 1.0),
                            num_classes=classes, cond_dim=cond_dim)
            batch = batch_for(dataset, args.batch_size)
            for name in table_4_3_1.MODELS:
                cfg = run_config_from_dict(table_4_3_1.run_config(name, dataset, scale, seed=0))
                torch.manual_seed(0)
                model = build_model(cfg.model_name, cfg.model, spec).train()
                step_ms = median_ms(step_function(model, batch, fabric), args.steps)
                share = ""
                if cfg.model_name == "ce2e-sae":
                    dim = cfg.model.latent_dim + (classes or cond_dim)
                    a = torch.randn(args.batch_size, dim, requires_grad=True)
                    b = torch.randn(args.batch_size, dim, requires_grad=True)
                    sink_ms = median_ms(lambda: model.sinkhorn(a, b).backward(), args.steps)
                    share = f"{sink_ms:.1f} | {sink_ms / step_ms:.0%}"
                else:
                    share = "– | –"
                arch = getattr(cfg.model, "arch", "dcgan")
                print(f"| {scale} | {dataset} | {name} | {arch} | {step_ms:.1f} | {share} |", flush=True)


if __name__ == "__main__":
    main()
