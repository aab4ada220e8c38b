"""Thesis Table 4.4.1: unconditional models on CelebA 64×64, Inception FID.

The e2e SAE and the two baselines genrep implements (VAE, WAE-MMD) are trained on the CelebA
train split and evaluated by FID (Inception pool features) of samples vs the test split. CelebA
must be available (`path=` folder with the official files, the cache, or `download=True`); it is
not reachable on machines without internet, so this recipe is for users with the data.

Published (thesis Table 4.4.1, best reported values of the other methods): VAE + Flow 65.7,
SWAE 64, SAE (H) 56, VAE 55, WAE (MMD) 55, e2e SAE 54.5. The thesis states the WAE architecture
(4 conv 5×5 + BN, 64-d latent) and batch 1000, not the number of steps: `paper` uses 10,000 steps.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from genrep.experiments.reproduce.common import (
    check_inputs,
    check_scale,
    format_cell,
    markdown_table,
    mean_std,
    train_or_reuse,
)

NAME = "table-4.4.1"
TITLE = "Table 4.4.1: CelebA 64×64, Inception FID"
MODELS = ("vae", "wae", "e2e-sae")
LABELS = {"vae": "VAE", "wae": "WAE (MMD)", "e2e-sae": "e2e SAE (ours)"}
PUBLISHED = {"vae": 55.0, "wae": 55.0, "e2e-sae": 54.5}
PUBLISHED_OTHERS = {"VAE + Flow": 65.7, "SWAE": 64.0, "SAE (H)": 56.0}


@dataclasses.dataclass(frozen=True)
class Scale:
    steps: int
    batch_size: int
    lr: float
    scheduler: str
    width: float          # multiplier of the WAE architecture's widths (1 = 128-256-512-1024)
    train_limit: int | None
    n_eval: int


SCALES = {
    "smoke": Scale(steps=20, batch_size=16, lr=1e-3, scheduler="none", width=0.0625, train_limit=256, n_eval=32),
    "cpu": Scale(steps=2000, batch_size=100, lr=1e-3, scheduler="none", width=0.25, train_limit=20_000, n_eval=1000),
    "paper": Scale(steps=10_000, batch_size=1000, lr=1e-4, scheduler="exponential", width=1.0, train_limit=None,
                   n_eval=10_000),
}


def run_config(model: str, scale: str, seed: int, *, celeba_path: str | None = None,
               progress: bool = False) -> dict[str, Any]:
    s = SCALES[check_scale(scale)]
    model_cfg: dict[str, Any] = {"arch": "wae64", "latent_dim": 64, "width": s.width}
    if model == "vae":
        model_cfg.update(likelihood="gaussian")
    data: dict[str, Any] = {"name": "celeba", "limit": s.train_limit, "validation_fraction": 0.0}
    if celeba_path:
        data["path"] = celeba_path
    train = {"steps": s.steps, "batch_size": s.batch_size, "lr": s.lr, "scheduler": s.scheduler, "seed": seed,
             "log_every": max(1, s.steps // 20), "checkpoint_every": max(1, s.steps // 4), "progress": progress}
    return {"model_name": model, "model": model_cfg, "data": data, "train": train}


def check_celeba_files(path: str | None) -> None:
    """The CelebA files are in `path` (or, without one, in the cache): DataError/SourceMissingError
    naming what is missing, without decoding any image."""
    from genrep.data.download import locate, require
    from genrep.data.sources.celeba import RESOURCES

    root = locate("celeba", RESOURCES, path=path)
    require(root, "img_align_celeba", "img_align_celeba.zip", name="celeba")
    require(root, "list_eval_partition.txt", name="celeba")
    require(root, "list_attr_celeba.txt", name="celeba")


def run(*, scale: str, seeds: int = 1, out: str | Path, celeba_path: str | None = None, progress: bool = True,
        log=print, features="inception") -> dict[str, Any]:
    """Train and evaluate each model for seeds 0..seeds−1 into `out`; writes results.json/results.md.
    `features`: the FID extractor ("inception" with pytorch-fid's preprocessing, as the authors'
    reference, or a FeatureExtractor)."""
    from genrep.experiments.evaluate import evaluate
    from genrep.metrics.features.inception import FIDInception
    from genrep.runs import write_json

    out = check_inputs(scale=scale, seeds=seeds, out=out, paths={"--celeba-path": celeba_path})
    check_celeba_files(celeba_path)
    s = SCALES[scale]
    real = "celeba:test"
    values: dict[str, list[float]] = {m: [] for m in MODELS}
    for seed in range(seeds):
        for model in MODELS:
            run_dir = out / f"seed{seed}" / model
            log(f"[seed {seed}] {model} on celeba: training ({s.steps} steps) → {run_dir}")
            train_or_reuse(run_config(model, scale, seed, celeba_path=celeba_path, progress=progress), run_dir)
            result = evaluate(real, str(run_dir), metrics=["fid"], features=features, n=s.n_eval, seed=seed,
                              progress=progress, inception_resize="torch")
            values[model].append(result["fid"])
            log(f"[seed {seed}] {model}: FID {result['fid']:.2f}")
    rows = [[LABELS[m], format_cell(mean_std(values[m]), PUBLISHED[m], seeds)] for m in MODELS]
    rows += [[name, f"— [{value:g}]"] for name, value in PUBLISHED_OTHERS.items()]
    table = markdown_table(["model", "CelebA FID"], rows)
    resize = "torch" if features == "inception" else features.resize if isinstance(features, FIDInception) else None
    results = {"table": NAME, "scale": scale, "seeds": list(range(seeds)), "settings": dataclasses.asdict(s),
               "values": values, "published": {**PUBLISHED, **PUBLISHED_OTHERS},
               **({"inception_resize": resize} if resize else {})}
    write_json(out / "results.json", results)
    preprocessing = {None: "", "tf1": ", Inception preprocessing `tf1` (the TF FID graph's resize and range)",
                     "torch": ", Inception preprocessing `torch` (pytorch-fid's bilinear interpolate to 299 and"
                              " 2x − 1, as the authors' reference)"}[resize]
    (out / "results.md").write_text(f"# {TITLE}\n\nscale `{scale}`, seeds {list(range(seeds))}, "
                                    f"{s.n_eval} samples vs celeba test{preprocessing}\n\n{table}\n")
    return {**results, "markdown": table}


def plan(scale: str) -> dict[str, Any]:
    """Every row's resolved run config at `scale` (what `--dry-run` prints), without training."""
    from genrep.experiments.reproduce.common import resolved_config

    check_scale(scale)
    return {"table": NAME, "scale": scale,
            "cells": {model: resolved_config(run_config(model, scale, seed=0)) for model in MODELS}}
