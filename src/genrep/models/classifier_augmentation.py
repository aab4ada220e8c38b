"""Classifier-input augmentation of the joint diffusion reference code (REFERENCE_CODE.md §3.1), with kornia.

Grayscale: RandomResizedCrop(scale 0.5–1, p .25), RandomRotation(±30°, p .25), HorizontalFlip(p .5),
RandomContrast(0.6–1.8, p .25), RandomSharpness(0.4–2, p .25), RandomBrightness(0.6–1.8, p .25),
then RandomMixUpV2(p .5) **without label mixing** (the images are mixed, the labels stay).
RGB adds ColorJitter(0.1, 0.1, 0.1, 0.1, p .25) after the brightness step.

Value range: kornia's intensity ops assume images in [0, 1] (brightness and contrast clamp to it).
`space="data"` (default, genrep's choice) maps the [-1, 1] model-range images to [0, 1], augments
and maps back; `space="reference"` applies the ops to the [-1, 1] tensors as the reference code
does (its brightness/contrast/sharpness then clip every negative pixel to 0).
"""

from __future__ import annotations

import torch
from torch import nn

from genrep.errors import ConfigError

SPACES = ("data", "reference")


class ClassifierAugmentation(nn.Module):
    """x N×C×H×W in [-1, 1] → augmented x of the same shape (identity in eval mode)."""

    def __init__(self, image_shape, *, space: str = "data"):
        super().__init__()
        if space not in SPACES:
            raise ConfigError(f"augmentation space must be one of {', '.join(SPACES)}, got {space!r}")
        import kornia.augmentation as K

        channels, height, width = (int(s) for s in image_shape)
        ops = [K.RandomResizedCrop((height, width), scale=(0.5, 1.0), p=0.25),
               K.RandomRotation(30.0, p=0.25),
               K.RandomHorizontalFlip(p=0.5),
               K.RandomContrast((0.6, 1.8), p=0.25),
               K.RandomSharpness((0.4, 2.0), p=0.25),
               K.RandomBrightness((0.6, 1.8), p=0.25)]
        if channels == 3:
            ops.append(K.ColorJitter(0.1, 0.1, 0.1, 0.1, p=0.25))
        ops.append(K.RandomMixUpV2(p=0.5, data_keys=["input"]))
        self.ops = nn.Sequential(*ops)
        self.space = space

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.shape[0] == 0:
            return x
        if self.space == "reference":
            return self.ops(x)
        return self.ops((x + 1) / 2) * 2 - 1
