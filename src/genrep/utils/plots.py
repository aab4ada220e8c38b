"""Plots written into run folders (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from genrep.utils.files import output_file, writing  # noqa: E402


def save_figure(fig, path: str | Path) -> Path:
    """Write `fig` to `path` (parent folders created; OutputError naming the path if it cannot be
    written) and close it either way."""
    try:
        with writing(output_file(path)):
            fig.savefig(path)
    finally:
        plt.close(fig)
    return Path(path)


def plot_training_curves(metrics_path: str | Path, out: str | Path) -> Path | None:
    """Loss (and validation loss) against step from metrics.jsonl; None if there is nothing to plot."""
    metrics_path = Path(metrics_path)
    if not metrics_path.is_file():
        return None
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if not train:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=110)
    ax.plot(*zip(*train), label="train loss")
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        with writing(output_file(out)):
            fig.savefig(out)
    finally:
        plt.close(fig)
    return Path(out)
