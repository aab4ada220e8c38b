"""Encoder/decoder backbones shared by the autoencoder-family models.

`mlp`: flatten → Linear+LeakyReLU stack → out_dim; `conv`: stride-2 k4 convolutions that halve the
side at every level (so H and W must be divisible by 2**levels), then a linear head. Decoders mirror
them and return *logits* of shape N×C×H×W; the model maps logits into its value range.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genrep.errors import ConfigError


def mlp(sizes: list[int], *, final_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


def conv_grid(image_shape: tuple[int, int, int], levels: int) -> tuple[int, int]:
    """Spatial size after `levels` halvings; raises ConfigError if the image does not divide."""
    _, h, w = image_shape
    factor = 2**levels
    if h % factor or w % factor:
        raise ConfigError(
            f"conv architecture with {levels} levels needs H and W divisible by {factor}, got {h}×{w}:"
            f" set data.pad_to or data.image_size, or change model.channels"
        )
    return h // factor, w // factor


class Encoder(nn.Module):
    """x (N×C×H×W) [+ condition embedding (N×E)] → features (N×out_dim)."""

    def __init__(self, image_shape, out_dim: int, *, arch: str, hidden: list[int], channels: list[int],
                 cond_dim: int = 0):
        super().__init__()
        c, h, w = image_shape
        if arch == "mlp":
            self.body = nn.Flatten()
            flat = c * h * w
            self.head = mlp([flat + cond_dim, *hidden, out_dim])
        elif arch == "conv":
            gh, gw = conv_grid(image_shape, len(channels))
            layers: list[nn.Module] = []
            for a, b in zip([c, *channels[:-1]], channels):
                layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.BatchNorm2d(b), nn.LeakyReLU(0.2)]
            self.body = nn.Sequential(*layers, nn.Flatten())
            self.head = mlp([channels[-1] * gh * gw + cond_dim, *hidden, out_dim])
        else:
            raise ConfigError(f"unknown model.arch {arch!r}; valid: mlp, conv")

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x)
        if cond is not None:
            h = torch.cat([h, cond], dim=1)
        return self.head(h)


class Decoder(nn.Module):
    """z (N×D) [+ condition embedding] → logits N×C×H×W."""

    def __init__(self, image_shape, in_dim: int, *, arch: str, hidden: list[int], channels: list[int],
                 cond_dim: int = 0):
        super().__init__()
        self.image_shape = tuple(image_shape)
        c, h, w = image_shape
        if arch == "mlp":
            self.head = mlp([in_dim + cond_dim, *reversed(hidden), c * h * w])
            self.body = nn.Unflatten(1, self.image_shape)
        elif arch == "conv":
            gh, gw = conv_grid(image_shape, len(channels))
            rev = list(reversed(channels))
            self.head = mlp([in_dim + cond_dim, *reversed(hidden), rev[0] * gh * gw], final_activation=True)
            layers: list[nn.Module] = [nn.Unflatten(1, (rev[0], gh, gw))]
            for a, b in zip(rev, rev[1:]):
                layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.BatchNorm2d(b), nn.LeakyReLU(0.2)]
            layers.append(nn.ConvTranspose2d(rev[-1], c, 4, stride=2, padding=1))
            self.body = nn.Sequential(*layers)
        else:
            raise ConfigError(f"unknown model.arch {arch!r}; valid: mlp, conv")

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            z = torch.cat([z, cond], dim=1)
        return self.body(self.head(z))


class ConditionEmbedding(nn.Module):
    """Turn a batch's condition into a float vector: one-hot labels, or standardised conditions.

    Continuous conditions (e.g. the 9 particle attributes, which span TeV and mm) are standardised
    with the mean/std of the training set, stored as buffers so a loaded model needs no data.
    """

    def __init__(self, *, num_classes: int | None = None, cond_dim: int | None = None,
                 cond_mean: torch.Tensor | None = None, cond_std: torch.Tensor | None = None):
        super().__init__()
        if (num_classes is None) == (cond_dim is None):
            raise ConfigError("a conditional model needs exactly one of: class labels or condition vectors")
        self.num_classes = num_classes
        self.dim = num_classes if num_classes is not None else cond_dim
        if cond_dim is not None:
            mean = torch.zeros(cond_dim) if cond_mean is None else cond_mean.float()
            std = torch.ones(cond_dim) if cond_std is None else cond_std.float().clamp_min(1e-6)
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        from genrep.errors import InputError

        if self.num_classes is not None:
            y = batch.get("y")
            if y is None:
                raise InputError("this model is conditioned on class labels: the batch needs 'y'")
            if y.dtype != torch.int64 or y.ndim != 1 or (len(y) and (y.min() < 0 or y.max() >= self.num_classes)):
                raise InputError(f"labels 'y' must be int64 of shape (N,) in [0, {self.num_classes})")
            return nn.functional.one_hot(y, self.num_classes).float()
        c = batch.get("c")
        if c is None:
            raise InputError(f"this model is conditioned on {self.dim}-d vectors: the batch needs 'c'")
        if c.ndim != 2 or c.shape[1] != self.dim:
            raise InputError(f"conditions 'c' must have shape N×{self.dim}, got {tuple(c.shape)}")
        return (c.float() - self.mean) / self.std

    def default_condition(self, n: int, device) -> dict[str, torch.Tensor]:
        """Labels cycling through the classes (for sample grids); continuous conditions need data."""
        if self.num_classes is None:
            from genrep.errors import InputError

            raise InputError(f"sampling this model needs conditions: pass cond of shape n×{self.dim}")
        return {"y": torch.arange(n, device=device) % self.num_classes}


def log_normal_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row: ½ Σ (mu² + σ² − log σ² − 1)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(dim=1)


LOG_2PI = math.log(2 * math.pi)
