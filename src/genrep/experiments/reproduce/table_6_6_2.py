"""Thesis Table 6.6.2: generation quality (FID, PRD precision / recall) of a plain DDGM, the DDGM with
classifier guidance, the joint diffusion model, and the joint model with conditional sampling.

Rows (same UNet and diffusion for all; `genrep.experiments.joint.settings`):
- DDGM: `ddgm`, unconditional ancestral sampling (fixed-large variance, no clipping);
- DDGM (classifier guidance): the same DDGM guided by a separately trained noisy classifier
  c(x_t, t) (`noisy-classifier`; Dhariwal & Nichol, Eq. 6.12, scale s = `GUIDANCE_SCALE`) toward
  class-balanced labels;
- Ours: `joint`, unconditional sampling;
- Ours (conditional sampling): `joint-noisy` (trained with noisy classifiers, Eq. 6.10, as the thesis
  does for this row) sampled by optimised representations (Alg. 1) toward class-balanced labels
  with α = `ALPHA` and the reference code's sign (Z + α∇_Z CE, Alg. 1; METHODS.md);
- Ours (conditional sampling, Z − α∇CE): the same with the opposite sign, the thesis prose's rule
  for ε-prediction (not a row of the published table: which sign helps is measured, not assumed).
n samples (seeded) against a seeded n-image subset of the test split (resized as the runs see it; both
resized again to the feature extractor's input size, e.g. 16 → 28 for the FashionMNIST LeNet at `cpu`);
FID on the scale's feature extractor (LeNet at `smoke`/`cpu`: compare rankings, not values, with the
published Inception FIDs), PRD (max F_8 / F_{1/8} × 100). Runs in OUT/seed{S}/{ddgm,
noisy-classifier,joint,joint-noisy}, reused when finished (shared with Table 6.6.1 under one --out).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from genrep.experiments.reproduce.common import check_inputs, check_scale, format_cell, markdown_table, mean_sem

SHARED_RUNS = "joint-diffusion"  # the ch. 6 tables reuse each other's runs in one folder
NAME = "table-6.6.2"
TITLE = "Table 6.6.2: FID / precision / recall of DDGM, classifier guidance, joint diffusion and conditional sampling"

ROWS = ("ddgm", "ddgm-guidance", "joint", "joint-conditional", "joint-conditional-descend")
LABELS = {"ddgm": "DDGM", "ddgm-guidance": "DDGM (classifier guidance)", "joint": "Ours",
          "joint-conditional": "Ours (conditional sampling)",
          "joint-conditional-descend": "Ours (conditional sampling, Z − α∇CE)"}
METRICS = ("fid", "precision", "recall")
ALPHA = 200.0  # the thesis' sweet spot is 100–250 (Fig. 6.6.1)
PUBLISHED = {  # FashionMNIST and CIFAR-10 columns of Table 6.6.2: (FID, Prec, Rec)
    "ddgm": {"fashion_mnist": (7.8, 71.5, 65.3), "cifar10": (7.2, 64.8, 61.2)},
    "ddgm-guidance": {"fashion_mnist": (7.9, 66.6, 59.5), "cifar10": (8.1, 63.2, 63.3)},
    "joint": {"fashion_mnist": (8.7, 71.1, 61.1), "cifar10": (7.9, 69.9, 56.4)},
    "joint-conditional": {"fashion_mnist": (5.9, 63.1, 63.2), "cifar10": (6.4, 70.7, 54.3)},
}
SCALES = {"smoke": ("digits",), "cpu": ("fashion_mnist",), "paper": ("fashion_mnist",)}


def run(*, scale: str, seeds: int = 1, out: str | Path, progress: bool = True, log=print,
        alpha: float = ALPHA) -> dict[str, Any]:
    """Every row for seeds 0..seeds−1 into `out`; writes results.json/.md there."""
    import torch

    from genrep.experiments.evaluate import choose_real
    from genrep.experiments.joint.cells import train_cell
    from genrep.experiments.joint.evaluation import balanced_labels, feature_extractor, generate, generation_metrics
    from genrep.experiments.joint.evaluation import load_run, run_data
    from genrep.experiments.joint.sampling_analysis import match_extractor
    from genrep.experiments.joint.settings import scale_of
    from genrep.runs import write_json

    s = scale_of(check_scale(scale))
    out = check_inputs(scale=scale, seeds=seeds, out=out, datasets=[(s.dataset, {})])
    extractor, features_note = feature_extractor(scale, progress=progress)
    log(f"features: {features_note}")
    test = run_data(scale, "test")
    n = min(s.n_eval, len(test))
    values = {row: {m: [] for m in METRICS} for row in ROWS}
    timings: dict[str, float] = {}
    for seed in range(seeds):
        f_real = extractor.features(match_extractor(choose_real(test, n, seed).images, extractor), progress=progress)
        runs = {kind: train_cell(out, kind, scale, seed, log=log, progress=progress)[0]
                for kind in ("ddgm", "noisy-classifier", "joint", "joint-noisy")}
        labels = balanced_labels(n, test.num_classes)
        ddgm = load_run(runs["ddgm"])
        samplers = {
            "ddgm": lambda: generate(ddgm, n, seed, progress=progress),
            "ddgm-guidance": lambda: generate(ddgm, n, seed, labels=labels, guide=load_run(runs["noisy-classifier"]),
                                              progress=progress),
            "joint": lambda: generate(load_run(runs["joint"]), n, seed, progress=progress),
            "joint-conditional": lambda: generate(load_run(runs["joint-noisy"]), n, seed, labels=labels, alpha=alpha,
                                                  step="ascend-ce", progress=progress),
            "joint-conditional-descend": lambda: generate(load_run(runs["joint-noisy"]), n, seed, labels=labels,
                                                          alpha=alpha, step="descend-ce", progress=progress),
        }
        for row, sample in samplers.items():
            started = time.perf_counter()
            with torch.no_grad():
                fake = sample()
            timings[f"seed{seed}/{row}/sample_s"] = round(time.perf_counter() - started, 1)
            result = generation_metrics(f_real, extractor.features(match_extractor(fake, extractor), progress=progress),
                                        seed)
            for metric, value in result.items():
                values[row][metric].append(value)
            log(f"[seed {seed}] {LABELS[row]}: " + ", ".join(f"{k}={v:.2f}" for k, v in result.items()))
    table = results_table(values, seeds, s.dataset)
    footnote = (f"ours: mean ± SEM over seeds {list(range(seeds))} of {n} samples vs {n} test images, "
                f"features {features_note} [published Table 6.6.2, {s.dataset} column, Inception FID]; "
                f"conditional sampling α = {alpha:g}, classifier-guidance scale 1; scale `{scale}`.")
    results = {"table": NAME, "scale": scale, "seeds": list(range(seeds)), "n_eval": n, "alpha": alpha,
               "features": features_note, "values": values, "published": PUBLISHED, "timings_s": timings}
    write_json(out / f"{NAME}.json", results)
    (out / f"{NAME}.md").write_text(f"# {TITLE}\n\n{table}\n\n{footnote}\n")
    return {**results, "markdown": f"{table}\n\n{footnote}", "files": [out / f"{NAME}.json", out / f"{NAME}.md"]}


def results_table(values, seeds: int, dataset: str) -> str:
    rows = []
    for row in ROWS:
        published = PUBLISHED.get(row, {}).get(dataset)
        cells = [LABELS[row]]
        for i, metric in enumerate(METRICS):
            cells.append(format_cell(mean_sem(values[row][metric]), published[i] if published else None, seeds))
        rows.append(cells)
    return markdown_table(["model", "FID ↓", "Prec ↑", "Rec ↑"], rows)


def plan(scale: str) -> dict[str, Any]:
    """Every run's resolved settings at `scale` (what `--dry-run` prints)."""
    from genrep.experiments.joint.settings import run_config
    from genrep.experiments.reproduce.common import resolved_config

    check_scale(scale)
    return {"table": NAME, "scale": scale, "alpha": ALPHA,
            "runs": {kind: resolved_config(run_config(kind, scale, 0))
                     for kind in ("ddgm", "noisy-classifier", "joint", "joint-noisy")}}
