"""What a training run adds for models with a classifier head (joint diffusion, UNet classifiers):
test accuracy logged during training, and at the end the full test accuracy and a confusion matrix.

A model takes part when it has `predict(x) -> labels` (int64 (N,), or {0,1} attributes N×A for
multi-label heads); its test split must carry the matching labels / attributes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from genrep.data import ImageDataset
from genrep.utils.files import output_file, writing

ACCURACY_FILE = "accuracy.jsonl"
HOOK_TEST_IMAGES = 1000  # the hook measures on the first 1000 test images; the summary on all


def has_classifier(model) -> bool:
    return callable(getattr(model, "predict", None))


def test_targets(model, data: ImageDataset) -> torch.Tensor:
    return data.conditions.long() if getattr(model, "multi_label", False) else data.labels


def accuracy(model, data: ImageDataset) -> float:
    """Share of correct labels (multi-label: of correct attributes) of `model.predict` on `data`."""
    predicted = model.predict(data.images).cpu()
    return float((predicted == test_targets(model, data)).float().mean())


def accuracy_hook(test: ImageDataset):
    """Trainer hook: test accuracy on the first HOOK_TEST_IMAGES test images → RUN/accuracy.jsonl."""
    subset = test.subset(slice(0, HOOK_TEST_IMAGES))

    def hook(state) -> None:
        value = accuracy(state.model, subset)
        path = Path(state.run_dir) / ACCURACY_FILE
        with writing(output_file(path)), open(path, "a") as f:
            f.write(json.dumps({"step": state.step, "test_accuracy": value, "test_images": len(subset)}) + "\n")

    return hook


def plot_confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor, path: Path, *,
                          class_names: list[str] | None = None) -> Path:
    """Row-normalised confusion matrix (true class × predicted class) as a PNG, counts in the cells."""
    import numpy as np
    from sklearn.metrics import confusion_matrix

    from genrep.utils.plots import plt, save_figure

    k = int(max(int(labels.max()), int(predicted.max())) + 1) if class_names is None else len(class_names)
    counts = confusion_matrix(labels.numpy(), predicted.numpy(), labels=list(range(k)))
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    names = class_names or [str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * k, 0.8 + 0.45 * k), dpi=110)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), names, rotation=90 if k > 10 else 0, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test accuracy {np.trace(counts) / max(counts.sum(), 1):.3f}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_accuracy_curve(run_dir: Path) -> Path | None:
    """Test accuracy against step from RUN/accuracy.jsonl; None when it has no rows."""
    from genrep.utils.plots import plt, save_figure

    path = run_dir / ACCURACY_FILE
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=110)
    ax.plot([r["step"] for r in rows], [r["test_accuracy"] for r in rows], "o-")
    ax.set_xlabel("step")
    ax.set_ylabel(f"test accuracy (first {rows[0]['test_images']} images)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = run_dir / "accuracy.png"
    return save_figure(fig, out)


def classifier_summary(model, test: ImageDataset, run_dir: Path) -> tuple[dict, list[tuple[str, Path]]]:
    """({"test_accuracy": …}, pictures): the accuracy on the whole test split, the confusion matrix
    (single-label heads) and the accuracy curve of the run."""
    predicted = model.predict(test.images).cpu()
    targets = test_targets(model, test)
    summary = {"test_accuracy": float((predicted == targets).float().mean())}
    pictures = []
    if not getattr(model, "multi_label", False):
        pictures.append(("Confusion matrix (test)", plot_confusion_matrix(
            targets, predicted, run_dir / "confusion_matrix.png", class_names=test.class_names)))
    curve = plot_accuracy_curve(run_dir)
    if curve is not None:
        pictures.append(("Test accuracy during training", curve))
    return summary, pictures
