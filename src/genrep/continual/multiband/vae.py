"""The two-latent VAE of Multiband VAE (thesis §9.4.1, METHODS.md §5): a continuous latent λ (reparameterised,
KL to N(0, I)) and a binary latent b ∈ {−1, 1}^bits (Gumbel-softmax, no KL), decoded through a task
conditioner: x̂ = decoder(conditioner(λ, b, task)).

Binary latent (reference `VAE.forward`): the encoder's logits l are stacked as [l, −l] and a two-way Gumbel
softmax picks the first entry, mapped to ±1, so p(b = 1) = sigmoid(2l). The temperature falls as
τ = max(1 − 5e/E, 0.01) over epochs e = 0..E−1; once τ < 0.1 the sample is hard (one-hot forward,
straight-through soft gradient at τ = 1). Sampling uses a per-task prior: bit k is +1 with the frequency
of +1 among the task's encodings (`GenerativePart.bit_prior`).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from genrep.errors import ConfigError, InputError

RECON_LOSSES = ("bce", "mse")
HARD_BELOW = 0.1  # temperatures below this switch to the hard straight-through estimator (at τ = 1)


def gumbel_temperature(epoch: int, epochs: int) -> float | None:
    """τ = max(1 − 5·epoch/epochs, 0.01), or None (hard straight-through) once τ < 0.1."""
    tau = max(1.0 - 5.0 * epoch / epochs, 0.01)
    return None if tau < HARD_BELOW else tau


def gumbel_bits(logits: torch.Tensor, tau: float | None) -> torch.Tensor:
    """±1 bits from logits l (B×bits) by a Gumbel softmax over [l, −l] at temperature `tau`; `tau=None`: hard
    one-hot forward with the τ = 1 soft sample's gradient (straight-through)."""
    pair = torch.stack([logits, -logits], dim=-1)
    hard = tau is None
    return F.gumbel_softmax(pair, tau=1.0 if hard else tau, hard=hard, dim=-1)[..., 0] * 2 - 1


def kl_to_standard_normal(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Σ over latents and batch of KL(N(μ, σ²) ‖ N(0, 1)) = −½ Σ (1 + log σ² − μ² − σ²)."""
    return -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp())


def reconstruction_sum(recon: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Σ BCE(x̂, x) or Σ (x̂ − x)² over all pixels of the batch."""
    if kind == "bce":
        return F.binary_cross_entropy(recon, target, reduction="sum")
    return F.mse_loss(recon, target, reduction="sum")


class GenerativePart(nn.Module):
    """What is kept between tasks: conditioner + decoder (x̂ = decoder(conditioner(λ, b, task))) and the
    per-task bit prior (row t: frequency of +1 for each bit among task t's encodings)."""

    def __init__(self, conditioner: nn.Module, decoder: nn.Module, latent: int, bits: int):
        super().__init__()
        self.conditioner, self.decoder = conditioner, decoder
        self.latent, self.bits = latent, bits
        self.register_buffer("bit_prior", torch.zeros(0, bits))

    @property
    def tasks_known(self) -> int:
        return len(self.bit_prior)

    def forward(self, lam: torch.Tensor, bits: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.conditioner(lam, bits, task))

    def set_bit_prior(self, task: int, frequencies: torch.Tensor) -> None:
        """Row `task` of the prior (appended when task == tasks_known)."""
        frequencies = frequencies.detach().to(self.bit_prior).view(1, self.bits)
        if task == self.tasks_known:
            self.bit_prior = torch.cat([self.bit_prior, frequencies])
        elif task < self.tasks_known:
            self.bit_prior[task] = frequencies[0]
        else:
            raise InputError(f"bit prior of task {task} set before task {self.tasks_known}")

    def prior_bits(self, task: torch.Tensor, uniform: torch.Tensor | None = None) -> torch.Tensor:
        """±1 bits ~ Bernoulli(bit_prior[task]) per row; `uniform` (B×bits in [0, 1)) shares the draw between
        rows (the reference's shared-z replay: bit = 1 where u < prior)."""
        prior = self.bit_prior[task.long()]
        u = torch.rand_like(prior) if uniform is None else uniform.to(prior)
        return (u < prior).to(prior) * 2 - 1

    def sample(self, task: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One image per entry of `task` (B,): λ ~ N(0, I), bits from the task's prior."""
        self.check_tasks(task)
        device = self.bit_prior.device
        lam = torch.randn(len(task), self.latent, generator=generator, device=device)
        uniform = torch.rand(len(task), self.bits, generator=generator, device=device)
        return self(lam, self.prior_bits(task.to(device), uniform), task.to(device))

    def check_tasks(self, task: torch.Tensor) -> None:
        if len(task) and (int(task.min()) < 0 or int(task.max()) >= self.tasks_known):
            bad = int(task.max()) if int(task.max()) >= self.tasks_known else int(task.min())
            raise InputError(f"cannot sample task {bad}: the model has learned tasks 0..{self.tasks_known - 1}"
                             if self.tasks_known else f"cannot sample task {bad}: the model has learned no task yet")


class TwoLatentVAE(nn.Module):
    """encoder x ↦ (μ, log σ², l); λ = μ + σ·ε; b = gumbel_bits(l, τ); x̂ = generative(λ, b, task)."""

    def __init__(self, encoder: nn.Module, generative: GenerativePart):
        super().__init__()
        self.encoder, self.generative = encoder, generative

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, log_var, logits = self.encoder(x)
        if mu.shape[1] != self.generative.latent or logits.shape[1] != self.generative.bits:
            raise ConfigError(f"the encoder returns {mu.shape[1]} latents and {logits.shape[1]} bit logits; the "
                              f"decoder expects {self.generative.latent} and {self.generative.bits}")
        return mu, log_var, logits

    def forward(self, x: torch.Tensor, task: torch.Tensor, tau: float | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x̂, μ, log σ², b) for images x and task ids `task` (B,)."""
        mu, log_var, logits = self.encode(x)
        lam = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        bits = gumbel_bits(logits, tau) if self.generative.bits else logits
        return self.generative(lam, bits, task), mu, log_var, bits


def vae_loss(recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, *, kind: str,
             scale: float = 1.0) -> torch.Tensor:
    """Negative ELBO per image (the reference's local loss): (scale·Σ rec + Σ KL) / B."""
    return (scale * reconstruction_sum(recon, x, kind) + kl_to_standard_normal(mu, log_var)) / len(x)


def negative_elbo_per_image(recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, *,
                            kind: str, scale: float = 1.0) -> torch.Tensor:
    """(B,) −ELBO of each image: scale·Σ_pixels rec + Σ_latents KL (the terms of `vae_loss` per row)."""
    if kind == "bce":
        rec = F.binary_cross_entropy(recon, x, reduction="none")
    else:
        rec = (recon - x).pow(2)
    kl = -0.5 * (1 + log_var - mu.pow(2) - log_var.exp())
    return scale * rec.flatten(1).sum(1) + kl.sum(1)
