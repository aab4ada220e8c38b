"""Thesis Table 6.6.6: domain adaptation by diffusion-only fine-tuning of a joint model on the
unlabelled target, against a classifier trained on the source and one trained on the target
(`genrep.experiments.joint.adaptation`, sequential protocol).

The published pairs (SVHN → MNIST, USPS → MNIST, MNIST → USPS) need SVHN / USPS files; the offline
pairs are MNIST → digits and digits → MNIST (8×8 digits upsampled), which `smoke` and `cpu` run;
`paper` runs the published pairs through the existing loaders (USPS at 16 px is resized like MNIST).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrep.experiments.joint.adaptation import LABELS, METHODS, run_adaptation
from genrep.experiments.reproduce.common import check_inputs, check_scale, format_cell, markdown_table, mean_sem

SHARED_RUNS = "joint-diffusion"  # the ch. 6 tables reuse each other's runs in one folder
NAME = "table-6.6.6"
TITLE = "Table 6.6.6: domain adaptation of joint diffusion by diffusion-only fine-tuning on the target"

PUBLISHED = {  # % (Table 6.6.6)
    ("svhn", "mnist"): {"classifier": 78.8, "joint": 85.5, "target-classifier": 96.1},
    ("usps", "mnist"): {"classifier": 54.7, "joint": 90.5, "target-classifier": 96.8},
    ("mnist", "usps"): {"classifier": 72.2, "joint": 92.7, "target-classifier": 99.4},
}
SCALES = {"smoke": (("mnist", "digits"),), "cpu": (("mnist", "digits"), ("digits", "mnist")),
          "paper": (("usps", "mnist"), ("mnist", "usps"))}


def run(*, scale: str, seeds: int = 1, out: str | Path, progress: bool = True, log=print,
        mode: str = "sequential") -> dict[str, Any]:
    """Every pair for seeds 0..seeds−1 into `out`; writes results.json/.md there."""
    from genrep.runs import write_json

    check_scale(scale)
    pairs = SCALES[scale]
    names = sorted({name for pair in pairs for name in pair})
    out = check_inputs(scale=scale, seeds=seeds, out=out, datasets=[(name, {}) for name in names])
    cells = {f"{s}->{t}": run_adaptation(out, scale=scale, seeds=seeds, source=s, target=t, mode=mode,
                                         progress=progress, log=log) for s, t in pairs}
    table = results_table(cells, pairs, seeds)
    footnote = (f"ours: target test accuracy in %, mean ± SEM over seeds {list(range(seeds))}, {mode} protocol "
                f"[published Table 6.6.6 for its pairs]; scale `{scale}`.")
    results = {"table": NAME, "scale": scale, "seeds": list(range(seeds)), "mode": mode, "cells": cells,
               "published": {f"{s}->{t}": v for (s, t), v in PUBLISHED.items()}}
    write_json(out / f"{NAME}.json", results)
    (out / f"{NAME}.md").write_text(f"# {TITLE}\n\n{table}\n\n{footnote}\n")
    return {**results, "markdown": f"{table}\n\n{footnote}", "files": [out / f"{NAME}.json", out / f"{NAME}.md"]}


def results_table(cells, pairs, seeds: int) -> str:
    rows = []
    for method in METHODS:
        row = [LABELS[method]]
        for s, t in pairs:
            row.append(format_cell(mean_sem(cells[f"{s}->{t}"]["values"][method]),
                                   PUBLISHED.get((s, t), {}).get(method), seeds))
        rows.append(row)
    return markdown_table(["model", *[f"{s} → {t}" for s, t in pairs]], rows)


def plan(scale: str) -> dict[str, Any]:
    """The resolved settings of the first pair's runs at `scale` (what `--dry-run` prints)."""
    from genrep.experiments.joint.settings import run_config
    from genrep.experiments.reproduce.common import resolved_config

    check_scale(scale)
    source, target = SCALES[scale][0]
    return {"table": NAME, "scale": scale, "pairs": [list(p) for p in SCALES[scale]], "runs": {
        "classifier-source": resolved_config(run_config("classifier", scale, 0, dataset=source)),
        "joint-source": resolved_config(run_config("joint", scale, 0, dataset=source)),
        "joint-adapt": resolved_config(run_config("joint", scale, 0, dataset=target, classifier={"train": False},
                                                  train={"init_from": f"<OUT>/seed0/joint-{source}"}))}}
