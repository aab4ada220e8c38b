"""Thesis Table 9.4.4: the ablation of Multiband VAE on MNIST Dirichlet α = 1 (10 tasks), average FID after the last
task. Each row switches on one part on top of the row above (one setting each, `MultibandSettings`):

    Generative replay          gr-vae: one phase of VAE + frozen-copy replay, z = [λ, code], no bits, γ = 1
    + Two step training        two_step: local VAE, then global translator-less decoder with replay
    + Translator               translator: t_ρ(λ, b, task) → z
    + Binary latent space      binary_latent: the 4 Gumbel bits with a per-task prior
    + Controlled forgetting    forgetting_threshold 0.95 (the README's Dirichlet value)
    + Convolutional model      architecture conv

The first and fifth rows are Table 9.4.1's GR and Multiband cells on this column (one shared run folder).
Scales as Table 9.4.1 (`smoke`: split-digits).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrep.experiments.reproduce.common import check_inputs, check_scale, markdown_table
from genrep.experiments.reproduce.multiband_cells import SHARED_RUNS, Cell, cell, metric_cells, run_cell

NAME = "table-9.4.4"
TITLE = "Table 9.4.4: ablation of Multiband VAE on MNIST Dirichlet α = 1, average FID after the last task"
PUBLISHED = {"gr": 254, "two-step": 64, "translator": 53, "binary": 44, "forgetting": 41, "conv": 30}
LABELS = {"gr": "Generative replay", "two-step": "+ Two step training", "translator": "+ Translator",
          "binary": "+ Binary latent space", "forgetting": "+ Controlled forgetting", "conv": "+ Convolutional model"}
SCALES = {"smoke": "split-digits", "cpu": "dirichlet-mnist", "paper": "dirichlet-mnist"}


def ablation_cells(scenario: str) -> dict[str, Cell]:
    """Row → Cell; each row adds exactly one setting to the previous one."""
    off = {"translator": False, "binary_latent": False, "forgetting_threshold": 1.0}
    return {
        "gr": cell("gr-vae", scenario),
        "two-step": cell("multiband", scenario, "ablation-two-step", **off),
        "translator": cell("multiband", scenario, "ablation-translator", **{**off, "translator": True}),
        "binary": cell("multiband", scenario, "ablation-binary", forgetting_threshold=1.0),
        "forgetting": cell("multiband", scenario),
        "conv": cell("multiband", scenario, "multiband-conv", architecture="conv"),
    }


def run(*, scale: str, seeds: int = 1, out: str | Path, progress: bool = True, log=print,
        rows: tuple[str, ...] | None = None, train: bool = True) -> dict[str, Any]:
    """Every row for seeds 0..seeds−1 into `out` (shared with the other ch. 9 tables); writes TABLE.json/.md."""
    from genrep.experiments.reproduce.table_8_4_1 import scenario_datasets
    from genrep.runs import write_json

    check_scale(scale)
    scenario = SCALES[scale]
    out = check_inputs(scale=scale, seeds=seeds, out=out, datasets=[(n, {}) for n in scenario_datasets((scenario,))])
    cells = ablation_cells(scenario)
    results = {row: run_cell(cells[row], scale=scale, seeds=seeds, out=out, progress=progress, log=log, train=train)
               for row in (rows or tuple(cells))}
    table = markdown_table(["modification", f"FID ↓ ({scenario})", "Prec ↑", "Rec ↑"], [
        [LABELS[row], *metric_cells(r, (PUBLISHED[row], None, None), 3)] for row, r in results.items()])
    footnote = (f"ours: average over the 10 tasks after the last one, mean ± SEM over seeds {list(range(seeds))} "
                f"[published Table 9.4.4 FID]; each row adds one setting to the row above (module docstring); "
                f"scale `{scale}`.")
    payload = {"table": NAME, "scale": scale, "seeds": list(range(seeds)), "scenario": scenario, "cells": results,
               "published": PUBLISHED}
    write_json(out / f"{NAME}.json", payload)
    (out / f"{NAME}.md").write_text(f"# {TITLE}\n\n{table}\n\n{footnote}\n")
    return {**payload, "markdown": f"{table}\n\n{footnote}", "files": [out / f"{NAME}.json", out / f"{NAME}.md"]}


def plan(scale: str) -> dict[str, Any]:
    check_scale(scale)
    return {"table": NAME, "scale": scale, "shared_runs": SHARED_RUNS,
            "rows": {row: {"folder": c.key, "method": c.method, "scenario": c.scenario, "overrides": dict(c.overrides)}
                     for row, c in ablation_cells(SCALES[scale]).items()}}
