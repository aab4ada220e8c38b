"""Classifiers on the UNet encoder alone: the baselines of the joint diffusion chapter (thesis ch. 6).

`UNetClassifier` = the encoder of the diffusion UNet (`UNetConfig.encoder_only`: input blocks and
middle block) → pooled z → `ClassifierHead`, trained with cross-entropy only (Eq. 6.7):
- `noisy: false` — the stand-alone classifier of Tables 6.6.1, 6.6.5, 6.6.6 ("exactly the same
  architecture" as the joint model's classifier path): clean images at t = 0;
- `noisy: true` — the noisy classifier c(x_t, t) of classifier guidance (Dhariwal & Nichol 2021,
  Table 6.6.2's "DDGM (classifier guidance)"): x_t = q_sample(x_0, t) at t ~ U{0, …, T−1} of the
  DDGM it will guide (same `steps` and `schedule`).
Both take the same augmentation as the joint model (`classifier.augmentation`).

Batches: "x" N×C×H×W in `value_range`, "y" int64 (N,) (−1 = unlabelled, ignored: the
classifier-on-labelled-data baseline of the semi-supervised table), or attributes "c" N×A.
"""

from __future__ import annotations

import dataclasses

import torch

from genrep.diffusion import GaussianDiffusion, get_betas
from genrep.errors import ConfigError
from genrep.models.base import GenerativeModel, Output
from genrep.models.classifier_augmentation import ClassifierAugmentation
from genrep.models.ddgm import SCHEDULES, UNetSettings, to_model_range
from genrep.models.joint_diffusion import ClassifierSettings
from genrep.models.pooled_classifier import ClassifierHead, PooledClassifier
from genrep.models.unet import UNet


@dataclasses.dataclass
class UNetClassifierConfig:
    """unet: the encoder's size (`UNetSettings`); classifier: head and augmentation settings (only
    augmentation, augmentation_space, append_t and dropout apply); noisy: train on x_t at random t
    (for classifier guidance) instead of clean x_0; steps / schedule: the diffusion whose x_t it sees."""

    unet: UNetSettings = dataclasses.field(default_factory=UNetSettings)
    classifier: ClassifierSettings = dataclasses.field(default_factory=ClassifierSettings)
    noisy: bool = False
    steps: int = 1000
    schedule: str = "linear"

    def __post_init__(self):
        if isinstance(self.unet, dict):
            self.unet = UNetSettings(**self.unet)
        if isinstance(self.classifier, dict):
            self.classifier = ClassifierSettings(**self.classifier)
        if not isinstance(self.noisy, bool):
            raise ConfigError(f"model.noisy must be true or false, got {self.noisy!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"model.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"model.steps must be an integer >= 1, got {self.steps!r}")


class UNetClassifier(PooledClassifier, GenerativeModel):
    """images → Output(loss = CE, parts: accuracy, labelled). See the module docstring. Not a generator:
    it has no `sample`."""

    def __init__(self, config: UNetClassifierConfig, *, image_shape, value_range=(0.0, 1.0),
                 num_classes: int | None = None, num_attributes: int | None = None):
        if (num_classes is None) == (num_attributes is None):
            raise ConfigError("a UNet classifier needs either class labels (num_classes) or binary attributes"
                              " (num_attributes), not both or neither")
        super().__init__(image_shape=image_shape, value_range=value_range)
        self.config = config
        self.head_classes, self.num_attributes = num_classes, num_attributes
        self.multi_label = num_attributes is not None
        self.append_t = config.classifier.append_t
        unet_config = dataclasses.replace(config.unet.unet_config(self.image_shape), encoder_only=True)
        self.unet = UNet(unet_config)
        self.head = ClassifierHead(self.unet.feature_dim + int(self.append_t), num_classes or num_attributes,
                                   dropout=config.classifier.dropout)
        cls = config.classifier
        self.augment = ClassifierAugmentation(self.image_shape, space=cls.augmentation_space) if cls.augmentation else None
        self.diffusion = GaussianDiffusion(get_betas(config.schedule, config.steps)) if config.noisy else None

    def forward(self, batch: dict[str, torch.Tensor]) -> Output:
        x0 = to_model_range(self.check_batch(batch), self.value_range)
        target, labelled = self.targets(batch)
        x0, target = x0[labelled], target[labelled]
        if len(x0) == 0:
            zero = sum(p.sum() for p in self.parameters()) * 0.0
            return Output(zero, {"accuracy": torch.tensor(float("nan")), "labelled": torch.tensor(0.0)})
        t = None
        if self.diffusion is not None:
            t = torch.randint(0, self.diffusion.num_timesteps, (len(x0),), device=x0.device)
            x0 = self.diffusion.q_sample(x0, t)
        loss, logits = self.class_loss(x0, target, t)
        with torch.no_grad():
            hits = (logits > 0).float() == target if self.multi_label else logits.argmax(1) == target
        return Output(loss, {"accuracy": hits.float().mean(), "labelled": torch.tensor(float(len(x0)))})
