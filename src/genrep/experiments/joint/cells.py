"""Training the runs of the joint diffusion tables into one folder layout, reused when finished:
OUT/seed{S}/{KIND}[-{DATASET}][-{TAG}] (see `settings.KINDS`; the data set is named when it is not
the scale's own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrep.experiments.joint.settings import run_config, scale_of
from genrep.experiments.reproduce.common import train_or_reuse


def cell_dir(out: Path, kind: str, scale: str, seed: int, *, dataset: str | None = None,
             tag: str | None = None) -> Path:
    named = dataset if dataset not in (None, scale_of(scale).dataset) else None
    return Path(out) / f"seed{seed}" / "-".join(part for part in (kind, named, tag) if part)


def train_cell(out: Path, kind: str, scale: str, seed: int, *, dataset: str | None = None, tag: str | None = None,
               log=None, progress: bool = False, **config_options) -> tuple[Path, dict[str, Any]]:
    """Train (or reuse) one run of `kind` (`settings.run_config` with `config_options`); returns
    (run folder, summary)."""
    run_dir = cell_dir(out, kind, scale, seed, dataset=dataset, tag=tag)
    if log is not None:
        log(f"[seed {seed}] {run_dir.name}: training → {run_dir}")
    raw = run_config(kind, scale, seed, dataset=dataset, progress=progress, **config_options)
    return run_dir, train_or_reuse(raw, run_dir)
