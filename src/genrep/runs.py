"""Run folders: one folder per run with its resolved config, checkpoints, logs, pictures and report.

Layout::

    RUN/config.yaml            resolved configuration (reloadable with --config)
    RUN/checkpoints/last.ckpt  atomic training checkpoint (resume)
    RUN/model.safetensors      final weights
    RUN/metrics.jsonl          one JSON object per logged step
    RUN/tensorboard/           TensorBoard events
    RUN/samples/*.png          sample grids
    RUN/summary.json           final figures
    RUN/report.md              short report embedding the pictures
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from genrep.errors import ConfigError, RunExistsError


def prepare_run_dir(path: str | Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Create the run folder; an existing non-empty one needs `resume` (keep) or `overwrite` (wipe)."""
    path = Path(path)
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume exclude each other")
    if resume:
        if not (path / "config.yaml").is_file():
            raise RunExistsError(f"cannot resume: {path} is not a run folder (no config.yaml)")
        return path
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise RunExistsError(f"run folder {path} exists; pass --overwrite to replace it or --resume to continue it")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Atomic JSON write."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def write_report(run_dir: str | Path, *, title: str, summary: dict[str, Any], pictures: list[tuple[str, Path]],
                 notes: str = "") -> Path:
    """A short Markdown report: the summary as a table and the pictures embedded by their path relative
    to the report itself (`pictures` may be absolute or relative to the working directory)."""
    run_dir = Path(run_dir)
    lines = [f"# {title}", ""]
    if notes:
        lines += [notes, ""]
    lines += ["| quantity | value |", "|---|---|"]
    for key, value in summary.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"| {key} | {shown} |")
    for caption, picture in pictures:
        rel = Path(os.path.relpath(Path(picture).resolve(), run_dir.resolve())).as_posix()
        lines += ["", f"## {caption}", "", f"![{caption}]({rel})"]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
