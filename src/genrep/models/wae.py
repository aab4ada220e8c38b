"""Wasserstein autoencoder with the MMD penalty (WAE-MMD, Tolstikhin et al. 2018) and its
conditional version (cWAE, the thesis' ch.4 baseline, Table 4.3.1).

Deterministic encoder z = E(x[, y]) and decoder x̂ = G(z[, y]); loss per batch

    L = recon_scale · mean_i ‖x_i − x̂_i‖²  +  λ · MMD²_k(q_z, p_z),     p_z = N(0, σ²·I)

- reconstruction: the squared error *summed over pixels* (c(x, y) = ‖x − y‖², in the model's
  value range), averaged over the batch, times `recon_scale` (default 1; the reference code's
  "l2sq" cost uses 0.05).
- MMD: the unbiased U-statistic with the inverse multiquadratic kernel k(a, b) = C / (C + ‖a − b‖²)
  summed over C ∈ {0.1, 0.2, 0.5, 1, 2, 5, 10} · 2·d_z·σ² ((ref) `mmd_penalty`, kernel "IMQ"), with
  one prior sample per encoded code. λ = 10 as in the reference configs (MNIST and CelebA).
The conditional WAE (like the cVAE) feeds the condition embedding (one-hot label or standardised
condition vector) to both encoder and decoder; the prior stays N(0, σ²I) for every condition.
"""

from __future__ import annotations

import dataclasses

import torch

from genrep.errors import ConfigError, InputError
from genrep.models.base import GenerativeModel, Output
from genrep.models.networks import (ARCHS, OUTPUTS, ConditionEmbedding, Decoder, Encoder, check_layer_sizes,
                                    to_value_range)

IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a_i − b_j‖² for a (N×D) and b (M×D) as an N×M matrix (clamped at 0 against rounding)."""
    d = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1).unsqueeze(0) - 2.0 * a @ b.T
    return d.clamp_min(0.0)


def imq_mmd(x: torch.Tensor, y: torch.Tensor, *, c_base: float, scales=IMQ_SCALES) -> torch.Tensor:
    """Unbiased estimate of MMD²(P, Q) from x ~ P (N×D) and y ~ Q (M×D), N, M ≥ 2, with the kernel
    Σ_s C_s / (C_s + ‖a − b‖²), C_s = s·c_base:

        1/(N(N−1)) Σ_{i≠j} k(x_i, x_j) + 1/(M(M−1)) Σ_{i≠j} k(y_i, y_j) − 2/(NM) Σ_{i,j} k(x_i, y_j)

    (for N = M this is the reference WAE code's statistic). Returns a scalar; it can be negative."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise InputError(f"imq_mmd needs two N×D / M×D samples, got {tuple(x.shape)} and {tuple(y.shape)}")
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise InputError(f"the unbiased MMD needs at least 2 points per sample, got {n} and {m}")
    dxx, dyy, dxy = squared_distances(x, x), squared_distances(y, y), squared_distances(x, y)
    total = x.new_zeros(())
    for scale in scales:
        c = scale * c_base
        kxx, kyy, kxy = c / (c + dxx), c / (c + dyy), c / (c + dxy)
        total = total + (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) \
            + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2.0 * kxy.mean()
    return total


@dataclasses.dataclass
class WAEConfig:
    """arch: one of ARCHS (genrep.models.networks); hidden/channels: sizes for mlp/conv; width: width
    multiplier of the fixed archs (mnist, calo, wae64); lambda_mmd: λ; kernel_scales: multiples of
    C = 2·latent_dim·prior_std²; prior_std: σ of p_z = N(0, σ²I); output: how decoder logits map into
    the value range (sigmoid | tanh); recon_scale: factor on the summed squared error."""

    arch: str = "mlp"
    latent_dim: int = 16
    hidden: list[int] = dataclasses.field(default_factory=lambda: [512, 256])
    channels: list[int] = dataclasses.field(default_factory=lambda: [32, 64])
    width: float = 1.0
    lambda_mmd: float = 10.0
    kernel_scales: tuple[float, ...] = IMQ_SCALES
    prior_std: float = 1.0
    output: str = "sigmoid"
    recon_scale: float = 1.0

    def __post_init__(self):
        check_layer_sizes("model.hidden", self.hidden)
        check_layer_sizes("model.channels", self.channels)
        if self.arch not in ARCHS:
            raise ConfigError(f"model.arch must be one of {', '.join(ARCHS)}; got {self.arch!r}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"model.output must be one of {', '.join(OUTPUTS)}; got {self.output!r}")
        self.kernel_scales = tuple(float(s) for s in self.kernel_scales)
        if not self.kernel_scales or min(self.kernel_scales) <= 0:
            raise ConfigError("model.kernel_scales must be a non-empty list of positive numbers,"
                              f" got {self.kernel_scales}")
        if self.latent_dim < 1 or self.lambda_mmd < 0 or self.prior_std <= 0 or self.recon_scale <= 0 \
                or self.width <= 0:
            raise ConfigError("model.latent_dim must be >= 1, model.lambda_mmd >= 0 and model.prior_std,"
                              " model.recon_scale, model.width > 0")


class WAE(GenerativeModel):
    """images N×C×H×W in `value_range` → Output(loss, parts: recon, mmd); see the module docstring."""

    def __init__(self, config: WAEConfig, *, image_shape, value_range=(0.0, 1.0),
                 condition: ConditionEmbedding | None = None):
        super().__init__(image_shape=image_shape, value_range=value_range)
        self.config = config
        self.condition = condition
        cond_dim = condition.dim if condition is not None else 0
        kw = dict(arch=config.arch, hidden=list(config.hidden), channels=list(config.channels), cond_dim=cond_dim,
                  width=config.width)
        self.encoder = Encoder(self.image_shape, config.latent_dim, **kw)
        self.decoder = Decoder(self.image_shape, config.latent_dim, **kw)


    def _cond(self, batch) -> torch.Tensor | None:
        return self.condition(batch) if self.condition is not None else None

    def encode(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Latent codes z = E(x[, cond]), N×latent_dim (cond: the condition *embedding*, N×E)."""
        return self.encoder(x, cond)

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Images in `value_range` for codes z (N×latent_dim)."""
        return to_value_range(self.decoder(z, cond), self.value_range, self.config.output)

    def mmd(self, z: torch.Tensor) -> torch.Tensor:
        """MMD²(q_z, p_z) between codes z (N×D) and as many fresh prior draws (IMQ kernel, unbiased);
        0 for a batch of one code (e.g. the last evaluation batch), where it cannot be estimated."""
        cfg = self.config
        if len(z) < 2:
            return z.new_zeros((), dtype=torch.float32)
        z = z.float()
        z_prior = torch.randn_like(z) * cfg.prior_std
        with torch.autocast(device_type=z.device.type, enabled=False):  # float32 distances under bf16 autocast
            return imq_mmd(z, z_prior, c_base=2.0 * cfg.latent_dim * cfg.prior_std**2, scales=cfg.kernel_scales)

    def forward(self, batch: dict[str, torch.Tensor]) -> Output:
        x = self.check_batch(batch, need_condition=self.conditional)
        cond = self._cond(batch)
        z = self.encode(x, cond)
        x_hat = self.decode(z, cond)
        recon = self.config.recon_scale * (x - x_hat).pow(2).flatten(1).sum(1).mean()
        mmd = self.mmd(z)
        loss = recon + self.config.lambda_mmd * mmd
        return Output(loss, {"recon": recon.detach(), "mmd": mmd.detach()})

    @torch.no_grad()
    def reconstruct(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """G(E(x)) for a batch (images in `value_range`)."""
        x = self.check_batch(batch, need_condition=self.conditional)
        cond = self._cond(batch)
        return self.decode(self.encode(x, cond), cond)

    @torch.no_grad()
    def sample(self, n: int, cond: torch.Tensor | None = None) -> torch.Tensor:
        """n images G(z), z ~ N(0, σ²I); `cond` for a cWAE: int64 labels (n,) or conditions n×D
        (labels default to 0, 1, …, K−1, 0, 1, … when omitted)."""
        device = self.device
        cond_vec = self.sampling_condition(n, cond)
        z = torch.randn(n, self.config.latent_dim, device=device) * self.config.prior_std
        return self.decode(z, cond_vec)
