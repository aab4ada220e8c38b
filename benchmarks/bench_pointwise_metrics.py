"""Speed of the Sinkhorn divergence, MS-SSIM and calorimeter channel metrics.

    python benchmarks/bench_pointwise_metrics.py [--sinkhorn-sizes 1000 5000] [--pairs 10000]
        [--repeats 3] [--threads 2]

Sinkhorn: `sinkhorn_divergence` (defaults blur 0.05, scaling 0.95) between two 84-d Gaussian
clouds N(0, I) and N(0.1, 1.1²·I) (LeNet feature size), same size each; sizes above 2,000 are
timed once. MS-SSIM: `ms_ssim` on `--pairs` pairs of 28×28 gray images (smoothed uniform noise vs
the same with Gaussian noise σ = 0.1) in one call (2 scales). Calorimeter: `channel_mae` and
both `channel_wasserstein` conventions on 20,000 simulated responses. Best of `repeats`.
"""

from __future__ import annotations

import argparse
import time

import torch

from genrep.data import calorimeter as zdc
from genrep.metrics.calorimeter import channel_mae, channel_wasserstein
from genrep.metrics.msssim import max_scales, ms_ssim
from genrep.metrics.sinkhorn import sinkhorn_divergence


def timed(fn, repeats: int) -> tuple[float, object]:
    """(best wall time in seconds over `repeats` calls, the last result)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sinkhorn-sizes", type=int, nargs="+", default=[1_000, 5_000])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, best of {args.repeats}")
    g = torch.Generator().manual_seed(0)

    for n in args.sinkhorn_sizes:
        real = torch.randn(n, 84, generator=g)
        fake = 0.1 + 1.1 * torch.randn(n, 84, generator=g)
        seconds, value = timed(lambda: sinkhorn_divergence(real, fake), args.repeats if n <= 2_000 else 1)
        print(f"sinkhorn {n}x84 vs {n}x84: {seconds:.2f} s (S = {value:.3f})")

    x = torch.nn.functional.avg_pool2d(torch.rand(args.pairs, 1, 32, 32, generator=g), 5, 1)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    seconds, values = timed(lambda: ms_ssim(x, y), args.repeats)
    print(f"ms_ssim {args.pairs} pairs 28x28 ({max_scales(28)} scales): {seconds:.2f} s = "
          f"{args.pairs / seconds:,.0f} pairs/s (mean {values.mean():.4f})")

    particles = zdc.sample_particles(40_000, seed=0)
    real = zdc.simulate_showers(particles[:20_000], seed=0)
    fake = zdc.simulate_showers(particles[:20_000], seed=1)
    for name, fn in [("channel_mae", lambda: channel_mae(real, fake)),
                     ("channel_wasserstein pooled-log", lambda: channel_wasserstein(real, fake)),
                     ("channel_wasserstein per-channel-raw",
                      lambda: channel_wasserstein(real, fake, convention="per-channel-raw"))]:
        seconds, value = timed(fn, args.repeats)
        print(f"{name} 20,000 vs 20,000 responses: {seconds:.3f} s (value {value:.3f})")


if __name__ == "__main__":
    main()
