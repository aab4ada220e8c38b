"""Pictures of a continual-learning run: the task × time matrix as an annotated heatmap, and the
metric on every task against the number of tasks learned. Matplotlib, Agg."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _arrow(higher_is_better: bool) -> str:
    return "↑" if higher_is_better else "↓"


def plot_heatmap(matrix: np.ndarray, out: str | Path, *, metric: str = "accuracy",
                 task_names: Sequence[str] | None = None, higher_is_better: bool = True, title: str = "") -> Path:
    """Heatmap of `matrix` (k×T, k ≤ T rows finished: `matrix[i, j]` = metric on task j after
    learning tasks 0..i) with the value written in every cell. Rows "after task i", columns
    "task j"; the diagonal (each task just after it was learned) is outlined. Better values are
    brighter (the colour map is reversed when lower is better); [0, 1] metrics use a 0–1 scale."""
    matrix = np.asarray(matrix, dtype=np.float64)
    k, T = matrix.shape
    names = list(task_names) if task_names is not None else [str(j) for j in range(T)]
    finite = matrix[np.isfinite(matrix)]
    unit = finite.size > 0 and finite.min() >= 0.0 and finite.max() <= 1.0
    vmin, vmax = (0.0, 1.0) if unit or finite.size == 0 else (finite.min(), finite.max())
    cmap = plt.get_cmap("viridis" if higher_is_better else "viridis_r")

    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 + 0.9 * T), max(2.5, 1.4 + 0.7 * k)), dpi=120)
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    norm = image.norm
    for i in range(k):
        for j in range(T):
            value = matrix[i, j]
            if not np.isfinite(value):
                continue
            r, g, b_, _ = cmap(norm(value))
            color = "black" if 0.299 * r + 0.587 * g + 0.114 * b_ > 0.5 else "white"
            ax.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=9, color=color)
        if i < T:
            ax.add_patch(plt.Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
    long_names = max(map(len, names)) > 3
    ax.set_xticks(range(T), names, rotation=30 if long_names else 0, ha="right" if long_names else "center",
                  fontsize=9)
    ax.set_yticks(range(k), [f"after {names[i]}" for i in range(k)], fontsize=9)
    ax.set_xlabel("task j (evaluated)")
    ax.set_ylabel("after learning tasks 0..i")
    fig.colorbar(image, ax=ax, label=f"{metric}  {_arrow(higher_is_better)}")
    ax.set_title(title or f"{metric} on task j after learning task i (red: just learned)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)


def plot_curves(matrix: np.ndarray, out: str | Path, *, initial: np.ndarray | None = None,
                metric: str = "accuracy", task_names: Sequence[str] | None = None, higher_is_better: bool = True,
                title: str = "") -> Path:
    """The metric on every task against the number of tasks learned (0 = `initial`, before any
    training; i+1 = after task i), one line per task, dotted before the task is learned, plus the
    average over the tasks seen so far as a thick black line. `matrix`: k×T as in `plot_heatmap`."""
    matrix = np.asarray(matrix, dtype=np.float64)
    k, T = matrix.shape
    names = list(task_names) if task_names is not None else [str(j) for j in range(T)]
    x0 = 0 if initial is not None else 1
    rows = matrix if initial is None else np.vstack([np.asarray(initial, dtype=np.float64)[None], matrix])
    steps = np.arange(x0, k + 1)

    fig, ax = plt.subplots(figsize=(8.0, 4.2), dpi=120)
    for j in range(T):
        color = f"C{j % 10}"
        learned = steps >= j + 1  # task j is learned at step j+1
        if learned.any():
            ax.plot(steps[learned], rows[learned, j], "o-", color=color, ms=4, lw=1.6, label=names[j])
        before = steps <= j + 1
        if before.sum() > 1:
            ax.plot(steps[before], rows[before, j], "o:", color=color, ms=3, lw=1.0, alpha=0.6,
                    label=None if learned.any() else f"{names[j]} (not yet learned)")
    seen = [matrix[i, : i + 1].mean() for i in range(k)]
    ax.plot(np.arange(1, k + 1), seen, "s-", color="black", lw=3.0, ms=5, label="average over seen tasks")
    ax.set_xticks(range(x0, T + 1))
    ax.set_xlim(x0 - 0.2, T + 0.2)
    ax.set_xlabel("tasks learned (0: before training)" if initial is not None else "tasks learned")
    ax.set_ylabel(f"{metric}  {_arrow(higher_is_better)}")
    ax.grid(alpha=0.3)
    ax.legend(title="task (dotted: before\nit is learned)", fontsize=8, title_fontsize=8, loc="center left",
              bbox_to_anchor=(1.01, 0.5))
    ax.set_title(title or f"{metric} on every task as tasks are learned", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)
