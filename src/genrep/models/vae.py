"""Variational autoencoder (Kingma & Welling 2014) and its conditional version (cVAE).

Loss per image (negative ELBO, nats):  −log p(x|z) + β·KL(q(z|x) ‖ N(0, I)),  z = μ + σ·ε.
Likelihood "bernoulli": binary cross-entropy on images mapped to [0, 1] (the usual choice for
gray digits); "gaussian": fixed variance σ², −log p = ‖x − x̂‖²/(2σ²) + D/2·log(2πσ²).
The conditional VAE (Sohn et al. 2015) feeds the condition embedding (one-hot label, or the
standardised condition vector) to both the encoder and the decoder.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from genrep.errors import ConfigError
from genrep.models.base import GenerativeModel, Output
from genrep.models.networks import (ARCHS, LOG_2PI, ConditionEmbedding, Decoder, Encoder, check_layer_sizes,
                                    log_normal_kl)


@dataclasses.dataclass
class VAEConfig:
    arch: str = "mlp"
    latent_dim: int = 16
    hidden: list[int] = dataclasses.field(default_factory=lambda: [512, 256])
    channels: list[int] = dataclasses.field(default_factory=lambda: [32, 64])
    width: float = 1.0
    beta: float = 1.0
    likelihood: str = "bernoulli"
    gaussian_std: float = 0.1

    def __post_init__(self):
        check_layer_sizes("model.hidden", self.hidden)
        check_layer_sizes("model.channels", self.channels)
        if self.arch not in ARCHS:
            raise ConfigError(f"model.arch must be one of {', '.join(ARCHS)}; got {self.arch!r}")
        if self.likelihood not in ("bernoulli", "gaussian"):
            raise ConfigError(f"model.likelihood must be one of bernoulli, gaussian; got {self.likelihood!r}")
        if self.latent_dim < 1 or self.beta < 0 or self.gaussian_std <= 0 or not self.width > 0:
            raise ConfigError("model.latent_dim must be >= 1, model.beta >= 0, model.gaussian_std > 0 and model.width > 0")


class VAE(GenerativeModel):
    """images N×C×H×W in `value_range` → Output(loss=mean negative ELBO, parts: recon, kl)."""

    def __init__(self, config: VAEConfig, *, image_shape, value_range=(0.0, 1.0),
                 condition: ConditionEmbedding | None = None):
        super().__init__(image_shape=image_shape, value_range=value_range)
        self.config = config
        self.condition = condition
        cond_dim = condition.dim if condition is not None else 0
        kw = dict(arch=config.arch, hidden=list(config.hidden), channels=list(config.channels), cond_dim=cond_dim,
                  width=config.width)
        self.encoder = Encoder(self.image_shape, 2 * config.latent_dim, **kw)
        self.decoder = Decoder(self.image_shape, config.latent_dim, **kw)


    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.value_range
        return (x - lo) / (hi - lo)

    def _from_unit(self, u: torch.Tensor) -> torch.Tensor:
        lo, hi = self.value_range
        return u * (hi - lo) + lo

    def _cond(self, batch) -> torch.Tensor | None:
        return self.condition(batch) if self.condition is not None else None

    def encode(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters (μ, log σ²), each N×latent_dim."""
        mu, logvar = self.encoder(x, cond).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Mean image in `value_range` for latent codes z (N×latent_dim)."""
        logits = self.decoder(z, cond)
        return self._from_unit(torch.sigmoid(logits)) if self.config.likelihood == "bernoulli" else \
            self._from_unit(logits.clamp(0.0, 1.0))

    def negative_log_likelihood(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """−log p(x|z) per image in nats."""
        target = self._unit(x)
        if self.config.likelihood == "bernoulli":
            return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)
        var = self.config.gaussian_std**2
        d = target[0].numel()
        return (target - logits).pow(2).flatten(1).sum(1) / (2 * var) + 0.5 * d * (LOG_2PI + math.log(var))

    def forward(self, batch: dict[str, torch.Tensor]) -> Output:
        x = self.check_batch(batch, need_condition=self.conditional)
        cond = self._cond(batch)
        mu, logvar = self.encode(x, cond)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = self.negative_log_likelihood(x, self.decoder(z, cond))
        kl = log_normal_kl(mu, logvar)
        loss = (recon + self.config.beta * kl).mean()
        return Output(loss, {"recon": recon.mean().detach(), "kl": kl.mean().detach()})

    @torch.no_grad()
    def reconstruct(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Decoded posterior means for a batch (images in `value_range`)."""
        x = self.check_batch(batch, need_condition=self.conditional)
        cond = self._cond(batch)
        return self.decode(self.encode(x, cond)[0], cond)

    @torch.no_grad()
    def sample(self, n: int, cond: torch.Tensor | None = None) -> torch.Tensor:
        """n images from p(z)p(x|z); `cond`: int64 labels (n,) or conditions n×D for a cVAE
        (labels default to 0, 1, …, K−1, 0, 1, … when omitted)."""
        device = self.device
        cond_vec = self.sampling_condition(n, cond)
        z = torch.randn(n, self.config.latent_dim, device=device)
        return self.decode(z, cond_vec)

