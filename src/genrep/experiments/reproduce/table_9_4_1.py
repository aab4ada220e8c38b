"""Thesis Table 9.4.1: average FID / precision / recall (×100) after the last task — or the calorimeter channels'
Wasserstein distance — of Multiband VAE and the generative continual-learning baselines on the same VAE and
runner (`genrep continual multiband|gr-vae|ewc-vae|si-vae`), mean ± SEM over seeds, beside the published values.

Columns: split-MNIST (5 class-incremental tasks), MNIST Dirichlet α = 1 (10 tasks), split-FashionMNIST,
FashionMNIST Dirichlet α = 1 and the calorimeter split by particle energy (5 tasks; genrep's synthetic
calorimeter unless real ZDC files are configured: compare orderings, not values). Rows: SI, EWC, generative
replay, Multiband VAE (thesis: a fresh local VAE per task), Multiband VAE with the reference's warm-started local
model (`local_init=warm`, `cpu` MNIST columns and `paper`) and the convolutional Multiband VAE. VCL, HyperCL,
CURL, Lifelong-VAE and Lifelong-VAEGAN are not implemented (their published values are listed in the footnote).

Scales: `smoke` (the split-digits column only, seconds), `cpu` (2000 training images per task, the published FC
VAE with local 10 + global 20 epochs and 30 epochs per task for the baselines; FID on the cached LeNet of each
data set), `paper` (the published settings; FID on LeNet for MNIST and Inception for FashionMNIST, as the thesis).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrep.experiments.reproduce.common import check_inputs, check_scale, format_cell, markdown_table, mean_sem
from genrep.experiments.reproduce.multiband_cells import SHARED_RUNS, cell, finished_seeds, metric_cells, run_cell

NAME = "table-9.4.1"
TITLE = "Table 9.4.1: continual generative modelling, average FID / Prec / Rec (or channel Wasserstein)"
ROWS = {"si-vae": "SI", "ewc-vae": "EWC", "gr-vae": "Generative replay", "multiband": "Multiband VAE",
        "multiband-warm": "Multiband VAE (reference warm start)", "multiband-conv": "Multiband VAE (conv)",
        "separate-vae": "Separate VAE per task (forward-transfer reference)"}
COLUMNS = ("split-mnist", "dirichlet-mnist", "split-fashion-mnist", "dirichlet-fashion-mnist", "calorimeter-energy")
# (FID, Prec, Rec) per column; Wass for the calorimeter (Table 9.4.1)
PUBLISHED = {
    "si-vae": ((129, 77, 80), (153, 75, 76), (134, 28, 24), (140, 21, 19), (21.1,)),
    "ewc-vae": ((136, 73, 82), (120, 79, 83), (126, 25, 25), (137, 24, 22), (29.7,)),
    "gr-vae": ((120, 79, 87), (254, 70, 65), (96, 43, 58), (133, 35, 43), (11.1,)),
    "multiband": ((24, 94, 97), (41, 92, 96), (61, 66, 69), (82, 62, 65), (6.6,)),
    "multiband-conv": ((23, 92, 98), (30, 92, 97), (56, 65, 72), (77, 58, 69), (8.1,)),
}
NOT_IMPLEMENTED = ("VCL 68/127/104/138 FID, 24.3 Wass; HyperCL 62/148/108/155, 7.8; CURL 107/181/86/83, 16.8; "
                   "Lifelong-VAE 173/224/131/201, 7.7; Lifelong-VAEGAN 48/131/78/108, 15.1 (published, not run here)")
SCALES = {"smoke": ("split-digits",), "cpu": COLUMNS, "paper": COLUMNS}
WARM_COLUMNS = {"smoke": (), "cpu": ("split-mnist", "dirichlet-mnist"), "paper": COLUMNS}
CONV_COLUMNS = {"smoke": (), "cpu": ("dirichlet-mnist",), "paper": COLUMNS}
SEPARATE_COLUMNS = {"smoke": (), "cpu": ("calorimeter-energy",), "paper": ("calorimeter-energy",)}
TRANSFER_ROWS = ("gr-vae", "multiband")  # Fig. 9.4.2: their calorimeter matrices side by side
FIGURE = "fig-9.4.2.png"


def table_cells(scale: str, columns: tuple[str, ...]) -> dict[tuple[str, str], Any]:
    """(row, column) → Cell of this table at `scale`."""
    cells = {}
    for column in columns:
        for row in ROWS:
            if row == "multiband-warm" and column not in WARM_COLUMNS[scale]:
                continue
            if row == "multiband-conv" and column not in CONV_COLUMNS[scale]:
                continue
            if row == "separate-vae" and column not in SEPARATE_COLUMNS[scale]:
                continue
            if row == "multiband-warm":
                cells[row, column] = cell("multiband", column, "multiband-warm", local_init="warm")
            elif row == "multiband-conv":
                cells[row, column] = cell("multiband", column, "multiband-conv", architecture="conv")
            else:
                cells[row, column] = cell(row, column)
    return cells


def run(*, scale: str, seeds: int = 1, out: str | Path, progress: bool = True, log=print,
        columns: tuple[str, ...] | None = None, train: bool = True) -> dict[str, Any]:
    """Every cell for seeds 0..seeds−1 into `out` (shared with the other ch. 9 tables); writes TABLE.json/.md."""
    from genrep.experiments.reproduce.table_8_4_1 import scenario_datasets
    from genrep.runs import write_json

    check_scale(scale)
    columns = tuple(columns or SCALES[scale])
    out = check_inputs(scale=scale, seeds=seeds, out=out, datasets=[(n, {}) for n in scenario_datasets(columns)])
    results = {key: run_cell(c, scale=scale, seeds=seeds, out=out, progress=progress, log=log, train=train)
               for key, c in table_cells(scale, columns).items()}
    table = results_table(results, columns, seeds)
    transfer = transfer_rows(out, table_cells(scale, columns), seeds)
    figure = transfer_figure(out, table_cells(scale, columns)) if "calorimeter-energy" in columns else None
    footnote = (f"ours: average over tasks after the last task, mean ± SEM over the finished seeds of "
                f"{list(range(seeds))} "
                f"[published Table 9.4.1]; precision / recall × 100 (Sajjadi PRD, β = 8); calorimeter: channel "
                f"Wasserstein (pooled log channels) on genrep's synthetic calorimeter unless real files are "
                f"configured — compare orderings only. Scale `{scale}` (module docstring). Not run: "
                f"{NOT_IMPLEMENTED}.")
    if transfer:
        table += "\n\n" + transfer_table(transfer)
    payload = {"table": NAME, "scale": scale, "seeds": list(range(seeds)), "transfer": transfer,
               "figure": None if figure is None else str(figure),
               "cells": {f"{row}|{column}": value for (row, column), value in results.items()},
               "published": {row: dict(zip(COLUMNS, values)) for row, values in PUBLISHED.items()}}
    write_json(out / f"{NAME}.json", payload)
    (out / f"{NAME}.md").write_text(f"# {TITLE}\n\n{table}\n\n{footnote}\n")
    return {**payload, "markdown": f"{table}\n\n{footnote}", "files": [out / f"{NAME}.json", out / f"{NAME}.md"]}


def seed_matrices(out: Path, c, seeds: list[int]) -> list:
    """The main metric's T×T matrix of each of `seeds` of cell `c` (from its results.json)."""
    import json

    import numpy as np

    matrices = []
    for seed in seeds:
        results = json.loads((out / c.key / f"seed{seed}" / "results.json").read_text())
        main = results["main_metric"]
        matrices.append(np.array(results["matrices"][main], dtype=float))
    return matrices


def transfer_rows(out: Path, cells: dict, seeds: int) -> dict[str, dict[str, list[float]]]:
    """Per (row, column) with a separate-VAE reference in that column: per seed the forward transfer (first
    scores against the separate models', `diagonal_transfer`) and the backward transfer, both > 0 = helped."""
    from genrep.continual.generative_eval import transfer_summary

    transfer = {}
    for (row, column), c in cells.items():
        reference = cells.get(("separate-vae", column))
        if row == "separate-vae" or reference is None:
            continue
        common = sorted(set(finished_seeds(out / c.key, seeds)) & set(finished_seeds(out / reference.key, seeds)))
        if not common:
            continue
        pairs = zip(seed_matrices(out, c, common), seed_matrices(out, reference, common))
        values = [transfer_summary(R, R_sep) for R, R_sep in pairs]
        transfer[f"{row}|{column}"] = {k: [v[k] for v in values] for k in ("forward_transfer", "backward_transfer")}
    return transfer


def transfer_table(transfer: dict) -> str:
    rows = [[f"{ROWS[key.split('|')[0]]} ({key.split('|')[1]})",
             format_cell(mean_sem(v["forward_transfer"]), None, len(v["forward_transfer"])),
             format_cell(mean_sem(v["backward_transfer"]), None, len(v["backward_transfer"]))]
            for key, v in transfer.items()]
    return ("Transfer (metric units, > 0 = helped): forward = separate model's first score − the learner's first "
            "score on each task j ≥ 1; backward = the score after the last task − the first score, sign flipped "
            "for lower-is-better metrics.\n\n" + markdown_table(["method", "forward transfer", "backward transfer"],
                                                                rows))


def transfer_figure(out: Path, cells: dict) -> Path | None:
    """Fig. 9.4.2: the calorimeter Wasserstein matrices (seed 0) of generative replay and Multiband VAE side by
    side, rows = after task i, columns = task j."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from genrep.utils.plots import save_figure

    column = "calorimeter-energy"
    present = [(row, cells[row, column]) for row in TRANSFER_ROWS
               if (row, column) in cells and finished_seeds(out / cells[row, column].key, 1)]
    if len(present) < 2:
        return None
    matrices = [seed_matrices(out, c, [0])[0] for _, c in present]
    finite = np.concatenate([m[np.isfinite(m)] for m in matrices])
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 4.2), dpi=110)
    for ax, (row, _), matrix in zip(axes, present, matrices):
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap="viridis_r", vmin=finite.min(), vmax=finite.max())
        for i, j in zip(*np.nonzero(np.isfinite(matrix))):
            ax.text(j, i, f"{matrix[i, j]:.2g}", ha="center", va="center", fontsize=8, color="white")
        ax.set_title(f"{ROWS[row]}: Wasserstein ↓", fontsize=10)
        ax.set_xlabel("task j (energy bin)")
        ax.set_ylabel("after learning task i")
    fig.colorbar(image, ax=list(axes), shrink=0.8)
    return save_figure(fig, out / FIGURE)


def published(row: str, column: str) -> tuple | None:
    values = PUBLISHED.get(row)
    return values[COLUMNS.index(column)] if values and column in COLUMNS else None


def results_table(results: dict, columns: tuple[str, ...], seeds: int) -> str:
    header = ["method"]
    for column in columns:
        header += ([f"{column} Wass ↓"] if column.startswith("calorimeter")
                   else [f"{column} FID ↓", "Prec ↑", "Rec ↑"])
    rows = []
    for row, label in ROWS.items():
        if not any(results.get((row, column)) for column in columns):
            continue
        line = [label]
        for column in columns:
            width = 1 if column.startswith("calorimeter") else 3
            line += metric_cells(results.get((row, column)), published(row, column), width)
        rows.append(line)
    return markdown_table(header, rows)


def plan(scale: str) -> dict[str, Any]:
    """Every cell's method, scenario and settings at `scale` (`--dry-run`), without training."""
    check_scale(scale)
    return {"table": NAME, "scale": scale, "shared_runs": SHARED_RUNS,
            "cells": {f"{row}|{column}": {"folder": c.key, "method": c.method, "scenario": c.scenario,
                                          "overrides": dict(c.overrides)}
                      for (row, column), c in table_cells(scale, SCALES[scale]).items()}}
