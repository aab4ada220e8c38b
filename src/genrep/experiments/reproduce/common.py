"""Shared machinery of the `genrep reproduce` recipes: scales, reusable training runs, and tables
of our mean ± std over seeds beside the published values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genrep.errors import ConfigError

SCALES = ("smoke", "cpu", "paper")


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ConfigError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
    return scale


def train_or_reuse(raw_config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Train the run described by `raw_config` (a RunConfig as a nested dict) into `run_dir`, or
    reuse the finished run there when its stored config is the same (so an interrupted reproduce
    continues where it stopped); returns the run's summary."""
    import json

    from genrep.config import to_dict
    from genrep.experiments.run_config import run_config_from_dict
    from genrep.experiments.train import load_run_config, train_run

    cfg = run_config_from_dict(raw_config)
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        try:
            same = to_dict(load_run_config(run_dir)) == to_dict(cfg)
        except Exception:  # an unreadable old config: train again
            same = False
        if same:
            return json.loads(summary_path.read_text())
    return train_run(cfg, run_dir, overwrite=True)


def mean_std(values: Sequence[float | None]) -> tuple[float, float] | None:
    """(mean, sample std; 0 for one value) of the non-None values, or None if there are none."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def format_cell(stats: tuple[float, float] | None, published: float | None, n_seeds: int) -> str:
    """"ours ± std [published]" (± only with several seeds); "—" where a value does not exist."""
    ours = "—" if stats is None else (f"{stats[0]:.2f} ± {stats[1]:.2f}" if n_seeds > 1 else f"{stats[0]:.2f}")
    return ours if published is None else f"{ours} [{published:g}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
