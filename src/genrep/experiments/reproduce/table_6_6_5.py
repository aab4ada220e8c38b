"""Thesis Table 6.6.5: semi-supervised accuracy of joint diffusion against a classifier trained on the
labelled part alone and a head on a frozen pre-trained DDGM (`genrep.experiments.joint.semisupervised`).

The published table covers SVHN, CIFAR-10 and CIFAR-100, none of which is available offline; the
`smoke` and `cpu` scales run the same protocol on digits / FashionMNIST (16×16 at `cpu`) with
1 %, 5 %, 10 % and 100 % class-balanced labels, and `paper` runs CIFAR-10 (needs its files; the
published CIFAR-10 settings). Published values are shown for the data sets they exist for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrep.experiments.joint.semisupervised import LABELS, METHODS, plot_semisupervised, run_semisupervised
from genrep.experiments.reproduce.common import check_inputs, check_scale, format_cell, markdown_table, mean_sem

SHARED_RUNS = "joint-diffusion"  # the ch. 6 tables reuse each other's runs in one folder
NAME = "table-6.6.5"
TITLE = "Table 6.6.5: semi-supervised accuracy of joint diffusion vs a classifier and a pre-trained DDGM head"

PUBLISHED = {  # % by data set and labelled share (Table 6.6.5)
    "svhn": {"classifier": {1.0: 95.1, 0.05: 87.8, 0.01: 75.15}, "pretrained-ddgm": {1.0: 79.6, 0.05: 51.7, 0.01: 66.0},
             "joint": {1.0: 95.4, 0.05: 90.2, 0.01: 76.7}},
    "cifar10": {"classifier": {1.0: 81, 0.05: 46.4, 0.01: 31.5}, "pretrained-ddgm": {1.0: 80.9, 0.05: 75.1, 0.01: 65.3},
                "joint": {1.0: 89.9, 0.05: 78.2, 0.01: 64.7}},
    "cifar100": {"classifier": {1.0: 60.8, 0.1: 22.2, 0.05: 16.6, 0.01: 6.9},
                 "pretrained-ddgm": {1.0: 43.8, 0.1: 33.9, 0.05: 28.8, 0.01: 15.4},
                 "joint": {1.0: 63.6, 0.1: 38.6, 0.05: 21.5, 0.01: 11.5}},
}
SCALES = {"smoke": ("digits", (0.1, 1.0)), "cpu": ("fashion_mnist", (0.01, 0.05, 0.1, 1.0)),
          "paper": ("cifar10", (0.01, 0.05, 1.0))}


def run(*, scale: str, seeds: int = 1, out: str | Path, progress: bool = True, log=print,
        balanced: bool = True) -> dict[str, Any]:
    """Every method and share for seeds 0..seeds−1 into `out`; writes results.json/.md and semisupervised.png."""
    from genrep.runs import write_json

    check_scale(scale)
    dataset, shares = SCALES[scale]
    out = check_inputs(scale=scale, seeds=seeds, out=out, datasets=[(dataset, {})])
    result = run_semisupervised(out, scale=scale, seeds=seeds, dataset=dataset, shares=shares, balanced=balanced,
                                progress=progress, log=log)
    table = results_table(result, seeds)
    footnote = (f"ours: test accuracy in %, mean ± SEM over seeds {list(range(seeds))}, {dataset}, "
                f"{'class-balanced' if balanced else 'random (reference)'} labelled subsets "
                f"[published Table 6.6.5 where the data set has one]; scale `{scale}`.")
    picture = plot_semisupervised(result, out / "semisupervised.png")
    results = {"table": NAME, "scale": scale, "seeds": list(range(seeds)), **result, "published": PUBLISHED,
               "picture": picture.name}
    write_json(out / f"{NAME}.json", results)
    (out / f"{NAME}.md").write_text(f"# {TITLE}\n\n{table}\n\n{footnote}\n\n![accuracy vs labels]({picture.name})\n")
    return {**results, "markdown": f"{table}\n\n{footnote}", "files": [out / f"{NAME}.json", out / f"{NAME}.md"]}


def results_table(result: dict[str, Any], seeds: int) -> str:
    published = PUBLISHED.get(result["dataset"], {})
    rows = []
    for method in METHODS:
        cells = [LABELS[method]]
        for share in result["shares"]:
            cells.append(format_cell(mean_sem(result["values"][method][f"{share:g}"]),
                                     published.get(method, {}).get(share), seeds))
        rows.append(cells)
    return markdown_table(["model", *[f"{share:.0%} labels" for share in result["shares"]]], rows)


def plan(scale: str) -> dict[str, Any]:
    """The resolved settings of every run at `scale` (what `--dry-run` prints), for the smallest share."""
    from genrep.experiments.joint.settings import run_config, scale_of
    from genrep.experiments.reproduce.common import resolved_config

    check_scale(scale)
    dataset, shares = SCALES[scale]
    share, batch = min(shares), scale_of(scale, dataset).batch_size
    data = {"labelled_share": share, "labelled_balanced": True}
    return {"table": NAME, "scale": scale, "dataset": dataset, "shares": list(shares), "runs": {
        "classifier": resolved_config(run_config("classifier", scale, 0, dataset=dataset,
                                                 data={**data, "drop_unlabelled": True})),
        "joint": resolved_config(run_config("joint", scale, 0, dataset=dataset, classifier={"buffer_size": batch},
                                            data=data)),
        "ddgm": resolved_config(run_config("ddgm", scale, 0, dataset=dataset))}}
