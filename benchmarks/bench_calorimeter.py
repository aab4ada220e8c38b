"""Throughput of the synthetic ZDC shower simulator (responses per second).

    python benchmarks/bench_calorimeter.py [--sizes 10000 50000] [--repeats 3] [--threads 2]

Times `simulate_showers` alone (particles are sampled beforehand) and reports the best of
`repeats` runs per size, plus `sample_particles` and the full synthetic source at its default size.
"""

from __future__ import annotations

import argparse
import time

import torch

from genrep.data import calorimeter as zdc
from genrep.data import load_dataset


def best_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, best of {args.repeats}")
    for n in args.sizes:
        particles = zdc.sample_particles(n, seed=0)
        seconds = best_seconds(lambda: zdc.simulate_showers(particles, seed=0), args.repeats)
        sample = best_seconds(lambda: zdc.sample_particles(n, seed=0), args.repeats)
        print(f"N={n:>6}: simulate_showers {n / seconds:>9,.0f} responses/s ({seconds:.2f} s); "
              f"sample_particles {n / sample:>12,.0f} particles/s")
    seconds = best_seconds(lambda: load_dataset("calorimeter", "train"), 1)
    print(f"load_dataset('calorimeter', 'train') (20,000 responses, preprocessed): {seconds:.2f} s")


if __name__ == "__main__":
    main()
