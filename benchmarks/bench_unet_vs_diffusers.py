"""genrep's UNet + GaussianDiffusion against diffusers' UNet2DModel + DDPMScheduler at the same size.

    pip install diffusers   # benchmark-only dependency, not needed by genrep
    python benchmarks/bench_unet_vs_diffusers.py [--batch-size 32] [--steps 5] [--sample-steps 20]

Both UNets: 1×32×32 input, channels (32, 64, 64), 2 res blocks per level, self-attention with
8-channel heads at 8×8 and in the middle block, GroupNorm(32), SiLU. Train step: forward on x_t,
ε-MSE, backward, Adam, median over `--steps` after 2 warm-ups. Sampling: `--sample-steps` ancestral
steps for a batch of 16 (genrep: a respaced GaussianDiffusion; diffusers: DDPMScheduler with
`set_timesteps`), median of 2 runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def median_s(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    try:
        from diffusers import DDPMScheduler, UNet2DModel
    except ImportError:
        print("skipped: diffusers is not installed (benchmark-only dependency: pip install diffusers)")
        return

    from genrep.diffusion import get_betas
    from genrep.diffusion.respace import SpacedDiffusion, space_timesteps
    from genrep.models.unet import UNet, UNetConfig

    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--sample-steps", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    ours = UNet(UNetConfig(in_channels=1, model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=2, image_size=32,
                           attention_resolutions=(8,), num_head_channels=8))
    theirs = UNet2DModel(sample_size=32, in_channels=1, out_channels=1, layers_per_block=2,
                         block_out_channels=(32, 64, 64), attention_head_dim=8,
                         down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                         up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))
    x = torch.randn(args.batch_size, 1, 32, 32)
    t = torch.randint(0, 1000, (args.batch_size,))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; parameters: genrep "
          f"{sum(p.numel() for p in ours.parameters()) / 1e6:.2f} M, diffusers "
          f"{sum(p.numel() for p in theirs.parameters()) / 1e6:.2f} M")

    def train_step(model, call):
        optimizer = torch.optim.Adam(model.parameters(), 1e-4)

        def step():
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(call(model), x).backward()
            optimizer.step()
        return step

    ours_train = median_s(train_step(ours, lambda m: m(x, t)), args.steps)
    theirs_train = median_s(train_step(theirs, lambda m: m(x, t).sample), args.steps)

    betas = get_betas("linear", 1000)
    spaced = SpacedDiffusion(space_timesteps(1000, [args.sample_steps]), betas)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    scheduler.set_timesteps(args.sample_steps)
    ours.eval()
    theirs.eval()

    @torch.no_grad()
    def ours_sample():
        spaced.p_sample_loop(spaced.wrap_model(ours), (16, 1, 32, 32))

    @torch.no_grad()
    def theirs_sample():
        sample = torch.randn(16, 1, 32, 32)
        for step in scheduler.timesteps:
            sample = scheduler.step(theirs(sample, step).sample, step, sample).prev_sample

    ours_sampling = median_s(ours_sample, 2, warmup=1)
    theirs_sampling = median_s(theirs_sample, 2, warmup=1)
    print("| | genrep | diffusers | diffusers / genrep |")
    print("|---|---|---|---|")
    print(f"| train step, batch {args.batch_size} | {ours_train * 1e3:.0f} ms | {theirs_train * 1e3:.0f} ms |"
          f" {theirs_train / ours_train:.2f}× |")
    print(f"| sampling 16 images, {args.sample_steps} steps | {ours_sampling:.2f} s | {theirs_sampling:.2f} s |"
          f" {theirs_sampling / ours_sampling:.2f}× |")


if __name__ == "__main__":
    main()
