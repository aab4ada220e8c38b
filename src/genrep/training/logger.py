"""Metrics of a run: `run_dir/metrics.jsonl` (one JSON object per event) and TensorBoard events
in `run_dir/tensorboard`. The trainer creates it on global rank 0 only."""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter


class MetricsLogger:
    """Appends one JSON line per `log(record)` to `run_dir/metrics.jsonl` (flushed at once) and
    writes every numeric value except step/epoch/time as a TensorBoard scalar at `record["step"]`.

    With `resume_step` the lines with `step > resume_step` (written after the checkpoint a run
    resumes from) are dropped first, and TensorBoard purges its events after that step, so the
    files match those of an uninterrupted run apart from the times.
    """

    NOT_SCALARS = ("step", "epoch", "time")

    def __init__(self, run_dir: str | Path, *, resume_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        if resume_step is not None:
            self.truncate_after(resume_step)
        self._file = open(self.path, "a", encoding="utf-8")
        purge = None if resume_step is None else resume_step + 1
        self._writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=purge)

    def truncate_after(self, step: int) -> None:
        """Rewrite metrics.jsonl keeping only complete lines whose step is <= `step`."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
            if record.get("step", 0) <= step:
                kept.append(line + "\n")
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, self.path)

    def log(self, record: dict) -> None:
        """Write one event: a dict with "step" and JSON-serialisable values (floats for metrics)."""
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        step = record["step"]
        for key, value in record.items():
            if key not in self.NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        """Flush and close both files."""
        self._file.close()
        self._writer.close()
