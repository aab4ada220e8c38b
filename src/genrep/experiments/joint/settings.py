"""Scales and run configurations of the joint diffusion experiments (thesis ch. 6).

Every experiment of the chapter is built from five kinds of training run, all on the same UNet:

    kind               model              what it is
    "joint"            joint-ddgm         DDGM + classifier head, Eq. 6.8 (noisy classifiers off)
    "joint-noisy"      joint-ddgm         the same with noisy classifiers (Eq. 6.10), for
                                          conditional sampling (thesis Sec. 6.6: "except for the
                                          conditional sampling where we additionally train the
                                          classifier on noisy samples")
    "ddgm"             ddgm               the plain DDGM (unconditional)
    "classifier"       unet-classifier    the stand-alone classifier: the same encoder + head, CE only
    "noisy-classifier" unet-classifier    the noisy classifier c(x_t, t) of classifier guidance

Scales:
- `smoke`: 8×8 digits, T = 40, UNet 16 ch × (1, 2), 1 ResBlock, no attention, 60 steps of 32:
  seconds per run (tests and CI).
- `cpu`: FashionMNIST resized to 16×16, T = 200, UNet 16 ch × (1, 2), 1 ResBlock per level, no
  attention, dropout 0.1, batch 64, AdamW 5e-4, grad-clip 1, 1500 steps (on idle cores 0.07 s/step
  DDGM, 0.10 s/step joint; several times slower when other jobs share the cores), 1000 samples with
  50 respaced steps, FID on the data set's LeNet (16 → 28 px).
- `paper`: the published FashionMNIST run (REFERENCE_CODE.md §3.4): 28×28, T = 500, UNet 64 ch ×
  (1, 2, 2), 3 ResBlocks, reference attention rule, dropout 0.3, batch 128, AdamW 1e-4, 100k steps,
  CE weight 0.001 (every published command; the thesis' Eq. 6.8 weight 1 is the default at the
  other scales), 10,000 samples with all T steps, Inception FID.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from genrep.experiments.reproduce.common import check_scale

KINDS = ("joint", "joint-noisy", "ddgm", "classifier", "noisy-classifier")


@dataclasses.dataclass(frozen=True)
class Scale:
    dataset: str
    image_size: int | None
    unet: dict
    diffusion_steps: int
    train_steps: int
    batch_size: int
    lr: float
    grad_clip: float | None
    loss_weight: str
    n_eval: int
    sample_steps: int | None
    features: str  # "lenet" | "quick-lenet" | "inception"
    train_limit: int | None = None
    head_epochs: int = 30  # the frozen-feature head of "Ours (pre-trained DDGM)"
    adaptation_size: int | None = None  # the side both domains are resized to (None: the larger native side)
    accelerator: str = "cpu"


SCALES: dict[str, Scale] = {
    "smoke": Scale(dataset="digits", image_size=None,
                   unet={"model_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
                         "attention_resolutions": [], "middle_attention": False, "dropout": 0.0},
                   diffusion_steps=40, train_steps=60, batch_size=32, lr=1e-3, grad_clip=1.0, loss_weight="thesis",
                   n_eval=100, sample_steps=10, features="quick-lenet", head_epochs=5, adaptation_size=8),
    "cpu": Scale(dataset="fashion_mnist", image_size=16,
                 unet={"model_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
                       "attention_resolutions": [], "middle_attention": False, "dropout": 0.1},
                 diffusion_steps=200, train_steps=1500, batch_size=64, lr=5e-4, grad_clip=1.0, loss_weight="thesis",
                 n_eval=1000, sample_steps=50, features="lenet", adaptation_size=16),
    "paper": Scale(dataset="fashion_mnist", image_size=None,
                   unet={"model_channels": 64, "channel_mult": [1, 2, 2], "num_res_blocks": 3,
                         "attention_resolutions": None, "middle_attention": True, "num_heads": 4, "dropout": 0.3},
                   diffusion_steps=500, train_steps=100_000, batch_size=128, lr=1e-4, grad_clip=None,
                   loss_weight="reference", n_eval=10_000, sample_steps=None, features="inception",
                   accelerator="auto"),
}


# The published settings of the other data sets of Tables 6.6.1 / 6.6.2 / 6.6.5 (REFERENCE_CODE.md §3.4),
# applied at `paper` scale when a recipe runs on them (the files must be present: svhn/cifar10/cifar100).
PAPER_DATASETS = {
    "cifar10": {"model_channels": 128, "diffusion_steps": 1000, "batch_size": 256, "train_steps": 500_000},
    "cifar100": {"model_channels": 128, "diffusion_steps": 1000, "batch_size": 256, "train_steps": 500_000},
    "svhn": {"model_channels": 128, "diffusion_steps": 1000, "batch_size": 256, "train_steps": 250_000},
}


def scale_of(scale: str, dataset: str | None = None) -> Scale:
    """The settings of `scale`, with the published per-data-set settings at `paper` (PAPER_DATASETS)."""
    s = SCALES[check_scale(scale)]
    override = PAPER_DATASETS.get(dataset) if scale == "paper" else None
    if override is None:
        return s
    unet = {**s.unet, "model_channels": override["model_channels"]}
    return dataclasses.replace(s, dataset=dataset, unet=unet, diffusion_steps=override["diffusion_steps"],
                               batch_size=override["batch_size"], train_steps=override["train_steps"])


def run_config(kind: str, scale: str, seed: int, *, dataset: str | None = None, data_path: str | None = None,
               classifier: dict | None = None, data: dict | None = None, train: dict | None = None,
               progress: bool = False) -> dict[str, Any]:
    """The RunConfig (nested dict) of one training run of `kind` at `scale` (module docstring);
    `dataset` replaces the scale's data set; `classifier`, `data` and `train` override settings."""
    from genrep.errors import ConfigError

    if kind not in KINDS:
        raise ConfigError(f"unknown run kind {kind!r}; valid: {', '.join(KINDS)}")
    s = scale_of(scale, dataset)
    unet = copy.deepcopy(s.unet)
    head = {"loss_weight": s.loss_weight, **(classifier or {})}
    if kind in ("joint", "joint-noisy"):
        if kind == "joint-noisy":
            head.setdefault("noisy", "thesis")
        model_name = "joint-ddgm"
        model = {"steps": s.diffusion_steps, "schedule": "linear", "loss": "simple", "sample_steps": s.sample_steps,
                 "clip_denoised": False, "unet": unet, "classifier": head}
    elif kind == "ddgm":
        model_name = "ddgm"
        model = {"steps": s.diffusion_steps, "schedule": "linear", "loss": "simple", "sample_steps": s.sample_steps,
                 "clip_denoised": False, "unet": unet}
    else:
        model_name = "unet-classifier"
        head.pop("loss_weight")
        model = {"unet": unet, "classifier": head, "noisy": kind == "noisy-classifier",
                 "steps": s.diffusion_steps, "schedule": "linear"}
    data_cfg = {"name": dataset or s.dataset, "value_range": "01", "image_size": s.image_size, "limit": s.train_limit,
                "validation_fraction": 0.0, "path": data_path, **(data or {})}
    train_cfg = {"steps": s.train_steps, "batch_size": s.batch_size, "lr": s.lr, "optimizer": "adamw",
                 "grad_clip": s.grad_clip, "seed": seed, "accelerator": s.accelerator, "progress": progress,
                 **(train or {})}
    total = train_cfg["steps"]
    train_cfg.update(log_every=max(1, total // 50), checkpoint_every=max(1, total // 10),
                     sample_every=max(1, total // 5))
    return {"model_name": model_name, "model": model, "data": data_cfg, "train": train_cfg}
