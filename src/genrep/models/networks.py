"""Encoder/decoder backbones shared by the autoencoder-family models.

Every arch is a *body* (convolutions or a flatten) and a *head* (linear layers). The encoder runs
body → [concatenate the condition embedding] → head → N×out_dim; the decoder runs
[concatenate the condition embedding to z] → head → body → *logits* N×C×H×W at exactly the input
size; the model maps logits into its value range (`to_value_range`).

Families (`ARCHS`):
- `mlp`: flatten → Linear+LeakyReLU(0.2) stack (`hidden`) → out_dim; any image size.
- `conv`: stride-2 k4 convolutions (`channels`, BN, LeakyReLU(0.2)) that halve the side at every
  level (so H and W must be divisible by 2**len(channels)), then an MLP head (`hidden`).
- `mnist`: the e2e Sinkhorn autoencoder reference MNIST nets (METHODS.md §1, (ref) notebook), for
  1×28×28 (and 32×32) gray images; LeakyReLU slope 0.01 (the reference's `F.leaky_relu` default),
  convolutions without bias followed by BN, N(0, 0.02) conv init. With d = 64·width:
    encoder 28×28: Conv(C→d,k4,s2,p1) 14×14 → Conv(d→d) 7×7 → Conv(d→d) 3×3 → FC(9d → out)
    (32×32: 16 → 8 → 4, FC(16d → out))
    decoder 28×28: FC(in → 4d)+LReLU → d×2×2 → ConvT(d→4d,k4,s2,p0) 6×6 → ConvT(4d→2d,k4,s2,p1)
    12×12 → ConvT(2d→d,k4,s1,p1) 13×13 → ConvT(d→C,k4,s2,p0) 28×28 (BN+LReLU after all but the last)
    decoder 32×32: FC(in → 16d) → d×4×4 → ConvT(k4,s2,p1) 4d×8×8 → ConvT(k4,s2,p1) 2d×16×16 →
    ConvT(k3,s1,p1) d×16×16 → ConvT(k4,s2,p1) C×32×32
- `calo`: nets for 44×44 calorimeter responses, widths (a, b, e) = (32, 64, 128)·width, BN +
  LeakyReLU(0.2):
    encoder: Conv(C→a,k4,s2,p1) 22×22 → Conv(a→b,k4,s2,p1) 11×11 → Conv(b→e,k4,s2,p2) 6×6 →
    FC(36e → out)
    decoder: FC(in → 36e)+LReLU → e×6×6 → ConvT(e→b,k4,s2,p2,output_padding=1) 11×11 →
    ConvT(b→a,k4,s2,p1) 22×22 → ConvT(a→C,k4,s2,p1) 44×44
- `wae64`: the WAE architecture of Tolstikhin et al. (2018) for 64×64 CelebA ((ref) `dcgan`
  encoder / `dcgan_mod` decoder, 5×5 kernels, "SAME" padding, BN + ReLU, N(0, 0.01) conv init);
  any H, W divisible by 16 (e.g. 32×32 too). Widths (128, 256, 512, 1024)·width:
    encoder: Conv(C→128,k5,s2,p2) H/2 → 256 H/4 → 512 H/8 → 1024 H/16 → FC(1024·H/16·W/16 → out)
    decoder: FC(in → 1024·H/8·W/8)+ReLU → 1024×H/8×W/8 → ConvT(1024→512,k5,s2,p2,op1) H/4 →
    ConvT(512→256) H/2 → ConvT(256→128) H → ConvT(128→C,k5,s1,p2) H (no BN/ReLU on the last)

The fixed archs (`mnist`, `calo`, `wae64`) ignore `hidden` and `channels` (their FC head maps
the conv features straight to out_dim, as in the reference code); scale their widths with the
keyword `width` (1.0 = the reference widths).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genrep.errors import ConfigError

ARCHS = ("mlp", "conv", "mnist", "calo", "wae64")
FIXED_ARCHS = ("mnist", "calo", "wae64")
OUTPUTS = ("sigmoid", "tanh")


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


def normal_init_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """DCGAN-style initialisation in place: conv / transposed-conv weights ~ N(0, std), BatchNorm
    weights ~ N(1, 0.02) and biases 0 (Radford et al. 2016; the e2e-SAE reference code)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


def to_value_range(logits: torch.Tensor, value_range: tuple[float, float], output: str) -> torch.Tensor:
    """Map decoder logits into [lo, hi]: "sigmoid": lo + σ(l)·(hi − lo);
    "tanh": lo + (tanh(l) + 1)/2·(hi − lo)."""
    lo, hi = value_range
    if output == "sigmoid":
        unit = torch.sigmoid(logits)
    elif output == "tanh":
        unit = (torch.tanh(logits) + 1.0) * 0.5
    else:
        raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}; got {output!r}")
    return unit * (hi - lo) + lo


def _scaled(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def check_layer_sizes(key: str, sizes) -> None:
    """Raise ConfigError naming `key` (e.g. "model.hidden") unless every item of `sizes` (hidden
    widths, conv channels) is an integer >= 1."""
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"{key} must be a list of integers >= 1, got {list(sizes)}")


def check_arch_fits(arch: str, image_shape) -> None:
    """Raise ConfigError (naming the sizes the arch takes) if `image_shape` (C, H, W) does not fit `arch`."""
    if arch not in ARCHS:
        raise ConfigError(f"unknown model.arch {arch!r}; valid: {', '.join(ARCHS)}")
    _, h, w = image_shape
    if arch == "mnist" and (h, w) not in ((28, 28), (32, 32)):
        need = "28×28 or 32×32 images"
    elif arch == "calo" and (h, w) != (44, 44):
        need = "44×44 images"
    elif arch == "wae64" and (h % 16 or w % 16 or h < 16 or w < 16):
        need = "H and W divisible by 16 (e.g. 64×64)"
    else:
        return
    raise ConfigError(f"model.arch {arch!r} needs {need}, got {h}×{w}: set data.image_size / data.pad_to,"
                      f" or use model.arch conv or mlp")


def _conv_block(a: int, b: int, k: int, s: int, p: int, act: nn.Module) -> list[nn.Module]:
    return [nn.Conv2d(a, b, k, stride=s, padding=p, bias=False), nn.BatchNorm2d(b), act]


def _deconv_block(a: int, b: int, k: int, s: int, p: int, act: nn.Module, op: int = 0) -> list[nn.Module]:
    return [nn.ConvTranspose2d(a, b, k, stride=s, padding=p, output_padding=op, bias=False), nn.BatchNorm2d(b), act]


def _fixed_encoder_body(arch: str, image_shape, width: float) -> tuple[nn.Sequential, int]:
    """The conv body of a fixed arch (ending in Flatten) and its number of output features."""
    c, h, w = image_shape
    if arch == "mnist":  # (ref) e2e-SAE MNIST encoder: 3 × [Conv k4 s2 p1, BN, LeakyReLU(0.01)]
        d = _scaled(64, width)
        layers = [*_conv_block(c, d, 4, 2, 1, nn.LeakyReLU(0.01)), *_conv_block(d, d, 4, 2, 1, nn.LeakyReLU(0.01)),
                  *_conv_block(d, d, 4, 2, 1, nn.LeakyReLU(0.01))]
        flat, std = d * (h // 8) * (w // 8), 0.02  # 28 → 14 → 7 → 3; 32 → 16 → 8 → 4
    elif arch == "calo":  # 44 → 22 → 11 → 6
        a, b, e = (_scaled(n, width) for n in (32, 64, 128))
        layers = [*_conv_block(c, a, 4, 2, 1, nn.LeakyReLU(0.2)), *_conv_block(a, b, 4, 2, 1, nn.LeakyReLU(0.2)),
                  *_conv_block(b, e, 4, 2, 2, nn.LeakyReLU(0.2))]
        flat, std = e * 6 * 6, 0.02
    else:  # wae64: (ref) 4 × [Conv k5 s2 "SAME", BN, ReLU], 128-256-512-1024 channels
        widths = [_scaled(n, width) for n in (128, 256, 512, 1024)]
        layers = []
        for a, b in zip([c, *widths[:-1]], widths):
            layers += _conv_block(a, b, 5, 2, 2, nn.ReLU())
        flat, std = widths[-1] * (h // 16) * (w // 16), 0.01
    return normal_init_(nn.Sequential(*layers, nn.Flatten()), std), flat


def _fixed_decoder(arch: str, image_shape, in_dim: int, width: float) -> tuple[nn.Sequential, nn.Sequential]:
    """(head, body) of a fixed arch's decoder: FC to the first feature map, then transposed convs."""
    c, h, w = image_shape
    if arch == "mnist":
        d = _scaled(64, width)
        act = nn.LeakyReLU(0.01)
        if (h, w) == (28, 28):  # (ref) 2 → 6 → 12 → 13 → 28
            g = 2
            convs = [*_deconv_block(d, 4 * d, 4, 2, 0, act), *_deconv_block(4 * d, 2 * d, 4, 2, 1, act),
                     *_deconv_block(2 * d, d, 4, 1, 1, act),
                     nn.ConvTranspose2d(d, c, 4, stride=2, padding=0, bias=False)]
        else:  # 32×32: 4 → 8 → 16 → 16 → 32
            g = 4
            convs = [*_deconv_block(d, 4 * d, 4, 2, 1, act), *_deconv_block(4 * d, 2 * d, 4, 2, 1, act),
                     *_deconv_block(2 * d, d, 3, 1, 1, act),
                     nn.ConvTranspose2d(d, c, 4, stride=2, padding=1, bias=False)]
        head = nn.Sequential(nn.Linear(in_dim, d * g * g), nn.LeakyReLU(0.01))
        first, gh, gw, std = d, g, g, 0.02
    elif arch == "calo":  # 6 → 11 → 22 → 44
        a, b, e = (_scaled(n, width) for n in (32, 64, 128))
        act = nn.LeakyReLU(0.2)
        convs = [*_deconv_block(e, b, 4, 2, 2, act, op=1), *_deconv_block(b, a, 4, 2, 1, act),
                 nn.ConvTranspose2d(a, c, 4, stride=2, padding=1)]
        head = nn.Sequential(nn.Linear(in_dim, e * 36), nn.LeakyReLU(0.2))
        first, gh, gw, std = e, 6, 6, 0.02
    else:  # wae64: (ref) dcgan_mod decoder: FC → H/8, 3 × [ConvT k5 s2, BN, ReLU], ConvT k5 s1 → C
        widths = [_scaled(n, width) for n in (1024, 512, 256, 128)]
        convs = []
        for a, b in zip(widths, widths[1:]):
            convs += _deconv_block(a, b, 5, 2, 2, nn.ReLU(), op=1)
        convs.append(nn.ConvTranspose2d(widths[-1], c, 5, stride=1, padding=2))
        gh, gw = h // 8, w // 8
        head = nn.Sequential(nn.Linear(in_dim, widths[0] * gh * gw), nn.ReLU())
        first, std = widths[0], 0.01
    body = normal_init_(nn.Sequential(nn.Unflatten(1, (first, gh, gw)), *convs), std)
    return head, body


class Encoder(nn.Module):
    """x (N×C×H×W) [+ condition embedding (N×E)] → features (N×out_dim).

    arch: one of `ARCHS` (see the module docstring for the layers); hidden / channels: sizes for
    `mlp` / `conv` (ignored by the fixed archs); width: width multiplier of the fixed archs.
    """

    def __init__(self, image_shape, out_dim: int, *, arch: str, hidden: list[int], channels: list[int],
                 cond_dim: int = 0, width: float = 1.0):
        super().__init__()
        c, h, w = image_shape
        check_arch_fits(arch, image_shape)
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
            self.body, flat = _fixed_encoder_body(arch, image_shape, width)
            self.head = nn.Linear(flat + cond_dim, out_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x)
        if cond is not None:
            h = torch.cat([h, cond], dim=1)
        return self.head(h)


class Decoder(nn.Module):
    """z (N×D) [+ condition embedding] → logits N×C×H×W (exactly the image size).

    Same arguments as `Encoder`; `in_dim` is the latent size D.
    """

    def __init__(self, image_shape, in_dim: int, *, arch: str, hidden: list[int], channels: list[int],
                 cond_dim: int = 0, width: float = 1.0):
        super().__init__()
        self.image_shape = tuple(image_shape)
        c, h, w = image_shape
        check_arch_fits(arch, image_shape)
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
            self.head, self.body = _fixed_decoder(arch, image_shape, in_dim + cond_dim, width)

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

    def condition_batch(self, n: int, cond: torch.Tensor | None, device) -> dict[str, torch.Tensor]:
        """The batch dict for sampling n images: {"y": labels} or {"c": conditions} from `cond`
        (int64 labels (n,) or conditions n×D), or the cycling default labels when `cond` is None."""
        if cond is None:
            return self.default_condition(n, device)
        cond = torch.as_tensor(cond, device=device)
        if len(cond) != n:
            from genrep.errors import InputError

            raise InputError(f"cond has {len(cond)} rows but n={n} samples were asked for")
        return {"y": cond} if self.num_classes is not None else {"c": cond}


def log_normal_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row: ½ Σ (mu² + σ² − log σ² − 1)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(dim=1)


LOG_2PI = math.log(2 * math.pi)
