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


def check_seeds(seeds: int) -> int:
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"--seeds must be an integer >= 1, got {seeds!r}")
    return seeds


def check_readable(option: str, path: str | Path) -> Path:
    """`path` (a file or folder given as `option`, e.g. "--calorimeter-path") exists and can be
    read; else DataError naming the option, the path and the reason."""
    import os

    from genrep.errors import DataError

    found = Path(path).expanduser()
    if not found.exists():
        raise DataError(f"{option} {path} does not exist")
    try:
        if found.is_dir():
            os.listdir(found)
        else:
            with open(found, "rb") as f:
                f.read(1)
    except OSError as err:
        raise DataError(f"{option} {path} cannot be read: {err.strerror or err}") from None
    return found


def check_output_folder(out: str | Path) -> Path:
    """Create the results folder `out` and check that a file can be written in it; OutputError
    "cannot write OUT: reason" otherwise."""
    import tempfile

    from genrep.utils.files import output_dir, writing

    out = output_dir(out)
    with writing(out):
        with tempfile.TemporaryFile(dir=out):
            pass
    return out


def check_dataset(name: str, **options) -> None:
    """Load the test split of data set `name` (with source `options`, e.g. path=) so that a missing
    source or an unreadable or malformed file fails now, before any training (the offline sources
    cache what they read, so this costs little)."""
    from genrep.data import load_dataset
    from genrep.errors import DataError

    try:
        load_dataset(name, "test", **options)
    except OSError as err:
        where = options.get("path") or name
        raise DataError(f"{name}: cannot read {where}: {err.strerror or err}") from None


def check_inputs(*, scale: str, seeds: int, out: str | Path, paths: dict[str, str | Path | None] | None = None,
                 datasets: Sequence[tuple[str, dict[str, Any]]] = ()) -> Path:
    """Every input of a recipe, checked before it trains anything: the scale, the number of seeds,
    each given path (`paths`: option name → path or None), the results folder (created, writable;
    returned) and each data set (`datasets`: (name, source options), see `check_dataset`)."""
    check_scale(scale)
    check_seeds(seeds)
    for option, path in (paths or {}).items():
        if path is not None:
            check_readable(option, path)
    out = check_output_folder(out)
    for name, options in datasets:
        check_dataset(name, **options)
    return out


def train_or_reuse(raw_config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Train the run described by `raw_config` (a RunConfig as a nested dict) into `run_dir`, or
    reuse the finished run there when its stored config is the same, or resume it from its checkpoint
    when it was stopped (Ctrl-C after a checkpoint, SIGTERM / SIGUSR1), so an interrupted reproduce
    continues where it stopped; returns the run's summary."""
    import json

    from genrep.config import to_dict
    from genrep.experiments.run_config import run_config_from_dict
    from genrep.experiments.train import load_run_config, train_run

    cfg = run_config_from_dict(raw_config)
    try:
        same = to_dict(load_run_config(run_dir)) == to_dict(cfg)
    except Exception:  # no run there, or an unreadable old config: train again
        same = False
    if same and (run_dir / "summary.json").is_file():
        return json.loads((run_dir / "summary.json").read_text())
    if same and (run_dir / "checkpoints" / "last.ckpt").is_file():
        return train_run(cfg, run_dir, resume=True)
    return train_run(cfg, run_dir, overwrite=True)


def mean_std(values: Sequence[float | None]) -> tuple[float, float] | None:
    """(mean, sample std; 0 for one value) of the non-None values, or None if there are none."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def mean_sem(values: Sequence[float | None]) -> tuple[float, float] | None:
    """(mean, standard error of the mean; 0 for one value) of the non-None values, or None."""
    stats = mean_std(values)
    n = sum(v is not None for v in values)
    return None if stats is None else (stats[0], stats[1] / math.sqrt(n))


def format_cell(stats: tuple[float, float] | None, published: float | None, n_seeds: int) -> str:
    """"ours ± spread [published]" (stats = (mean, std or SEM); ± only with several seeds); "—" where a
    value does not exist."""
    ours = "—" if stats is None else (f"{stats[0]:.2f} ± {stats[1]:.2f}" if n_seeds > 1 else f"{stats[0]:.2f}")
    return ours if published is None else f"{ours} [{published:g}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def resolved_config(raw_config: dict[str, Any]) -> dict[str, Any]:
    """A cell's RunConfig with every default filled in (what `--dry-run` prints), as a plain dict."""
    from genrep.config import to_dict
    from genrep.experiments.run_config import run_config_from_dict

    return to_dict(run_config_from_dict(raw_config))
