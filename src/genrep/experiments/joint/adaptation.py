"""Domain adaptation with diffusion-based fine-tuning (thesis Sec. 6.6.5, App. 6.8.2, Table 6.6.6).

Protocol (the thesis' sequential one, the default):
1. train the joint model on the labelled source (`joint` on SOURCE);
2. fine-tune it on the unlabelled target with the diffusion loss only (Eq. 6.4): `train.init_from`
   = the source run, `classifier.train = false` (the head is frozen and never evaluated, so its
   weights and BatchNorm statistics stay exactly as on the source), `adapt_steps` steps;
3. test the unchanged head on the target test split.
`mode="simultaneous"` is the reference code's `DA_SVHN_MNIST`: one joint run on source images with
labels plus target images with label −1 (`data.unlabelled`), no second phase.
Baselines: the UNet-encoder classifier trained on the source and tested on the target, and the
same classifier trained on the target (the upper bound).

Both data sets are resized to the scale's `adaptation_size` (8 at `smoke`, 16 at `cpu`: 8×8 digits
upsampled, MNIST downsampled; at `paper` the larger native side, e.g. USPS 16 → 28 as the reference
code does). Channel counts must agree (SVHN → MNIST needs MNIST as 3 channels).
Runs: OUT/seed{S}/classifier-SOURCE-daN, classifier-TARGET-daN, joint-SOURCE-daN,
joint-TARGET-daN-adapt-from-SOURCE (or joint-SOURCE-daN-mix-TARGET), N the image side; a data set that
is the scale's own is not named (`cells.cell_dir`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrep.errors import ConfigError

MODES = ("sequential", "simultaneous")
METHODS = ("classifier", "joint", "target-classifier")
LABELS = {"classifier": "Classifier", "joint": "Ours", "target-classifier": "Classifier on target (upper bound)"}


def check_pair(source, target) -> None:
    """Both data sets must share one class set (names, or the number of classes)."""
    same = (source.class_names == target.class_names) if source.class_names and target.class_names else (
        source.num_classes == target.num_classes)
    if not same:
        raise ConfigError(f"domain adaptation needs one class set: {source.name} has "
                          f"{source.class_names or source.num_classes} but {target.name} has "
                          f"{target.class_names or target.num_classes}")


def classifier_accuracy_on(run_dir: Path, data) -> float:
    from genrep.experiments.classifier_report import accuracy
    from genrep.experiments.joint.evaluation import load_run

    return accuracy(load_run(run_dir), data)


def run_adaptation(out: Path, *, scale: str, seeds: int, source: str, target: str, mode: str = "sequential",
                   adapt_steps: int | None = None, progress: bool = False, log=print) -> dict[str, Any]:
    """Target test accuracy (%) per method and seed: {"values": {method: [per seed]}, ...}."""
    from genrep.experiments.joint.cells import train_cell
    from genrep.experiments.joint.evaluation import run_data
    from genrep.experiments.joint.settings import scale_of

    if mode not in MODES:
        raise ConfigError(f"domain-adaptation mode must be one of {', '.join(MODES)}, got {mode!r}")
    if source == target:
        raise ConfigError(f"source and target are both {source}: choose two data sets")
    s = scale_of(scale)
    size = s.adaptation_size or max(run_data(scale, "test", dataset=name).image_shape[-1] for name in (source, target))
    source_test = run_data(scale, "test", dataset=source, image_size=size)
    target_test = run_data(scale, "test", dataset=target, image_size=size)
    check_pair(source_test, target_test)
    if source_test.image_shape[0] != target_test.image_shape[0]:
        raise ConfigError(f"{source} has {source_test.image_shape[0]} channels but {target} has "
                          f"{target_test.image_shape[0]}: the UNet needs one channel count")
    steps = adapt_steps or s.train_steps
    sized, tag = {"image_size": size}, f"da{size}"
    values: dict[str, list[float]] = {m: [] for m in METHODS}
    for seed in range(seeds):
        clf_dir, _ = train_cell(out, "classifier", scale, seed, dataset=source, tag=tag, log=log, progress=progress,
                                data=sized)
        values["classifier"].append(100 * classifier_accuracy_on(clf_dir, target_test))
        _, summary = train_cell(out, "classifier", scale, seed, dataset=target, tag=tag, log=log, progress=progress,
                                data=sized)
        values["target-classifier"].append(100 * summary["test_accuracy"])
        if mode == "sequential":
            source_dir, _ = train_cell(out, "joint", scale, seed, dataset=source, tag=tag, log=log, progress=progress,
                                       data=sized)
            _, summary = train_cell(out, "joint", scale, seed, dataset=target, tag=f"{tag}-adapt-from-{source}", log=log,
                                    progress=progress, classifier={"train": False}, data=sized,
                                    train={"init_from": str(source_dir.resolve()), "steps": steps})
            values["joint"].append(100 * summary["test_accuracy"])  # the run's test split is the target's
        else:
            mixed_dir, _ = train_cell(out, "joint", scale, seed, dataset=source, tag=f"{tag}-mix-{target}", log=log,
                                      progress=progress, data={**sized, "unlabelled": target})
            values["joint"].append(100 * classifier_accuracy_on(mixed_dir, target_test))
        log(f"[seed {seed}] {source} → {target}: " + ", ".join(f"{LABELS[m]} {values[m][-1]:.2f}" for m in METHODS))
    return {"source": source, "target": target, "mode": mode, "adapt_steps": steps, "values": values}
