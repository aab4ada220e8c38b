"""The diffusion UNet (guided-diffusion style, Dhariwal & Nichol 2021) with an explicit encoder/decoder split.

Architecture (the reference UNet of the DDGM/DAED and joint-diffusion code, METHODS.md §2):
- sinusoidal timestep embedding of width C = `model_channels` (max period 10000) → Linear(C→4C) →
  SiLU → Linear(4C→4C); with `num_classes`, a learned class embedding (K×4C) is added to it;
- input convolution, then per level `num_res_blocks` ResBlocks (GroupNorm, SiLU, conv; the time
  embedding enters as scale-shift norm `norm(h)·(1 + s) + b`), each followed by multi-head
  self-attention where the level's side is in `attention_resolutions`; between levels a stride-2
  convolution (or a down-sampling ResBlock with `resblock_updown`);
- middle block: ResBlock → attention → ResBlock;
- output levels mirror the input (num_res_blocks + 1 ResBlocks each, every one fed the
  concatenation of h and one skip tensor), up-sampling by nearest interpolation **to the exact size
  of the next skip tensor** (so 28 → 14 → 7 and 7 → 14 → 28, or 7 → 4 → 7 with four levels) + conv;
- output: GroupNorm → SiLU → conv (zero-initialised, as is the last conv of every ResBlock and the
  attention projection, so a fresh model outputs exactly 0 and every block starts as identity).

Shapes: `x_t` N×in_channels×H×W (any H, W ≥ 1), `t` (N,) float or int timesteps, `y` (N,) int64
class labels in [0, num_classes). The output is N×out_channels×H×W (out_channels doubles with
`learn_sigma`: first half ε (or the chosen mean target), second half the variance interpolation
values v of Nichol & Dhariwal, as in improved-diffusion).

Encoder/decoder split (joint diffusion models, thesis ch. 6, Fig. 6.4.1): `encode(x_t, t, y)`
returns the bottleneck h (the middle block's output) and the list of skip tensors; `decode(h,
skips, t, y)` runs the output blocks. `forward(x_t, t, y) == decode(*encode(x_t, t, y), t, y)`
exactly. `pool_features(h, skips)` is the thesis's pooled representation z_t (every skip and the
middle block, globally average-pooled and concatenated, Sec. 6.4); with 64 channels, mult
(1, 2, 2, 2) and 3 ResBlocks it has 1856 features at 28×28, the figure in thesis App. 6.8.1.

Thesis vs reference code (METHODS.md §2): the thesis says "three attention heads"; the reference
code uses 4, and 3 heads cannot divide 64 or 128 channels, so `num_heads=4` is the default. The
reference places attention with guided-diffusion's rule "16,8": attention where the down-sampling
factor ds equals image_size // 16 or image_size // 8; for 28 px that is ds ∈ {1, 3}, i.e. one
full-resolution 28×28 attention level (and never 16×16 or 8×8). `attention_resolutions=None`
applies exactly that rule (`reference_attention_sides`); a tuple of sides places attention at the
levels whose feature map has that side (28 px with mult (1, 2, 2) has sides 28, 14, 7).

Mixed precision: `autocast="bf16"` runs encode/decode under `torch.autocast(device, bfloat16)`
(1.4–2.4× faster on CPUs with AMX); wrapping calls in `torch.autocast("cpu", dtype=torch.bfloat16)`
yourself works too. Group norms always compute in float32; `encode` returns float32 h/skips and
`decode`/`forward` return float32 output either way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from genrep.errors import ConfigError, InputError

REFERENCE_ATTENTION = (16, 8)
AUTOCAST_DTYPES = {"bf16": torch.bfloat16}


def level_sides(image_size: int, num_levels: int) -> tuple[int, ...]:
    """Feature-map side at every level: each down-sampling maps s → ceil(s / 2) (28 → 14 → 7 → 4)."""
    sides = [int(image_size)]
    for _ in range(num_levels - 1):
        sides.append((sides[-1] + 1) // 2)
    return tuple(sides)


def reference_attention_sides(image_size: int, num_levels: int,
                              resolutions: tuple[int, ...] = REFERENCE_ATTENTION) -> tuple[int, ...]:
    """The sides at which guided-diffusion's `attention_resolutions` rule puts attention.

    The reference code turns each resolution r into a down-sampling factor ds = image_size // r and
    adds attention at levels with 2**level == ds. For image_size 32 and (16, 8) that is sides
    (16, 8); for 28 it is (28,) (ds = 1 and 3; 3 is never a power of two)."""
    factors = {int(image_size) // int(r) for r in resolutions}
    sides = level_sides(image_size, num_levels)
    return tuple(side for level, side in enumerate(sides) if 2**level in factors)


@dataclasses.dataclass
class UNetConfig:
    """Hyperparameters of `UNet`. The defaults are the reference FashionMNIST UNet (METHODS.md §2:
    64 channels, mult (1, 2, 2), 3 ResBlocks per level, 4 heads, full-resolution attention at 28×28)
    except `dropout` (the reference trains with 0.3).

    - in_channels: image channels C of x_t.
    - out_channels: output channels before `learn_sigma` doubles them; None = in_channels.
    - learn_sigma: also output the variance values (2·out_channels outputs, improved-diffusion).
    - image_size: the side the model is built for; only used to place attention (the network runs
      on any H×W).
    - attention_resolutions: feature-map sides with self-attention (each must be a side of some
      level, see `level_sides`); None = the reference rule (16, 8) (`reference_attention_sides`).
      The middle block always has attention unless `middle_attention=False`.
    - num_heads / num_head_channels: heads per attention block; num_head_channels > 0 instead fixes
      the channels per head (heads = channels // num_head_channels).
    - norm_groups: GroupNorm groups (32 in the reference), clamped per layer to the largest divisor
      of the layer's channels that is ≤ norm_groups (16 channels → 16 groups, 48 → 24).
    - resblock_updown: down/up-sample inside ResBlocks (avg-pool / nearest) instead of stride-2 /
      nearest+conv layers.
    - num_classes: K, adds a learned class embedding to the time embedding (needs y in forward).
    - autocast: None or "bf16" (see the module docstring).
    - encoder_only: build only the time embedding, input blocks and middle block (`encode`
      works, `decode`/`forward` raise): a noisy classifier on x_t for classifier guidance, like
      guided-diffusion's EncoderUNetModel.
    """

    in_channels: int = 1
    model_channels: int = 64
    out_channels: int | None = None
    learn_sigma: bool = False
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 3
    image_size: int = 28
    attention_resolutions: tuple[int, ...] | None = None
    middle_attention: bool = True
    num_heads: int = 4
    num_head_channels: int = -1
    dropout: float = 0.0
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False
    num_classes: int | None = None
    norm_groups: int = 32
    autocast: str | None = None
    encoder_only: bool = False

    def __post_init__(self):
        for key in ("in_channels", "model_channels", "num_res_blocks", "image_size", "num_heads", "norm_groups"):
            _check_int(key, getattr(self, key), minimum=1)
        for key in ("out_channels", "num_classes"):
            if getattr(self, key) is not None:
                _check_int(key, getattr(self, key), minimum=1)
        _check_int("num_head_channels", self.num_head_channels, minimum=-1)
        if self.num_head_channels == 0:
            raise ConfigError("unet.num_head_channels must be -1 (use num_heads) or a positive channel count, got 0")
        for key in ("learn_sigma", "middle_attention", "use_scale_shift_norm", "resblock_updown", "encoder_only"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"unet.{key} must be true or false, got {getattr(self, key)!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"unet.dropout must be a probability in [0, 1), got {self.dropout!r}")
        self.dropout = float(self.dropout)
        if self.autocast is not None and self.autocast not in AUTOCAST_DTYPES:
            raise ConfigError(f"unet.autocast must be null or one of {', '.join(AUTOCAST_DTYPES)},"
                              f" got {self.autocast!r}")
        if not isinstance(self.channel_mult, (list, tuple)) or not self.channel_mult:
            raise ConfigError(f"unet.channel_mult must be a non-empty list of positive ints, got {self.channel_mult!r}")
        for i, mult in enumerate(self.channel_mult):
            _check_int(f"channel_mult[{i}]", mult, minimum=1)
        self.channel_mult = tuple(self.channel_mult)
        if self.attention_resolutions is not None:
            if not isinstance(self.attention_resolutions, (list, tuple)):
                raise ConfigError("unet.attention_resolutions must be null (reference rule) or a list of feature-map"
                                  f" sides, got {self.attention_resolutions!r}")
            for i, side in enumerate(self.attention_resolutions):
                _check_int(f"attention_resolutions[{i}]", side, minimum=1)
            self.attention_resolutions = tuple(self.attention_resolutions)
            sides = level_sides(self.image_size, len(self.channel_mult))
            missing = [s for s in self.attention_resolutions if s not in sides]
            if missing:
                ref = reference_attention_sides(self.image_size, len(self.channel_mult))
                raise ConfigError(
                    f"unet.attention_resolutions {list(missing)} match no level: image_size {self.image_size} with"
                    f" channel_mult {list(self.channel_mult)} has feature-map sides {list(sides)} (the reference"
                    f" rule (16, 8) gives {list(ref)}; use attention_resolutions: null for it)")
        middle = {len(self.channel_mult) - 1} if self.middle_attention else set()
        for level in sorted(set(self.attention_levels) | middle):
            channels = self.model_channels * self.channel_mult[level]
            per_head = self.num_head_channels
            if per_head == -1 and channels % self.num_heads:
                raise ConfigError(f"unet.num_heads={self.num_heads} must divide the {channels} channels of every"
                                  " attention block (or set unet.num_head_channels)")
            if per_head > 0 and channels % per_head:
                raise ConfigError(f"unet.num_head_channels={per_head} must divide the {channels} channels of every"
                                  " attention block")

    @property
    def attention_sides(self) -> tuple[int, ...]:
        """The sides that get attention (the resolved `attention_resolutions`)."""
        if self.attention_resolutions is None:
            return reference_attention_sides(self.image_size, len(self.channel_mult))
        return tuple(sorted(set(self.attention_resolutions), reverse=True))

    @property
    def attention_levels(self) -> tuple[int, ...]:
        """Level indices (0 = full resolution) whose blocks get attention."""
        sides = level_sides(self.image_size, len(self.channel_mult))
        return tuple(level for level, side in enumerate(sides) if side in self.attention_sides)

    @property
    def output_channels(self) -> int:
        """Channels of the UNet output: (out_channels or in_channels), doubled with learn_sigma."""
        base = self.out_channels if self.out_channels is not None else self.in_channels
        return base * (2 if self.learn_sigma else 1)


def _check_int(key: str, value, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"unet.{key} must be an integer >= {minimum}, got {value!r}")


# --------------------------------------------------------------------------------------------- layers


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (Vaswani et al. 2017; DDPM): t (N,) → N×dim float32, [cos(t·f) | sin(t·f)]
    with frequencies f_i = max_period^(−i/half), i = 0..half−1 (half = dim // 2); an odd dim gets a
    zero last column. t may be fractional."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def _groups(channels: int, norm_groups: int) -> int:
    return max(g for g in range(1, min(channels, norm_groups) + 1) if channels % g == 0)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and cast back to the input dtype (stable under bf16 autocast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def norm(channels: int, norm_groups: int) -> GroupNorm32:
    return GroupNorm32(_groups(channels, norm_groups), channels)


def zero_(module: nn.Module) -> nn.Module:
    """Zero every parameter of `module` in place and return it."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class Downsample(nn.Module):
    """N×C×H×W → N×C×ceil(H/2)×ceil(W/2): stride-2 3×3 conv, or 2×2 average pooling (ceil mode)."""

    def __init__(self, channels: int, *, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op is not None:
            return self.op(x)
        return F.avg_pool2d(x, 2, ceil_mode=True)


class Upsample(nn.Module):
    """N×C×h×w → N×C×size (nearest interpolation; size None = 2h×2w), then a 3×3 conv if use_conv."""

    def __init__(self, channels: int, *, use_conv: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is None:
            size = (2 * x.shape[-2], 2 * x.shape[-1])
        x = F.interpolate(x, size=tuple(size), mode="nearest")
        return self.conv(x) if self.conv is not None else x


class ResBlock(nn.Module):
    """Residual block conditioned on the embedding: N×C_in×H×W, N×E → N×C_out×H'×W'.

    h = conv(SiLU(norm(x))); with scale-shift norm, (s, b) = Linear(SiLU(emb)) and
    h = conv₀(dropout(SiLU(norm(h)·(1 + s) + b))), else h = conv₀(dropout(SiLU(norm(h + Linear(SiLU(emb))))));
    out = skip(x) + h with conv₀ zero-initialised and skip = identity or a 1×1 conv. `down`/`up`
    resample both paths (H' = ceil(H/2), or the `size` given to forward)."""

    def __init__(self, channels: int, emb_channels: int, *, out_channels: int | None = None, dropout: float = 0.0,
                 use_scale_shift_norm: bool = True, norm_groups: int = 32, up: bool = False, down: bool = False):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(norm(channels, norm_groups), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, use_conv=False), Upsample(channels, use_conv=False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, use_conv=False), Downsample(channels, use_conv=False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm
                                                             else out_channels))
        self.out_layers = nn.Sequential(norm(out_channels, norm_groups), nn.SiLU(), nn.Dropout(dropout),
                                        zero_(nn.Conv2d(out_channels, out_channels, 3, padding=1)))
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            if isinstance(self.h_upd, Upsample):
                h, x = self.h_upd(h, size), self.x_upd(x, size)
            else:
                h, x = self.h_upd(h), self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all H·W positions, residual: N×C×H×W → N×C×H×W.

    qkv = Conv1d(C→3C)(norm(x)), laid out per head as [q | k | v] (guided-diffusion's "legacy" order,
    so reference state dicts load), softmax(q·kᵀ/√d)·v per head (d = C / heads), zero-initialised
    output projection."""

    def __init__(self, channels: int, *, num_heads: int = 4, num_head_channels: int = -1, norm_groups: int = 32):
        super().__init__()
        self.num_heads = num_heads if num_head_channels == -1 else channels // num_head_channels
        self.norm = norm(channels, norm_groups)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, *spatial = x.shape
        flat = x.reshape(n, c, -1)
        qkv = self.qkv(self.norm(flat))  # N×3C×L
        length, heads = qkv.shape[-1], self.num_heads
        q, k, v = qkv.reshape(n, heads, 3 * (c // heads), length).transpose(-1, -2).chunk(3, dim=-1)  # N×heads×L×d
        out = F.scaled_dot_product_attention(q, k, v)  # N×heads×L×d
        out = out.transpose(-1, -2).reshape(n, c, length)
        return (flat + self.proj_out(out)).reshape(n, c, *spatial)


class EmbedSequential(nn.Sequential):
    """A sequence of layers where ResBlocks also get the embedding and up-sampling layers the target size."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb, size)
            elif isinstance(layer, Upsample):
                x = layer(x, size)
            else:
                x = layer(x)
        return x


# ----------------------------------------------------------------------------------------------- UNet


class UNet(nn.Module):
    """ε-prediction network ε_θ(x_t, t[, y]): N×in_channels×H×W, (N,), (N,) → N×output_channels×H×W.

    Module names follow guided-diffusion (time_embed, label_emb, input_blocks, middle_block,
    output_blocks, out). See the module docstring for the architecture and the encode/decode split."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        cfg = self.config = config if config is not None else UNetConfig()
        mc, groups = cfg.model_channels, cfg.norm_groups
        self.time_dim = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, self.time_dim), nn.SiLU(),
                                        nn.Linear(self.time_dim, self.time_dim))
        self.label_emb = nn.Embedding(cfg.num_classes, self.time_dim) if cfg.num_classes is not None else None
        attention_levels = set(cfg.attention_levels)

        def res(ch_in, ch_out, **kw):
            return ResBlock(ch_in, self.time_dim, out_channels=ch_out, dropout=cfg.dropout,
                            use_scale_shift_norm=cfg.use_scale_shift_norm, norm_groups=groups, **kw)

        def attn(ch):
            return AttentionBlock(ch, num_heads=cfg.num_heads, num_head_channels=cfg.num_head_channels,
                                  norm_groups=groups)

        ch = input_ch = cfg.channel_mult[0] * mc
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))])
        skip_channels, skip_levels = [ch], [0]
        last = len(cfg.channel_mult) - 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers = [res(ch, mult * mc)]
                ch = mult * mc
                if level in attention_levels:
                    layers.append(attn(ch))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_channels.append(ch)
                skip_levels.append(level)
            if level != last:
                down = res(ch, ch, down=True) if cfg.resblock_updown else Downsample(ch, use_conv=True)
                self.input_blocks.append(EmbedSequential(down))
                skip_channels.append(ch)
                skip_levels.append(level + 1)
        self.skip_channels: tuple[int, ...] = tuple(skip_channels)
        self.skip_levels: tuple[int, ...] = tuple(skip_levels)  # level (resolution index) of every skip
        self.middle_channels = ch
        middle = [res(ch, ch)] + ([attn(ch)] if cfg.middle_attention else []) + [res(ch, ch)]
        self.middle_block = EmbedSequential(*middle)
        if cfg.encoder_only:
            self.output_blocks = self.out = None
            return

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), mult * mc)]
                ch = mult * mc
                if level in attention_levels:
                    layers.append(attn(ch))
                if level and i == cfg.num_res_blocks:
                    layers.append(res(ch, ch, up=True) if cfg.resblock_updown else Upsample(ch, use_conv=True))
                self.output_blocks.append(EmbedSequential(*layers))
        self.out = nn.Sequential(norm(ch, groups), nn.SiLU(),
                                 zero_(nn.Conv2d(input_ch, cfg.output_channels, 3, padding=1)))

    # ------------------------------------------------------------------------------- public API

    @property
    def feature_dim(self) -> int:
        """Length of `pool_features`: the channels of every skip tensor plus the middle block."""
        return sum(self.skip_channels) + self.middle_channels

    def time_embedding(self, t: torch.Tensor | int | float, y: torch.Tensor | None = None, *,
                       batch_size: int | None = None) -> torch.Tensor:
        """Embedding that conditions every ResBlock: t (N,) [, y (N,) int64] → N×4C.

        A scalar t is broadcast to `batch_size` (or to len(y), or 1)."""
        if batch_size is None:
            batch_size = len(y) if isinstance(y, torch.Tensor) and y.ndim == 1 else (
                len(t) if isinstance(t, torch.Tensor) and t.ndim == 1 else 1)
        t = self._check_t(t, batch_size)
        self._check_y(y, batch_size)
        with self._autocast(t.device):
            return self._embed(t, y)

    def encode(self, x_t: torch.Tensor, t: torch.Tensor | int | float,
               y: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encoder e(x_t): x_t N×C×H×W → (h, skips).

        h: the middle block's output, N×middle_channels×h×w (h = H after len(channel_mult)−1
        halvings, rounding up); skips: 1 + levels·num_res_blocks + levels − 1 tensors in input order,
        N×skip_channels[i]×H_i×W_i. All float32; edit or optimise them and pass them to `decode`."""
        t = self._check_inputs(x_t, t, y)
        with self._autocast(x_t.device):
            emb = self._embed(t, y)
            return self._encode(x_t, emb)

    def decode(self, h: torch.Tensor, skips: list[torch.Tensor] | tuple[torch.Tensor, ...],
               t: torch.Tensor | int | float, y: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder d(h, skips) → N×output_channels×H×W float32 (H×W = the size of skips[0]).

        `skips` is not modified. Raises InputError if h or skips do not match `encode`'s layout."""
        self._check_decoder()
        self._check_features(h, skips)
        t = self._check_t(t, h.shape[0])
        self._check_y(y, h.shape[0])
        with self._autocast(h.device):
            emb = self._embed(t, y)
            return self._decode(h, skips, emb)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int | float, y: torch.Tensor | None = None) -> torch.Tensor:
        """ε_θ(x_t, t[, y]): x_t N×in_channels×H×W, t (N,) (or a scalar), y (N,) int64 if num_classes
        → N×output_channels×H×W float32. Equals `decode(*encode(x_t, t, y), t, y)` exactly."""
        self._check_decoder()
        t = self._check_inputs(x_t, t, y)
        with self._autocast(x_t.device):
            emb = self._embed(t, y)
            h, skips = self._encode(x_t, emb)
            return self._decode(h, skips, emb)

    @staticmethod
    def pool_features(h: torch.Tensor, skips: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Pooled representation z_t (thesis Sec. 6.4): every skip tensor then h, each averaged over
        H×W, concatenated → N×feature_dim. Differentiable in h and skips."""
        return torch.cat([s.mean(dim=(-2, -1)) for s in skips] + [h.mean(dim=(-2, -1))], dim=1)

    # ------------------------------------------------------------------------------- internals

    def _embed(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(t, self.config.model_channels))
        if self.label_emb is not None:
            emb = emb + self.label_emb(y)
        return emb

    def _encode(self, x: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        return h.float(), [s.float() for s in skips]

    def _decode(self, h: torch.Tensor, skips, emb: torch.Tensor) -> torch.Tensor:
        skips = list(skips)
        for block in self.output_blocks:
            h = torch.cat([h, skips.pop()], dim=1)
            h = block(h, emb, tuple(skips[-1].shape[-2:]) if skips else None)
        return self.out(h).float()

    def _autocast(self, device: torch.device):
        if self.config.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[self.config.autocast])

    def _check_inputs(self, x_t, t, y) -> torch.Tensor:
        c = self.config.in_channels
        if not isinstance(x_t, torch.Tensor):
            raise InputError(f"x_t must be a torch.Tensor, got {type(x_t).__name__}")
        if x_t.ndim != 4 or x_t.shape[1] != c:
            raise InputError(f"x_t must have shape N×{c}×H×W (unet.in_channels={c}), got {tuple(x_t.shape)}")
        if not x_t.is_floating_point():
            raise InputError(f"x_t must be a float tensor, got dtype {x_t.dtype}")
        n = x_t.shape[0]
        t = self._check_t(t, n, device=x_t.device)
        self._check_y(y, n)
        return t

    @staticmethod
    def _check_t(t, n: int, device: torch.device | None = None) -> torch.Tensor:
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            t = torch.full((n,), float(t), device=device)
        if not isinstance(t, torch.Tensor) or t.dtype == torch.bool or t.is_complex():
            raise InputError(f"t must be a tensor of {n} timesteps (int or float), got {t!r:.80}")
        if t.ndim == 0:
            t = t.expand(n)
        if t.shape != (n,):
            raise InputError(f"t must have shape ({n},), one timestep per image, got {tuple(t.shape)}")
        return t

    def _check_y(self, y, n: int) -> None:
        k = self.config.num_classes
        if k is None:
            if y is not None:
                raise InputError("this UNet is unconditional (unet.num_classes is null): call it without y")
            return
        if y is None:
            raise InputError(f"this UNet is class-conditional (unet.num_classes={k}): pass labels y of shape ({n},)")
        if not isinstance(y, torch.Tensor) or y.dtype in (torch.bool,) or y.is_floating_point() or y.is_complex():
            raise InputError(f"y must be an int64 tensor of class labels, got {getattr(y, 'dtype', type(y).__name__)}")
        if y.shape != (n,):
            raise InputError(f"y must have shape ({n},), one label per image, got {tuple(y.shape)}")
        if n and (int(y.min()) < 0 or int(y.max()) >= k):
            raise InputError(f"y must hold labels in [0, {k}), got values in [{int(y.min())}, {int(y.max())}]")

    def _check_decoder(self) -> None:
        if self.output_blocks is None:
            raise InputError("this UNet is encoder-only (unet.encoder_only=true): use encode(x_t, t)")

    def _check_features(self, h, skips) -> None:
        if not isinstance(h, torch.Tensor) or h.ndim != 4 or h.shape[1] != self.middle_channels:
            shape = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
            raise InputError(f"h must have shape N×{self.middle_channels}×h×w (the middle block output of encode),"
                             f" got {shape}")
        if not isinstance(skips, (list, tuple)) or len(skips) != len(self.skip_channels):
            got = len(skips) if isinstance(skips, (list, tuple)) else type(skips).__name__
            raise InputError(f"skips must be the list of {len(self.skip_channels)} tensors returned by encode,"
                             f" got {got}")
        levels = len(self.config.channel_mult)
        first = skips[0]
        if not isinstance(first, torch.Tensor) or first.ndim != 4:
            raise InputError(f"skips[0] must be a 4-d tensor N×{self.skip_channels[0]}×H×W, got {first!r:.80}")
        heights, widths = level_sides(first.shape[-2], levels), level_sides(first.shape[-1], levels)
        for i, (s, c, level) in enumerate(zip(skips, self.skip_channels, self.skip_levels)):
            expected = (h.shape[0], c, heights[level], widths[level])
            if not isinstance(s, torch.Tensor) or tuple(s.shape) != expected:
                shape = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise InputError(f"skips[{i}] must have shape {'×'.join(map(str, expected))} (the layout of encode),"
                                 f" got {shape}")
        if h.shape[-2:] != (heights[-1], widths[-1]):
            raise InputError(f"h must have spatial size {heights[-1]}×{widths[-1]} to match the skips, got"
                             f" {tuple(h.shape)}")
