"""Thesis Tables 8.4.1 and 8.4.2: average accuracy after the last task of class-incremental split
benchmarks (5 tasks {0,1} … {8,9}), mean ± SEM over seeds, and memory in MB, for BinPlay and the
replay baselines run by the same runner.

Each cell is `genrep continual METHOD --scenario S --scale SCALE --seeds N` into
OUT/METHOD-S/ (reused when it is finished: an interrupted table continues). Scales are those of
`genrep.experiments.continual`: `smoke` (300 images per task), `cpu` (full data, BinPlay with a
narrower decoder and fewer epochs), `paper` (the published settings; split-cifar10 needs the CIFAR-10
files). Every method of a scale uses the same base classifier: LeNet-5 (ours) at `smoke` / `cpu`, the
reference's LeNetG at `paper`. Published values: Table 8.4.1 (GR and GR + distill are the thesis'
citations of Shin et al. 2017 and van de Ven & Tolias 2019; ER of Chaudhry et al. 2019 with a
100-sample buffer); the memory column is Table 8.4.2 with its convention for every method (`MEMORY_NOTE`):
MiB of what the method keeps to replay — BinPlay's decoder and index ranges, GR's VAE, ER's buffer,
joint training's stored data, nothing for fine-tuning — not the classifier, which every method has.
Fine-tuning and joint training are our lower and upper bounds and have no published value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrep.experiments.continual import mean_sem, run_method
from genrep.experiments.reproduce.common import check_inputs, check_scale, markdown_table

NAME = "table-8.4.1"
TITLE = "Tables 8.4.1 / 8.4.2: class-incremental accuracy and memory of BinPlay and replay baselines"

METHODS = ("binplay", "gr-distill", "gr", "er", "finetune", "joint")
LABELS = {"binplay": "BinPlay", "gr-distill": "GR + distill", "gr": "GR", "er": "ER (100 samples)",
          "finetune": "fine-tuning (lower bound)", "joint": "joint training (upper bound)"}
PROTOCOL_NOTE = ("Every row trains under the shared-classifier protocol (`--protocol shared`: one base classifier "
                 "and schedule for all methods); the published GR / GR + distill values come from van de Ven & "
                 "Tolias' own protocol, which `genrep continual gr|gr-distill --protocol van-de-ven` runs "
                 "(benchmarks/RESULTS.md).")
MEMORY_NOTE = ("memory: MiB of what the method keeps to replay (BinPlay: decoder + index ranges; GR: the VAE; "
               "ER: the buffer; joint: all data seen; fine-tuning: none), not the classifier every method has")
SCALES = {"smoke": ("split-mnist",), "cpu": ("split-mnist", "split-fashion-mnist"),
          "paper": ("split-mnist", "split-fashion-mnist", "split-cifar10")}
# (accuracy % mean, SEM) per scenario, Table 8.4.1
PUBLISHED_ACCURACY = {
    "binplay": {"split-mnist": (97.2, 0.6), "split-fashion-mnist": (81.4, 0.9), "split-cifar10": (63.3, 1.4)},
    "gr-distill": {"split-mnist": (95.6, 0.2), "split-fashion-mnist": (78.1, 1.0), "split-cifar10": (28.4, 0.3)},
    "gr": {"split-mnist": (92.5, 0.5), "split-fashion-mnist": (68.0, 0.9), "split-cifar10": (27.3, 1.3)},
    "er": {"split-mnist": (84.5, 1.6), "split-fashion-mnist": (70.2, 1.7), "split-cifar10": (41.3, 1.9)},
}
# MB, Table 8.4.2
PUBLISHED_MEMORY = {
    "binplay": {"split-mnist": 4.6, "split-fashion-mnist": 4.6, "split-cifar10": 21.0},
    "gr-distill": {"split-mnist": 4.4, "split-fashion-mnist": 15.6, "split-cifar10": 32.3},
    "gr": {"split-mnist": 4.4, "split-fashion-mnist": 15.6, "split-cifar10": 32.3},
    "er": {"split-mnist": 0.7, "split-fashion-mnist": 0.7, "split-cifar10": 2.9},
}


def run(*, scale: str, seeds: int = 1, out: str | Path, progress: bool = True, log=print,
        methods: tuple[str, ...] = METHODS, scenarios: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Every (method, scenario) cell for seeds 0..seeds−1 into `out`; writes results.json/.md there."""
    from genrep.runs import write_json

    check_scale(scale)
    scenarios = tuple(scenarios or SCALES[scale])
    data = [(name, {}) for name in scenario_datasets(scenarios)]
    out = check_inputs(scale=scale, seeds=seeds, out=out, datasets=data)
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for scenario in scenarios:
        for method in methods:
            log(f"{method} on {scenario} ({scale}, {seeds} seed(s)) → {out / f'{method}-{scenario}'}")
            summary = run_method(method, scenario, scale=scale, seeds=seeds, out=out / f"{method}-{scenario}",
                                 resume=True, progress=progress, log=None)
            accuracy = [100 * r["average_accuracy"] for r in summary["per_seed"]]
            cells.setdefault(method, {})[scenario] = {
                "accuracy": accuracy, "memory_mb": summary["memory_mb"],
                "wall_time_s": [r["wall_time_s"] for r in summary["per_seed"]]}
            mean, sem = mean_sem(accuracy)
            log(f"  {LABELS[method]}: {mean:.1f} ± {sem:.1f} %, {summary['memory_mb']:.2f} MB")
    table = results_table(cells, methods, scenarios)
    footnote = (f"ours: average accuracy after the last task in %, mean ± SEM over seeds {list(range(seeds))} "
                f"[published Table 8.4.1]; {MEMORY_NOTE} [published Table 8.4.2, MB]; wall time: mean seconds per run "
                f"on this machine. Scale `{scale}`: see `genrep continual --help`. {PROTOCOL_NOTE}")
    results = {"table": NAME, "scale": scale, "seeds": list(range(seeds)), "cells": cells,
               "published_accuracy": PUBLISHED_ACCURACY, "published_memory": PUBLISHED_MEMORY}
    write_json(out / "results.json", results)
    (out / "results.md").write_text(f"# {TITLE}\n\n{table}\n\n{footnote}\n")
    return {**results, "markdown": f"{table}\n\n{footnote}"}


def scenario_datasets(scenarios: tuple[str, ...]) -> list[str]:
    """The data sets the scenarios read (ConfigError for an unknown scenario), each once."""
    from genrep.continual.scenarios import SCENARIOS
    from genrep.errors import ConfigError

    names: list[str] = []
    for scenario in scenarios:
        if scenario not in SCENARIOS:
            raise ConfigError(f"unknown scenario {scenario!r}; valid names: {', '.join(SCENARIOS)}")
        fixed = SCENARIOS[scenario][1]
        for name in (fixed["dataset"],) if "dataset" in fixed else fixed.get("datasets", ()):
            if name not in names:
                names.append(name)
    return names


def results_table(cells, methods, scenarios) -> str:
    header = ["method"] + [f"{s} {what}" for s in scenarios for what in ("accuracy %", "memory MB", "time s")]
    rows = []
    for method in methods:
        row = [LABELS[method]]
        for scenario in scenarios:
            cell = cells.get(method, {}).get(scenario)
            published = PUBLISHED_ACCURACY.get(method, {}).get(scenario)
            memory = PUBLISHED_MEMORY.get(method, {}).get(scenario)
            if cell is None:
                row += ["—", "—", "—"]
                continue
            mean, sem = mean_sem(cell["accuracy"])
            ours = f"{mean:.1f} ± {sem:.1f}" if len(cell["accuracy"]) > 1 else f"{mean:.1f}"
            row.append(ours + (f" [{published[0]} ± {published[1]}]" if published else ""))
            row.append(f"{cell['memory_mb']:.2f}" + (f" [{memory}]" if memory is not None else ""))
            row.append(f"{sum(cell['wall_time_s']) / len(cell['wall_time_s']):.0f}")
        rows.append(row)
    return markdown_table(header, rows)


def plan(scale: str) -> dict[str, Any]:
    """Every method's resolved learner settings at `scale` (what `--dry-run` prints), without training;
    the same settings serve every scenario of the scale."""
    import dataclasses

    from genrep.experiments.continual import learner_settings

    check_scale(scale)
    return {"table": NAME, "scale": scale, "scenarios": list(SCALES[scale]),
            "methods": {method: dataclasses.asdict(learner_settings(method, scale)) for method in METHODS}}
