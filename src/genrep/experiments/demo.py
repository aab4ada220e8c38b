"""`genrep demo`: the main job on the embedded `digits` data.

Trains the e2e Sinkhorn autoencoder against the VAE, unconditional and conditional (MLP nets), on
scikit-learn's 8×8 digits and compares them under the evaluation protocol: FID and PRD
precision/recall on LeNet features (the digits LeNet is trained and cached on first use, a few
seconds) between the 297 test images and as many samples, plus a logistic-regression digit
classifier (fitted on the digits training split) applied to 1,000 samples — for conditional models
the share recognised as the label they were conditioned on, for all the number of digit classes
that appear.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrep.data import load_dataset
from genrep.experiments.run_config import resolve_run_config
from genrep.experiments.train import load_trained_model, train_run
from genrep.models.base import GenerativeModel
from genrep.runs import prepare_run_dir, write_json, write_report
from genrep.utils.images import save_grid

MODELS = ("vae", "e2e-sae", "cvae", "ce2e-sae")
N_SAMPLES = 1000


def digit_classifier():
    """Logistic regression on flattened [0,1] digits (train split); returns (classifier, test accuracy)."""
    from sklearn.linear_model import LogisticRegression

    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    clf = LogisticRegression(max_iter=2000).fit(train.images.flatten(1).numpy(), train.labels.numpy())
    return clf, float(clf.score(test.images.flatten(1).numpy(), test.labels.numpy()))


def digits_lenet(progress: bool):
    """The cached digits LeNet, trained (≈ 3 s) and cached if missing."""
    from genrep.errors import CheckpointError
    from genrep.metrics.features import load_lenet, train_lenet

    try:
        return load_lenet("digits")
    except CheckpointError:
        return train_lenet("digits", progress=progress)[0]


def demo_config(name: str, *, steps: int, seed: int, progress: bool, model_overrides: dict | None = None):
    """The demo's run config for model `name` (digits, MLP nets, Adam 2e-3, batch 128)."""
    return resolve_run_config(name, overrides={
        "data": {"name": "digits"},
        "model": dict(model_overrides or {}),
        "train": {"steps": steps, "seed": seed, "lr": 2e-3, "batch_size": 128, "log_every": 100,
                  "eval_every": 500, "checkpoint_every": 1000, "progress": progress},
    })


def train_and_score(name: str, run_dir: Path, *, steps: int, seed: int, classifier, lenet, progress: bool = False,
                    model_overrides: dict | None = None) -> tuple[dict[str, Any], torch.Tensor, GenerativeModel]:
    """Train model `name` with the demo's settings into `run_dir` and score it: LeNet FID and PRD
    (test split vs as many samples), test loss, label agreement / classes covered by `classifier` on
    N_SAMPLES samples, train time. Returns (row, the first 100 samples, the model)."""
    from genrep.experiments.evaluate import evaluate

    cfg = demo_config(name, steps=steps, seed=seed, progress=progress, model_overrides=model_overrides)
    summary = train_run(cfg, run_dir)
    model = load_trained_model(run_dir)
    torch.manual_seed(seed)
    requested = torch.arange(N_SAMPLES) % 10
    conditional = getattr(model, "condition", None) is not None
    samples = model.sample(N_SAMPLES, requested if conditional else None)
    predicted = classifier.predict(samples.flatten(1).numpy())
    counts = np.bincount(predicted, minlength=10)
    scores = evaluate("digits:test", str(run_dir), metrics=["fid", "prd"], features=lenet, seed=seed, progress=False)
    row = {
        "model": name,
        "fid": scores["fid"],
        "prd_precision": scores["prd_precision"],
        "prd_recall": scores["prd_recall"],
        "test_loss": summary["test_loss"],
        "label_agreement": float((predicted == requested.numpy()).mean()) if conditional else None,
        "classes_covered": int((counts >= 0.02 * N_SAMPLES).sum()),
        "train_time_s": summary["wall_time_s"],
    }
    return row, samples[:100], model


def run_demo(out: str | Path = "runs/demo", *, steps: int = 2000, seed: int = 0, overwrite: bool = False,
             progress: bool = True) -> dict[str, Any]:
    out = prepare_run_dir(out, overwrite=overwrite)
    clf, clf_accuracy = digit_classifier()
    lenet = digits_lenet(progress)
    rows = []
    for name in MODELS:
        row, samples, model = train_and_score(name, out / name, steps=steps, seed=seed, classifier=clf, lenet=lenet,
                                              progress=progress)
        rows.append(row)
        save_grid(samples, out / f"{name}_samples.png", value_range=model.value_range, nrow=10)
    result = {"dataset": "digits", "steps": steps, "seed": seed, "classifier_test_accuracy": clf_accuracy,
              "models": rows}
    write_json(out / "summary.json", result)
    table = format_table(rows)
    notes = (f"e2e Sinkhorn autoencoder vs VAE (unconditional and conditional) on scikit-learn digits, {steps} "
             f"steps each, seed {seed}. FID and PRD precision/recall (×1, in [0, 1]) on LeNet features, 297 test "
             f"images vs 297 samples. Digit classifier test accuracy: {clf_accuracy:.3f}.\n\n" + table)
    write_report(out, title="genrep demo", summary={"classifier_test_accuracy": clf_accuracy}, notes=notes,
                 pictures=[(f"{name} samples" + (" (column = label 0..9)" if name.startswith("c") else ""),
                            out / f"{name}_samples.png") for name in MODELS])
    return result


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ("| model | FID (LeNet) | PRD precision | PRD recall | label agreement | classes covered (of 10) |"
              " train time (s) |")
    lines = [header, "|---|---|---|---|---|---|---|"]
    for r in rows:
        agreement = "–" if r["label_agreement"] is None else f"{r['label_agreement']:.3f}"
        lines.append(f"| {r['model']} | {r['fid']:.2f} | {r['prd_precision']:.3f} | {r['prd_recall']:.3f} |"
                     f" {agreement} | {r['classes_covered']} | {r['train_time_s']:.1f} |")
    return "\n".join(lines)
