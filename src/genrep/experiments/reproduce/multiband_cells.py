"""The cells of the chapter-9 tables (9.4.1, 9.4.2, 9.4.4), shared between them: one `genrep continual` run per
(method, scenario, settings) in OUT/<cell key>/, reused when finished (an interrupted table continues, and the
ablation's first and fifth rows are Table 9.4.1's GR and Multiband cells).

Per-data-set settings are the reference README's (REFERENCE_CODE.md §5.2): MNIST latent 8 + 4 bits; FashionMNIST
latent 12 + 4 bits, local lr 5e-4, reconstruction × 5; controlled forgetting γ = 1 (off) for class-incremental
splits and 0.95 (MNIST) / 0.98 (FashionMNIST) for Dirichlet splits. Every other setting is the method's at the
scale (`genrep continual --help`). Values per cell and seed: average over tasks after the last task of FID,
precision and recall (×100) — or the channel Wasserstein for calorimeter data.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from genrep.experiments.continual import run_method
from genrep.experiments.reproduce.common import format_cell, mean_sem

SHARED_RUNS = "multiband"  # the ch. 9 tables share one folder of runs
DATA_SETTINGS = {  # (data set of the scenario → VAE settings), the reference README
    "fashion": {"latent": 12, "bits": 4, "lr": 5e-4, "recon_scale": 5.0},
}
FORGETTING = {"dirichlet-mnist": 0.95, "dirichlet-fashion-mnist": 0.98}
# the settings a baseline VAE takes from DATA_SETTINGS (all of them); forgetting only for Multiband
PERCENT = ("precision", "recall")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run folder: `method` on `scenario` with `overrides` (on top of the method's scale settings)."""

    key: str
    method: str
    scenario: str
    overrides: tuple[tuple[str, Any], ...] = ()


def data_settings(scenario: str) -> dict[str, Any]:
    return dict(DATA_SETTINGS["fashion"]) if scenario.startswith(("split-fashion", "dirichlet-fashion")) else {}


def cell(method: str, scenario: str, label: str = "", **extra: Any) -> Cell:
    """The cell of `method` on `scenario` with the data set's README settings, controlled forgetting as the README
    for Multiband rows (`FORGETTING`; γ = 1 elsewhere), and `extra` settings; `label` names ablation variants."""
    overrides = data_settings(scenario)
    if method == "multiband":
        overrides["forgetting_threshold"] = FORGETTING.get(scenario, 1.0)
    overrides.update(extra)
    key = f"{label or method}-{scenario}"
    return Cell(key, method, scenario, tuple(sorted(overrides.items())))


def finished_seeds(folder: Path, seeds: int) -> list[int]:
    """The seeds among 0..seeds−1 whose run in `folder` has finished every task."""
    import json

    done = []
    for seed in range(seeds):
        path = folder / f"seed{seed}" / "results.json"
        if path.is_file():
            results = json.loads(path.read_text())
            if results.get("tasks_finished") == len(results.get("tasks", ())):
                done.append(seed)
    return done


def run_cell(c: Cell, *, scale: str, seeds: int, out: Path, progress: bool = False, log=print,
             train: bool = True) -> dict[str, Any] | None:
    """Run (or reuse) the cell's seeds 0..seeds−1; per metric the per-seed averages after the last task (×100 for
    precision and recall). `train=False`: only the seeds already finished (None if there is none)."""
    chosen: int | list[int] = seeds if train else finished_seeds(out / c.key, seeds)
    if not chosen:
        log(f"{c.key}: no finished seed in {out / c.key}; left out")
        return None
    log(f"{c.key}: {c.method} on {c.scenario} ({scale}, seeds {chosen}) → {out / c.key}")
    summary = run_method(c.method, c.scenario, scale=scale, seeds=chosen, out=out / c.key, resume=True,
                         overrides=dict(c.overrides), progress=progress, log=None)
    values = {m: [(100 if m in PERCENT else 1) * r["averages"][m] for r in summary["per_seed"]]
              for m in summary["averages"]}
    shown = ", ".join(f"{m} {mean_sem(v)[0]:.3g}" for m, v in values.items())
    log(f"  {shown}")
    return {"values": values, "settings": summary["settings"], "memory_mb": summary["memory_mb"],
            "wall_time_s": [r["wall_time_s"] for r in summary["per_seed"]],
            "backward_transfer": [r["backward_transfer"] for r in summary["per_seed"]]}


def metric_cells(result: dict[str, Any] | None, published: tuple | None, width: int) -> list[str]:
    """The `width` table cells of one (row, column): FID, Prec, Rec (or Wass) as "ours ± SEM [published]" (± with
    several seeds); "—" for a cell without a finished run."""
    published = published or (None,) * width
    if result is None:
        return [format_cell(None, p, 1) for p in published]
    values = result["values"]
    return [format_cell(mean_sem(values[m]), p, len(values[m])) for m, p in zip(values, published)]
