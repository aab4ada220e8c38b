"""Thesis Table 9.4.2: average FID / precision / recall (×100) after the last task on Omniglot and on data-set
sequences (FashionMNIST → MNIST and MNIST → FashionMNIST, 10 class-incremental tasks of two classes), for
Multiband VAE and the baselines on the same VAE, mean ± SEM over seeds, beside the published values.

`cpu` runs the two sequence columns (the MNIST / FashionMNIST columns of the issue; each task is scored with the
LeNet of its own data set, since every task holds one data set); `paper` adds the Omniglot columns (5 and 20
class-incremental tasks, Dirichlet α = 1 with 20 tasks), which need the Omniglot files
(`genrep data download omniglot`), with Inception features for the sequences as the thesis. `smoke`: split-digits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrep.experiments.reproduce.common import check_inputs, check_scale, markdown_table
from genrep.experiments.reproduce.multiband_cells import SHARED_RUNS, cell, metric_cells, run_cell

NAME = "table-9.4.2"
TITLE = "Table 9.4.2: Omniglot and data-set sequences, average FID / Prec / Rec"
ROWS = {"si-vae": "SI", "ewc-vae": "EWC", "gr-vae": "Generative replay", "multiband": "Multiband VAE"}
COLUMNS = ("split-omniglot", "split-omniglot-20", "dirichlet-omniglot", "fashion-mnist-mnist-10",
           "mnist-fashion-mnist-10")
PUBLISHED = {
    "si-vae": ((48, 87, 81), (115, 64, 28), (140, 18, 16), (146, 18, 15), (157, 21, 19)),
    "ewc-vae": ((46, 88, 81), (106, 68, 31), (106, 74, 38), (119, 72, 30), (133, 25, 23)),
    "gr-vae": ((45, 88, 82), (74, 72, 62), (92, 75, 53), (99, 36, 45), (111, 24, 39)),
    "multiband": ((21, 97, 93), (33, 95, 86), (41, 95, 83), (51, 65, 70), (49, 67, 73)),
}
SCALES = {"smoke": ("split-digits",), "cpu": COLUMNS[3:], "paper": COLUMNS}
# the Omniglot command of the README: latent 16 + 12 bits, a 6-bit task code (p = 13), reconstruction × 10, γ = 1
OMNIGLOT = {"latent": 16, "bits": 12, "code_bits": 6, "code_p": 13, "recon_scale": 10.0}
SEQUENCE = {"latent": 12, "bits": 4, "gamma": 0.99, "recon_scale": 3.0}  # the README's DoubleMNIST command


def column_cell(row: str, column: str):
    """The cell of `row` on `column` with the README's settings of that data set."""
    settings = OMNIGLOT if "omniglot" in column else SEQUENCE if "mnist-10" in column else {}
    return cell(row, column, **settings)


def run(*, scale: str, seeds: int = 1, out: str | Path, progress: bool = True, log=print,
        columns: tuple[str, ...] | None = None, train: bool = True) -> dict[str, Any]:
    """Every cell for seeds 0..seeds−1 into `out` (shared with the other ch. 9 tables); writes TABLE.json/.md."""
    from genrep.experiments.reproduce.table_8_4_1 import scenario_datasets
    from genrep.runs import write_json

    check_scale(scale)
    columns = tuple(columns or SCALES[scale])
    out = check_inputs(scale=scale, seeds=seeds, out=out, datasets=[(n, {}) for n in scenario_datasets(columns)])
    results = {(row, column): run_cell(column_cell(row, column), scale=scale, seeds=seeds, out=out,
                                       progress=progress, log=log, train=train) for column in columns for row in ROWS}
    header = ["method"] + [h for column in columns for h in (f"{column} FID ↓", "Prec ↑", "Rec ↑")]
    rows = [[label] + [v for column in columns for v in metric_cells(
        results[row, column], PUBLISHED[row][COLUMNS.index(column)] if column in COLUMNS else None, 3)]
        for row, label in ROWS.items()]
    table = markdown_table(header, rows)
    footnote = (f"ours: average over tasks after the last task, mean ± SEM over the finished seeds of "
                f"{list(range(seeds))} "
                f"[published Table 9.4.2]; scale `{scale}` (module docstring).")
    payload = {"table": NAME, "scale": scale, "seeds": list(range(seeds)),
               "cells": {f"{row}|{column}": value for (row, column), value in results.items()}}
    write_json(out / f"{NAME}.json", payload)
    (out / f"{NAME}.md").write_text(f"# {TITLE}\n\n{table}\n\n{footnote}\n")
    return {**payload, "markdown": f"{table}\n\n{footnote}", "files": [out / f"{NAME}.json", out / f"{NAME}.md"]}


def plan(scale: str) -> dict[str, Any]:
    check_scale(scale)
    cells = {f"{row}|{column}": column_cell(row, column) for column in SCALES[scale] for row in ROWS}
    return {"table": NAME, "scale": scale, "shared_runs": SHARED_RUNS,
            "cells": {key: {"folder": c.key, "method": c.method, "scenario": c.scenario, "overrides": dict(c.overrides)}
                      for key, c in cells.items()}}
