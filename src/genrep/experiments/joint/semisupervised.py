"""Semi-supervised learning with joint diffusion models (thesis Sec. 6.6.4, Table 6.6.5, App. 6.8.1).

For each labelled share s (class-balanced by default; `balanced=False` is the reference code's
unbalanced random draw) three classifiers, all tested on the whole test split:
- Classifier: the UNet-encoder classifier trained on the labelled images alone
  (`data.drop_unlabelled`);
- Ours (pre-trained DDGM): the head on the frozen features of a DDGM trained on all images without
  labels, fitted on the labelled ones;
- Ours: the joint model on all images — the diffusion loss on every image, the CE on the labelled
  ones through the labelled buffer (`classifier.buffer_size` = the batch size: the CE is computed
  only on full, batch-sized labelled sets). At s = 100 % there is nothing to buffer and the run is
  the plain joint model (shared with Table 6.6.1).
Runs: OUT/seed{S}/{classifier,joint}[-DATASET]-share{s} and OUT/seed{S}/ddgm[-DATASET].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrep.errors import ConfigError

METHODS = ("classifier", "pretrained-ddgm", "joint")
LABELS = {"classifier": "Classifier", "pretrained-ddgm": "Ours (pre-trained DDGM)", "joint": "Ours"}


def check_shares(shares) -> tuple[float, ...]:
    shares = tuple(shares)
    bad = [s for s in shares if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s <= 1]
    if not shares or bad:
        raise ConfigError(f"labelled shares must lie in (0, 1], got {list(bad or shares)}")
    return shares


def share_tag(share: float) -> str | None:
    return None if share == 1 else f"share{share:g}"


def run_semisupervised(out: Path, *, scale: str, seeds: int, dataset: str | None = None,
                       shares=(0.01, 0.05, 0.1, 1.0), balanced: bool = True, progress: bool = False,
                       log=print) -> dict[str, Any]:
    """Accuracy (%) per method, share and seed: {"values": {method: {share: [per seed]}}, ...}."""
    from genrep.experiments.joint.cells import train_cell
    from genrep.experiments.joint.evaluation import frozen_feature_accuracy, load_run, run_data
    from genrep.experiments.joint.settings import scale_of

    from genrep.data.labels import mask_labels

    shares = check_shares(shares)
    s = scale_of(scale, dataset)
    train, test = run_data(scale, "train", dataset=dataset), run_data(scale, "test", dataset=dataset)
    values: dict[str, dict[str, list[float]]] = {m: {f"{x:g}": [] for x in shares} for m in METHODS}
    for seed in range(seeds):
        ddgm_dir, _ = train_cell(out, "ddgm", scale, seed, dataset=dataset, log=log, progress=progress)
        for share in shares:
            key, tag = f"{share:g}", share_tag(share)
            data_options = {} if share == 1 else {"labelled_share": share, "labelled_balanced": balanced}
            head = {} if share == 1 else {"buffer_size": s.batch_size}
            _, summary = train_cell(out, "classifier", scale, seed, dataset=dataset, tag=tag, log=log,
                                    progress=progress, data={**data_options, "drop_unlabelled": share < 1})
            values["classifier"][key].append(100 * summary["test_accuracy"])
            _, summary = train_cell(out, "joint", scale, seed, dataset=dataset, tag=tag, log=log, progress=progress,
                                    classifier=head, data=data_options)
            values["joint"][key].append(100 * summary["test_accuracy"])
            labelled = mask_labels(train, share, balanced=balanced, seed=seed)
            accuracy = frozen_feature_accuracy(load_run(ddgm_dir), labelled, test, epochs=s.head_epochs, seed=seed,
                                               progress=progress)
            values["pretrained-ddgm"][key].append(100 * accuracy)
            log(f"[seed {seed}] {share:.0%} labels: " + ", ".join(
                f"{LABELS[m]} {values[m][key][-1]:.2f}" for m in METHODS))
    return {"dataset": s.dataset if dataset is None else dataset, "shares": list(shares), "balanced": balanced,
            "values": values}


def plot_semisupervised(result: dict[str, Any], path: Path) -> Path:
    """Accuracy vs labelled share (log axis), mean ± std over seeds, one line per method."""
    from genrep.experiments.reproduce.common import mean_std
    from genrep.utils.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=110)
    for method in METHODS:
        points = [(float(k), mean_std(v)) for k, v in result["values"][method].items() if v]
        xs = [100 * x for x, _ in points]
        ax.errorbar(xs, [m for _, (m, _) in points], yerr=[e for _, (_, e) in points], marker="o", capsize=3,
                    label=LABELS[method])
    ax.set_xscale("log")
    ax.set_xlabel("labelled data (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"semi-supervised, {result['dataset']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
