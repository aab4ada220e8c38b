"""Deep convolutional GAN (Radford et al. 2016) and its label/condition-conditional version (cDCGAN,
the thesis' ch.4 baseline, Table 4.3.1).

Generator G(ε[, y]): ε ~ N(0, I) (`noise_dim`, 100) concatenated with the condition embedding
(one-hot label or standardised condition vector) → Linear → BN → ReLU → a feature map of
c0 = g_channels·2^(L−1) channels at (H/2^L)×(W/2^L) → L−1 × [ConvT k4 s2 p1, BN, ReLU] halving the
channels → ConvT k4 s2 p1 to C channels → tanh (or sigmoid) into the value range. L is how often
H and W halve exactly while the side stays above 7 (8×8: L=1 from 4×4; 28×28: L=2 from 7×7;
32×32: L=3 from 4×4; 44×44: L=2 from 11×11; 64×64: L=4 from 4×4, i.e. DCGAN's 512-256-128-64);
other sizes are generated at the next multiple of 2^L and centre-cropped.

Discriminator D(x[, y]): the condition as extra constant feature maps concatenated to the image
(C + E input channels), then L × [Conv k4 s2 p1, LeakyReLU(0.2)] doubling d_channels (BN on all but
the first), flatten, Linear → one logit per image. D sees images mapped to [-1, 1].

Losses (non-saturating, binary cross-entropy on logits):
    d_loss = BCE(D(x), 1) + BCE(D(G(ε)), 0),     g_loss = BCE(D(G(ε)), 1).
Optimisers: Adam(lr=2e-4, betas=(0.5, 0.999)) for G and for D, taken from the *model* config
(`model.lr`, `model.betas`); `train.lr`, `train.betas`, `train.optimizer` and `train.weight_decay`
are not used; `train.grad_clip` (if set) clips each network's gradient norm; a `train.scheduler` is
attached to both optimisers by the trainer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from genrep.errors import ConfigError
from genrep.models.base import GenerativeModel, Output
from genrep.models.networks import OUTPUTS, ConditionEmbedding, normal_init_, to_value_range


@dataclasses.dataclass
class DCGANConfig:
    """noise_dim: size of ε; g_channels / d_channels: width of the generator's last hidden layer /
    the discriminator's first layer (doubling per level); lr, betas: Adam for both networks;
    output: sigmoid | tanh, how generator logits map into the value range."""

    noise_dim: int = 100
    g_channels: int = 64
    d_channels: int = 64
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    output: str = "tanh"

    def __post_init__(self):
        if self.output not in OUTPUTS:
            raise ConfigError(f"model.output must be one of {', '.join(OUTPUTS)}; got {self.output!r}")
        if self.noise_dim < 1 or self.g_channels < 1 or self.d_channels < 1 or not self.lr > 0:
            raise ConfigError("model.noise_dim, model.g_channels, model.d_channels must be >= 1 and model.lr > 0")
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"model.betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = tuple(float(b) for b in betas)


def upsampling_plan(height: int, width: int) -> tuple[int, int, int]:
    """(L, h0, w0): the number of ×2 levels and the first feature map's size (see the module docstring)."""
    if min(height, width) < 4:
        raise ConfigError(f"the DCGAN needs images of at least 4×4 pixels, got {height}×{width}")
    levels, h, w = 0, height, width
    while h % 2 == 0 and w % 2 == 0 and min(h, w) > 7:
        h, w, levels = h // 2, w // 2, levels + 1
    if levels == 0:
        levels = max(1, int(math.log2(min(height, width) / 4)))
        h, w = math.ceil(height / 2**levels), math.ceil(width / 2**levels)
    return levels, h, w


class Generator(nn.Module):
    """ε (N×noise_dim) [+ condition embedding N×E] → logits N×C×H×W."""

    def __init__(self, image_shape, *, noise_dim: int, channels: int, cond_dim: int = 0):
        super().__init__()
        c, self.height, self.width = image_shape
        levels, h0, w0 = upsampling_plan(self.height, self.width)
        widths = [channels * 2 ** (levels - 1 - i) for i in range(levels)]
        self.project = nn.Sequential(nn.Linear(noise_dim + cond_dim, widths[0] * h0 * w0, bias=False),
                                     nn.Unflatten(1, (widths[0], h0, w0)), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(widths[-1], c, 4, stride=2, padding=1))
        self.body = nn.Sequential(*layers)
        normal_init_(self)

    def forward(self, eps: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = eps if cond is None else torch.cat([eps, cond], dim=1)
        out = self.body(self.project(h))
        top, left = (out.shape[2] - self.height) // 2, (out.shape[3] - self.width) // 2
        return out[:, :, top:top + self.height, left:left + self.width]


class Discriminator(nn.Module):
    """x (N×C×H×W, in [-1, 1]) [+ condition embedding N×E as constant maps] → logits (N,)."""

    def __init__(self, image_shape, *, channels: int, cond_dim: int = 0):
        super().__init__()
        c, h, w = image_shape
        levels, _, _ = upsampling_plan(h, w)
        layers: list[nn.Module] = []
        a = c + cond_dim
        for i in range(levels):
            b = channels * 2**i
            layers.append(nn.Conv2d(a, b, 4, stride=2, padding=1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(b))
            layers.append(nn.LeakyReLU(0.2))
            a, h, w = b, h // 2, w // 2
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(a * h * w, 1)
        normal_init_(self)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            x = torch.cat([x, cond[:, :, None, None].expand(-1, -1, *x.shape[2:]).to(x.dtype)], dim=1)
        return self.head(self.body(x)).squeeze(1)


@contextlib.contextmanager
def _frozen(module: nn.Module):
    """Parameters of `module` without gradients inside the block (restored afterwards)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class DCGAN(GenerativeModel):
    """(c)DCGAN: `training_step` does one D and one G update; `forward` returns the same losses
    without updating (for validation). Output.loss = d_loss + g_loss; parts: d_loss, g_loss, d_real,
    d_fake (mean D(x) and D(G(ε)) as probabilities, before the updates)."""

    def __init__(self, config: DCGANConfig, *, image_shape, value_range=(0.0, 1.0),
                 condition: ConditionEmbedding | None = None):
        super().__init__(image_shape=image_shape, value_range=value_range)
        self.config = config
        self.condition = condition
        cond_dim = condition.dim if condition is not None else 0
        self.generator = Generator(self.image_shape, noise_dim=config.noise_dim, channels=config.g_channels,
                                   cond_dim=cond_dim)
        self.discriminator = Discriminator(self.image_shape, channels=config.d_channels, cond_dim=cond_dim)
        self.grad_clip: float | None = None

    def distributed_modules(self) -> dict[str, nn.Module]:
        """The networks the trainer wraps separately for DDP (each with its own gradient all-reduce):
        {"generator": G, "discriminator": D}. Over several processes `training_step` runs with these
        attributes pointing at the wrapped networks, so each backward synchronises the gradients of
        the network it updates; `state_dict` keys are unchanged."""
        return {"generator": self.generator, "discriminator": self.discriminator}

    def _cond(self, batch) -> torch.Tensor | None:
        return self.condition(batch) if self.condition is not None else None

    def _symmetric(self, x: torch.Tensor) -> torch.Tensor:
        """Images in `value_range` → [-1, 1] (what D sees)."""
        lo, hi = self.value_range
        return (x - lo) * (2.0 / (hi - lo)) - 1.0

    def _fake(self, n: int, cond: torch.Tensor | None, device) -> torch.Tensor:
        """n generated images in [-1, 1]."""
        eps = torch.randn(n, self.config.noise_dim, device=device)
        return to_value_range(self.generator(eps, cond), (-1.0, 1.0), self.config.output)

    def generate(self, eps: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """G(ε[, cond]) in `value_range` for given noise ε (N×noise_dim) and condition embedding (N×E)."""
        return to_value_range(self.generator(eps, cond), self.value_range, self.config.output)

    def configure_optimizers(self, cfg=None) -> list[torch.optim.Optimizer]:
        """[Adam over G, Adam over D] with `model.lr` / `model.betas`; remembers `cfg.grad_clip`."""
        self.grad_clip = getattr(cfg, "grad_clip", None)
        kw = dict(lr=self.config.lr, betas=self.config.betas)
        return [torch.optim.Adam(self.generator.parameters(), **kw),
                torch.optim.Adam(self.discriminator.parameters(), **kw)]

    def _losses(self, real, fake, cond):
        real_logits = self.discriminator(real, cond)
        fake_logits = self.discriminator(fake, cond)
        d_loss = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) \
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        parts = {"d_real": torch.sigmoid(real_logits.detach()).mean(),
                 "d_fake": torch.sigmoid(fake_logits.detach()).mean()}
        return d_loss, parts

    def forward(self, batch: dict[str, torch.Tensor]) -> Output:
        """The losses on a batch without any update: d_loss on (x, G(ε)), g_loss on G(ε)."""
        x = self.check_batch(batch, need_condition=self.conditional)
        cond = self._cond(batch)
        fake = self._fake(len(x), cond, x.device)
        d_loss, parts = self._losses(self._symmetric(x), fake, cond)
        fake_logits = self.discriminator(fake, cond)
        g_loss = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
        return Output(d_loss + g_loss, {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(), **parts})

    def training_step(self, batch: dict[str, torch.Tensor], optimizers, fabric) -> Output:
        """One discriminator step, then one generator step (on the same fake batch, against the
        updated D), each with `fabric.backward`. `optimizers`: [G optimiser, D optimiser].

        Under DDP (see `distributed_modules`) `self.generator` / `self.discriminator` are the wrapped
        networks here: the D backward all-reduces D's gradients (its two forwards, real and fake,
        feed one backward); in the G step D is frozen, so none of its parameters gets a gradient and
        its reducer has nothing to reduce, while G's gradients are all-reduced."""
        g_opt, d_opt = optimizers
        x = self.check_batch(batch, need_condition=self.conditional)
        cond = self._cond(batch)
        fake = self._fake(len(x), cond, x.device)

        d_opt.zero_grad(set_to_none=True)
        d_loss, parts = self._losses(self._symmetric(x), fake.detach(), cond)
        fabric.backward(d_loss)
        if self.grad_clip is not None:
            fabric.clip_gradients(self.discriminator, d_opt, max_norm=self.grad_clip, error_if_nonfinite=False)
        d_opt.step()

        g_opt.zero_grad(set_to_none=True)
        with _frozen(self.discriminator):
            fake_logits = self.discriminator(fake, cond)
            g_loss = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
            fabric.backward(g_loss)
        if self.grad_clip is not None:
            fabric.clip_gradients(self.generator, g_opt, max_norm=self.grad_clip, error_if_nonfinite=False)
        g_opt.step()
        d_loss, g_loss = d_loss.detach(), g_loss.detach()
        return Output(d_loss + g_loss, {"d_loss": d_loss, "g_loss": g_loss, **parts})

    @torch.no_grad()
    def sample(self, n: int, cond: torch.Tensor | None = None) -> torch.Tensor:
        """n images G(ε) in `value_range`; `cond` for a cDCGAN: int64 labels (n,) or conditions n×D
        (labels default to 0, 1, …, K−1, 0, 1, … when omitted)."""
        device = self.device
        cond_vec = self.sampling_condition(n, cond)
        return self.generate(torch.randn(n, self.config.noise_dim, device=device), cond_vec)
