"""Networks of the two-latent VAE of Multiband VAE (thesis ch.9, METHODS.md §5, REFERENCE_CODE.md §5.1).

The VAE has three parts, each an ordinary `nn.Module` that a user may replace (pythae-style injection):

- an **encoder** x ↦ (μ, log σ², l): continuous-latent mean and log-variance (B×latent) and binary-latent
  logits (B×bits);
- a **conditioner** (λ, b, task) ↦ z that maps a task's local latents to the global latent: the
  `Translator` t_ρ(λ, task) of §9.3.2, or `ConcatConditioner` z = [λ, b, code(task)] (the ablation rows
  without a translator, Table 9.4.4);
- a **decoder** z ↦ x.

Built-in architectures (`build_networks`): "fc" (the MNIST family of the reference, 784-512-128-64, decoder
512-1024-784 sigmoid; 44 × 44 calorimeter images use the same layout scaled by 44 // 8) and "conv" for
28 × 28 (the reference's intended 28-px nets, whose encoder branch is broken there and works here), 44 × 44
and 64 × 64 RGB. LeakyReLU(0.01) everywhere, PyTorch default initialisation, as the reference.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from genrep.errors import ConfigError

ARCHITECTURES = ("fc", "conv")
CONV_SIZES = {(1, 28, 28), (1, 44, 44), (3, 64, 64)}


def task_bits(task: torch.Tensor, n_bits: int, p: int) -> torch.Tensor:
    """Task code of the translator: the n bits, most significant first, of ((t·p) mod 2^n) + 1 as ±1
    (the reference's `BitUnpacker` adds the 1; (2^n − 1)·… + 1 = 2^n wraps to all −1). task: (B,) ints."""
    value = (task.long().view(-1, 1) * p) % (2**n_bits) + 1
    mask = 2 ** (n_bits - 1 - torch.arange(n_bits, device=task.device)).view(1, -1)
    return (value & mask).bool().float() * 2 - 1


def check_task_code(n_tasks: int, n_bits: int, p: int) -> None:
    """ConfigError unless tasks 0..n_tasks−1 get distinct codes (`task_bits`): the translator could not
    tell two tasks apart."""
    codes = task_bits(torch.arange(n_tasks), n_bits, p)
    if len(torch.unique(codes, dim=0)) < n_tasks:
        need = max(1, (n_tasks).bit_length())
        raise ConfigError(f"a task code of {n_bits} bits with p={p} does not give {n_tasks} tasks distinct codes; "
                          f"use --set code_bits={need} or more (and an odd code_p)")


class Translator(nn.Module):
    """t_ρ(λ, b, task) → z (§9.3.2; reference `Translator`): task bits → Linear(n, 3n) → LReLU → Linear(3n, 2n)
    → LReLU; bits b → Linear(b, 2b) → LReLU → Linear(2b, 3b) → LReLU; [λ, b', task'] → Linear(→ latent·d/2)
    → LReLU → Linear(→ latent·d), a linear output (z has latent·d units: 256 for MNIST)."""

    def __init__(self, latent: int, bits: int, code_bits: int, code_p: int, width: int):
        super().__init__()
        self.code_bits, self.code_p, self.bits = code_bits, code_p, bits
        self.task_1 = nn.Linear(code_bits, 3 * code_bits)
        self.task_2 = nn.Linear(3 * code_bits, 2 * code_bits)
        if bits:
            self.bits_1 = nn.Linear(bits, 2 * bits)
            self.bits_2 = nn.Linear(2 * bits, 3 * bits)
        self.hidden = nn.Linear(latent + 3 * bits + 2 * code_bits, latent * width // 2)
        self.out = nn.Linear(latent * width // 2, latent * width)
        self.out_features = latent * width

    def forward(self, lam: torch.Tensor, bits: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        code = task_bits(task, self.code_bits, self.code_p).to(lam)
        code = F.leaky_relu(self.task_2(F.leaky_relu(self.task_1(code))))
        parts = [lam]
        if self.bits:
            parts.append(F.leaky_relu(self.bits_2(F.leaky_relu(self.bits_1(bits)))))
        return self.out(F.leaky_relu(self.hidden(torch.cat([*parts, code], dim=1))))


class ConcatConditioner(nn.Module):
    """z = [λ, b, code(task)]: task conditioning without a translator (Table 9.4.4's rows before
    "+ Translator"); no parameters."""

    def __init__(self, latent: int, bits: int, code_bits: int, code_p: int):
        super().__init__()
        self.code_bits, self.code_p = code_bits, code_p
        self.out_features = latent + bits + code_bits

    def forward(self, lam: torch.Tensor, bits: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return torch.cat([lam, bits, task_bits(task, self.code_bits, self.code_p).to(lam)], dim=1)


class _Heads(nn.Module):
    """μ, log σ², binary logits from a feature vector."""

    def __init__(self, features: int, latent: int, bits: int, binary_bias: bool):
        super().__init__()
        self.mean = nn.Linear(features, latent)
        self.log_var = nn.Linear(features, latent)
        self.binary = nn.Linear(features, bits, bias=binary_bias) if bits else None

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.binary(h) if self.binary is not None else h.new_zeros(len(h), 0)
        return self.mean(h), self.log_var(h), logits


def _scaler(image_shape: tuple[int, int, int]) -> int:
    return 4 if image_shape[1] == 28 else image_shape[1] // 8


class FCEncoder(nn.Module):
    """x → d·s² → d·s → d·s/2 (LeakyReLU each) → heads; s = 4 at 28 px (784-512-128-64 for d = 32), H // 8
    otherwise (reference `Encoder`, fc)."""

    def __init__(self, image_shape: tuple[int, int, int], latent: int, bits: int, width: int):
        super().__init__()
        c, h, w = image_shape
        s = _scaler(image_shape)
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, width * s * s), nn.LeakyReLU(0.01),
                                    nn.Linear(width * s * s, width * s), nn.LeakyReLU(0.01),
                                    nn.Linear(width * s, width * s // 2), nn.LeakyReLU(0.01))
        self.heads = _Heads(width * s // 2, latent, bits, binary_bias=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.heads(self.layers(x))


class FCDecoder(nn.Module):
    """z → d·s² → 2·d·s² (LeakyReLU each) → C·H·W, then sigmoid (none at 44 px, as the reference)."""

    def __init__(self, image_shape: tuple[int, int, int], in_features: int, width: int, sigmoid: bool):
        super().__init__()
        c, h, w = image_shape
        s = _scaler(image_shape)
        self.image_shape = image_shape
        self.layers = nn.Sequential(nn.Linear(in_features, width * s * s), nn.LeakyReLU(0.01),
                                    nn.Linear(width * s * s, 2 * width * s * s), nn.LeakyReLU(0.01),
                                    nn.Linear(2 * width * s * s, c * h * w))
        self.sigmoid = sigmoid

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.layers(z).view(-1, *self.image_shape)
        return torch.sigmoid(x) if self.sigmoid else x


def _conv(c_in: int, c_out: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.01)]


def _deconv(c_in: int, c_out: int, k: int, stride: int, padding: int = 0, output_padding: int = 0) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, k, stride=stride, padding=padding, output_padding=output_padding,
                               bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.01)]


class ConvEncoder(nn.Module):
    """Strided convolutions (BatchNorm, LeakyReLU) → FC(→ 4d) → heads (binary head without bias):
    28 px: k4 channels d-d-d, 28→14→7→3; 44 px: k4 d-d-2d-4d, 44→22→11→5→2; 64 px RGB: k5 d-2d-4d-4d,
    64→31→15→7→3 (reference `Encoder`, conv)."""

    def __init__(self, image_shape: tuple[int, int, int], latent: int, bits: int, width: int):
        super().__init__()
        d = width
        if image_shape == (1, 28, 28):
            layers, flat = _conv(1, d, 4) + _conv(d, d, 4) + _conv(d, d, 4), d * 9
        elif image_shape == (1, 44, 44):
            layers, flat = _conv(1, d, 4) + _conv(d, d, 4) + _conv(d, 2 * d, 4) + _conv(2 * d, 4 * d, 4), 4 * d * 4
        else:
            layers = _conv(3, d, 5) + _conv(d, 2 * d, 5) + _conv(2 * d, 4 * d, 5) + _conv(4 * d, 4 * d, 5)
            flat = 4 * d * 9
        self.layers = nn.Sequential(*layers, nn.Flatten(), nn.Linear(flat, 4 * d), nn.LeakyReLU(0.01))
        self.heads = _Heads(4 * d, latent, bits, binary_bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.heads(self.layers(x))


class ConvDecoder(nn.Module):
    """FC(z → d·s³) → view (d·s, s, s) → transposed convolutions (BatchNorm, LeakyReLU), sigmoid but at 44 px:
    28 px (s 4): 4→10→22→25→28; 44 px (s 5): 5→10→22→44→44; 64 px (s 8): 8→16→32→64→64 (reference `Decoder`)."""

    def __init__(self, image_shape: tuple[int, int, int], in_features: int, width: int, sigmoid: bool):
        super().__init__()
        d, s = width, _scaler(image_shape)
        self.fc = nn.Linear(in_features, d * s**3)
        self.start = (d * s, s, s)
        if image_shape == (1, 28, 28):
            layers = _deconv(4 * d, 4 * d, 4, 2) + _deconv(4 * d, 2 * d, 4, 2) + _deconv(2 * d, d, 4, 1)
            out = nn.ConvTranspose2d(d, 1, 4, stride=1, bias=False)
        elif image_shape == (1, 44, 44):
            layers = _deconv(5 * d, 4 * d, 4, 2, 1) + _deconv(4 * d, 2 * d, 4, 2) + _deconv(2 * d, d, 4, 2, 1)
            out = nn.ConvTranspose2d(d, 1, 3, stride=1, padding=1, bias=False)
        else:
            layers = (_deconv(8 * d, 4 * d, 5, 2, 2, 1) + _deconv(4 * d, 2 * d, 5, 2, 2, 1)
                      + _deconv(2 * d, d, 5, 2, 2, 1))
            out = nn.ConvTranspose2d(d, 3, 5, stride=1, padding=2, bias=False)
        self.layers = nn.Sequential(*layers, out)
        self.sigmoid = sigmoid

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.fc(z).view(-1, *self.start))
        return torch.sigmoid(x) if self.sigmoid else x


def check_architecture(architecture: str, image_shape: tuple[int, int, int]) -> None:
    """ConfigError when the built-in `architecture` cannot take images of `image_shape`."""
    image_shape = tuple(image_shape)
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {architecture!r}; valid: {', '.join(ARCHITECTURES)}")
    if architecture == "conv" and image_shape not in CONV_SIZES:
        raise ConfigError(f"the conv architecture takes images 1×28×28, 1×44×44 or 3×64×64, not "
                          f"{'×'.join(map(str, image_shape))}; use --set architecture=fc or resize the data")
    if architecture == "fc" and image_shape[1] < 8:
        raise ConfigError(f"the fc architecture needs images of at least 8×8 pixels, got "
                          f"{'×'.join(map(str, image_shape))}")


def build_networks(architecture: str, image_shape: tuple[int, int, int], *, latent: int, bits: int, width: int,
                   code_bits: int, code_p: int, translator: bool) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(encoder, conditioner, decoder) of a built-in architecture (module docstring); the decoder ends in a
    sigmoid except for 44 × 44 calorimeter images (reference)."""
    image_shape = tuple(image_shape)
    check_architecture(architecture, image_shape)
    conditioner = (Translator(latent, bits, code_bits, code_p, width) if translator
                   else ConcatConditioner(latent, bits, code_bits, code_p))
    sigmoid = image_shape[1] != 44
    if architecture == "fc":
        return (FCEncoder(image_shape, latent, bits, width), conditioner,
                FCDecoder(image_shape, conditioner.out_features, width, sigmoid))
    return (ConvEncoder(image_shape, latent, bits, width), conditioner,
            ConvDecoder(image_shape, conditioner.out_features, width, sigmoid))
