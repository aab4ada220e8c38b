"""ALICE ZDC calorimeter responses (44×44, conditioned on 9 particle attributes).

Without `path=` the data are synthetic (`genrep.data.calorimeter.simulate_showers`, a stand-in for
the non-public real data): `n` particles from `sample_particles` (default 20,000 train / 5,000
test) and their showers; split s of seed k uses seed 2k (train) or 2k+1 (test), so the splits
are disjoint random streams. With `path=FILE.npz` (or a pair of .npy/.npz files) the real ZDC
data are read and split 80/20 with `split_seed` unless the file has explicit splits (see
`read_zdc`). Images are log1p(counts)/log1p(65535) in [0, 1]; invert with `to_counts`.
"""

from __future__ import annotations

from genrep.data import calorimeter as zdc
from genrep.data.dataset import ImageDataset
from genrep.data.registry import register_source
from genrep.errors import ConfigError

DEFAULT_N = {"train": 20_000, "test": 5_000}


def load(split: str, *, path=None, n: int | None = None, seed: int = 0, split_seed: int = 0) -> ImageDataset:
    if path is not None:
        if n is not None:
            raise ConfigError("calorimeter: n= sets the size of the synthetic data; with path= use limit=")
        responses, particles = zdc.read_zdc(path, split_seed=split_seed)[split]
        return zdc.make_dataset(responses, particles, split=split)
    n = DEFAULT_N[split] if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"calorimeter: n must be a positive integer, got {n!r}")
    stream = 2 * seed + (split == "test")
    particles = zdc.sample_particles(n, seed=stream)
    return zdc.make_dataset(zdc.simulate_showers(particles, seed=stream), particles, split=split)


register_source("calorimeter", load=load,
                status=lambda: "synthetic ZDC-like simulator (real data: path=FILE.npz)",
                description="ALICE ZDC 44×44 responses conditioned on 9 particle attributes; "
                            "synthetic 20000 train / 5000 test, or real files via path=")
