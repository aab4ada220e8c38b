"""Thesis Table 6.6.1: test accuracy of the joint diffusion model against a stand-alone classifier of
the same encoder and a classifier on a frozen pre-trained DDGM's features.

Rows (all on the same UNet; `genrep.experiments.joint.settings`):
- Classifier: `unet-classifier` — the UNet encoder + the joint model's head, cross-entropy only;
- Ours (pre-trained DDGM): the head trained on the frozen pooled features z_0 of a plain DDGM
  (Sec. 6.4.1; features computed once, so no augmentation);
- Ours: `joint-ddgm`, Eq. 6.8 (noisy classifiers off), accuracy of its head on clean x_0 at t = 0.
Accuracy on the whole test split, mean ± SEM over seeds, in %. The runs live in
OUT/seed{S}/{classifier,ddgm,joint}, reused when finished — Tables 6.6.2 and 6.6.5 train the same
`ddgm` and `joint` runs, and the ch. 6 tables share one default --out (each writes OUT/TABLE.json
and OUT/TABLE.md).

Scales: see `genrep.experiments.joint.settings` (`cpu`: FashionMNIST at 16×16, 1500 steps).
`paper` covers the FashionMNIST column; SVHN / CIFAR-10 / CIFAR-100 run with `datasets=` when their
files are present (published per-data-set settings, `PAPER_DATASETS`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrep.experiments.reproduce.common import check_inputs, check_scale, format_cell, markdown_table, mean_sem

SHARED_RUNS = "joint-diffusion"  # the ch. 6 tables reuse each other's runs in one folder
NAME = "table-6.6.1"
TITLE = "Table 6.6.1: accuracy of joint diffusion vs a stand-alone classifier and a pre-trained DDGM's features"

ROWS = ("classifier", "pretrained-ddgm", "joint")
LABELS = {"classifier": "Classifier", "pretrained-ddgm": "Ours (pre-trained DDGM)", "joint": "Ours"}
PUBLISHED = {  # % (Table 6.6.1)
    "classifier": {"fashion_mnist": 94.7, "svhn": 96.9, "cifar10": 94.0, "cifar100": 72.3},
    "pretrained-ddgm": {"fashion_mnist": 60.6, "svhn": 79.6, "cifar10": 80.9, "cifar100": 45.9},
    "joint": {"fashion_mnist": 95.3, "svhn": 97.4, "cifar10": 96.4, "cifar100": 77.6},
}
SCALES = {"smoke": ("digits",), "cpu": ("fashion_mnist",), "paper": ("fashion_mnist",)}


def run(*, scale: str, seeds: int = 1, out: str | Path, progress: bool = True, log=print,
        datasets: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Every row for seeds 0..seeds−1 and each data set into `out`; writes results.json/.md there."""
    from genrep.experiments.joint.cells import train_cell
    from genrep.experiments.joint.evaluation import frozen_feature_accuracy, load_run, run_data
    from genrep.experiments.joint.settings import scale_of
    from genrep.runs import write_json

    check_scale(scale)
    datasets = tuple(datasets or SCALES[scale])
    out = check_inputs(scale=scale, seeds=seeds, out=out, datasets=[(d, {}) for d in datasets])
    values: dict[str, dict[str, list[float]]] = {row: {d: [] for d in datasets} for row in ROWS}
    for dataset in datasets:
        train, test = run_data(scale, "train", dataset=dataset), run_data(scale, "test", dataset=dataset)
        for seed in range(seeds):
            for kind in ("classifier", "joint"):
                _, summary = train_cell(out, kind, scale, seed, dataset=dataset, log=log, progress=progress)
                values[kind][dataset].append(100 * summary["test_accuracy"])
            ddgm_dir, _ = train_cell(out, "ddgm", scale, seed, dataset=dataset, log=log, progress=progress)
            accuracy = frozen_feature_accuracy(load_run(ddgm_dir), train, test, epochs=scale_of(scale).head_epochs,
                                               seed=seed, progress=progress)
            values["pretrained-ddgm"][dataset].append(100 * accuracy)
            log(f"[seed {seed}] {dataset}: " + ", ".join(f"{LABELS[r]} {values[r][dataset][-1]:.2f}" for r in ROWS))
    table = results_table(values, datasets, seeds)
    footnote = (f"ours: test accuracy in %, mean ± SEM over seeds {list(range(seeds))} [published Table 6.6.1]; "
                f"scale `{scale}` (genrep.experiments.joint.settings).")
    results = {"table": NAME, "scale": scale, "seeds": list(range(seeds)), "datasets": list(datasets),
               "values": values, "published": PUBLISHED}
    write_json(out / f"{NAME}.json", results)
    (out / f"{NAME}.md").write_text(f"# {TITLE}\n\n{table}\n\n{footnote}\n")
    return {**results, "markdown": f"{table}\n\n{footnote}", "files": [out / f"{NAME}.json", out / f"{NAME}.md"]}


def results_table(values, datasets, seeds: int) -> str:
    rows = []
    for row in ROWS:
        cells = [LABELS[row]]
        for dataset in datasets:
            cells.append(format_cell(mean_sem(values[row][dataset]), PUBLISHED[row].get(dataset), seeds))
        rows.append(cells)
    return markdown_table(["model", *datasets], rows)


def plan(scale: str) -> dict[str, Any]:
    """Every run's resolved settings at `scale` (what `--dry-run` prints)."""
    from genrep.experiments.joint.settings import run_config
    from genrep.experiments.reproduce.common import resolved_config

    check_scale(scale)
    return {"table": NAME, "scale": scale, "datasets": list(SCALES[scale]),
            "runs": {kind: resolved_config(run_config(kind, scale, 0)) for kind in ("classifier", "ddgm", "joint")}}
