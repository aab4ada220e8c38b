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
from pathlib import Path
from typing import Any

from genrep.errors import ConfigError, RunExistsError
from genrep.utils.files import atomic_write, output_dir, output_file, writing
from genrep.utils.locks import empty_folder


def prepare_run_dir(path: str | Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Create the run folder; an existing non-empty one needs `resume` (keep) or `overwrite` (wipe)."""
    path = Path(path)
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume exclude each other")
    if resume:
        if not (path / "config.yaml").is_file():
            raise RunExistsError(f"cannot resume: {path} is not a run folder (no config.yaml)")
        return path
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise RunExistsError(f"run folder {path} exists; pass --overwrite to replace it or --resume to continue it")
        with writing(path):
            empty_folder(path)  # the folder itself stays: it may hold this process's lock (genrep.utils.locks)
    return output_dir(path)


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Atomic JSON write (parent folders created); OutputError "cannot write PATH: reason" when the
    file system refuses."""
    text = json.dumps(data, indent=2, default=float) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_json(path: str | Path, *, what: str = "JSON file") -> Any:
    """The JSON document in `path`; ConfigError naming the file (and the line of the syntax error)
    when it is missing, unreadable or not valid JSON."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {what} {path}: {getattr(err, 'strerror', None) or err}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{what} {path} is corrupted: not valid JSON (line {err.lineno}, column {err.colno}:"
                          f" {err.msg}); restore it from a copy or retrain the run") from None


def read_data_spec(run_dir: str | Path) -> Any:
    """The `DataSpec` in RUN/data_spec.json (image shape, value range, classes/conditions the model
    was built for); ConfigError naming the file when it is missing, corrupted or ill-typed."""
    from genrep.config import from_dict
    from genrep.data import DataSpec

    path = Path(run_dir) / "data_spec.json"
    raw = read_json(path, what="run data spec")
    if not isinstance(raw, dict):
        raise ConfigError(f"run data spec {path} is corrupted: it holds a {type(raw).__name__}, not a JSON object")
    try:
        return from_dict(DataSpec, raw)
    except ConfigError as err:
        raise ConfigError(f"run data spec {path} is corrupted: {err}") from None


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
    with writing(output_file(path)):
        path.write_text("\n".join(lines) + "\n")
    return path
