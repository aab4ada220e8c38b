"""Data-loading throughput: `load_dataset` time per source and BatchIterator speed over MNIST.

    python benchmarks/bench_data.py [--batch-size 128] [--epochs 3] [--threads 2]

"cold" is the first load in the process (decoding the offline files), "warm" the best of three
later loads (mnist/fashion_mnist keep the decoded uint8 arrays in memory). The iterator row is
the best of `epochs` full shuffled epochs over the MNIST training set, touching every batch.
"""

from __future__ import annotations

import argparse
import time

import torch

from genrep.data import BatchIterator, load_dataset


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'source':<16}{'split':<7}{'images':>8}{'cold s':>9}{'warm s':>9}")
    for name in ("digits", "mnist", "fashion_mnist"):
        for split in ("train", "test"):
            cold = seconds(lambda: load_dataset(name, split))
            warm = min(seconds(lambda: load_dataset(name, split)) for _ in range(3))
            print(f"{name:<16}{split:<7}{len(load_dataset(name, split)):>8}{cold:>9.3f}{warm:>9.3f}")

    data = load_dataset("mnist", "train")
    iterator = BatchIterator(data, args.batch_size, seed=0)

    def epoch(e):
        for batch in iterator.epoch(e):
            batch["x"].sum()

    best = min(seconds(lambda e=e: epoch(e)) for e in range(args.epochs))
    n = len(iterator)
    print(f"\nBatchIterator over mnist train, batch {args.batch_size}: {n} batches in {best:.3f} s ="
          f" {n / best:,.0f} batches/s, {n * args.batch_size / best:,.0f} images/s")


if __name__ == "__main__":
    main()
