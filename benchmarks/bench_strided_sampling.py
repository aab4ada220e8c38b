"""Sample quality against the number of sampling steps: one trained T = 1000 DDGM, sampled with
respaced (strided) ancestral steps and with DDIM (η = 0) at 1000 / 250 / 100 / 50 / 25 steps.

    python benchmarks/bench_strided_sampling.py [--train-steps 2000] [--n 1500] [--out runs/bench_strided]

Model: a linear-schedule DDGM (simplified loss, T = 1000) on the 8×8 `digits` data (UNet 16 ch ×
(1, 2), 2 ResBlocks per level, attention in the 4×4 middle block), batch 64, AdamW 1e-3; the run
is reused from `--out` when it exists. Every sampler starts from the same seeded noise. FID uses
the cached digits LeNet (trained now if missing) against the 1,500 training images: the test split
holds only 297 images, too few for an 84-d FID; the comparison across step counts is what matters.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

STEP_COUNTS = (1000, 250, 100, 50, 25)


def main() -> None:
    from genrep import metrics as M
    from genrep.data import load_dataset
    from genrep.errors import CheckpointError
    from genrep.experiments.reproduce.common import train_or_reuse
    from genrep.experiments.train import load_trained_model
    from genrep.metrics.features.lenet import load_lenet
    from genrep.metrics.features.training import train_lenet
    from genrep.models.ddgm import from_model_range, reverse_diffusion, spaced_process

    parser = argparse.ArgumentParser()
    parser.add_argument("--train-steps", type=int, default=2000)
    parser.add_argument("--n", type=int, default=1500, help="generated images per sampler and step count")
    parser.add_argument("--out", default="runs/bench_strided")
    args = parser.parse_args()

    config = {
        "model_name": "ddgm",
        "model": {"steps": 1000, "schedule": "linear", "loss": "simple", "timestep_sampler": "uniform",
                  "unet": {"model_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 2,
                           "attention_resolutions": [], "middle_attention": True, "num_heads": 4, "dropout": 0.0}},
        "data": {"name": "digits", "value_range": "01", "validation_fraction": 0.0},
        "train": {"steps": args.train_steps, "batch_size": 64, "lr": 1e-3, "optimizer": "adamw", "grad_clip": 1.0,
                  "seed": 0, "accelerator": "cpu", "log_every": 200, "checkpoint_every": 1000, "progress": True},
    }
    run_dir = Path(args.out) / "ddgm-digits-T1000"
    started = time.perf_counter()
    summary = train_or_reuse(config, run_dir)
    print(f"training: {args.train_steps} steps, {summary.get('wall_time_s')} s (run {run_dir}, "
          f"{time.perf_counter() - started:.0f} s in this call)")
    model = load_trained_model(run_dir).eval()
    try:
        lenet = load_lenet("digits")
    except CheckpointError:
        lenet, _ = train_lenet("digits", progress=False)
    f_real = lenet.features(load_dataset("digits", "train").images, progress=False)
    noise = torch.randn(args.n, *model.image_shape, generator=torch.Generator().manual_seed(0))

    print(f"| sampler | steps | FID (LeNet[digits], {args.n} vs 1500 train) | IPR precision | IPR recall "
          "| time for the batch |")
    print("|---|---|---|---|---|---|")
    for sampler in ("ancestral", "ddim"):
        for steps in STEP_COUNTS:
            process = spaced_process(model.diffusion, steps)
            generator = torch.Generator().manual_seed(1)
            tic = time.perf_counter()
            x0 = reverse_diffusion(process, model.unet, noise.shape, sampler=sampler, noise=noise.clone(),
                                   generator=generator, progress=True)
            elapsed = time.perf_counter() - tic
            images = from_model_range(x0, model.value_range).clamp(0.0, 1.0)
            f_fake = lenet.features(images, progress=False)
            precision, recall = M.improved_precision_recall(real=f_real, fake=f_fake, k=3)
            print(f"| {sampler} | {steps} | {M.fid(f_real, f_fake):.2f} | {100 * precision:.1f} | {100 * recall:.1f} "
                  f"| {elapsed:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
