"""Settings of the VAE learners of chapter 9 (Multiband VAE and the generative baselines on its VAE).

Defaults are the thesis' where it says something and the reference code's (`KamilDeja/multiband_vae`, README
MNIST command) elsewhere; the docstring of each class names the reference alternatives.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from genrep.continual.learner import DEVICE, POSITIVE, Range, Rule, SettingError, at_least, check_settings
from genrep.continual.multiband.forgetting import check_threshold
from genrep.continual.multiband.networks import ARCHITECTURES
from genrep.errors import ConfigError

RECON = ("auto", "bce", "mse")
LOCAL_INITS = ("fresh", "warm")
CURRENT_BITS = ("logits", "gumbel")
UNIT = Range(0, 1, low_open=True)


@dataclasses.dataclass
class VAESettings:
    """The two-latent VAE and its training, shared by every chapter-9 learner.

    Networks (`networks.build_networks`): `architecture` "fc" | "conv", `width` d (32 for MNIST), `latent`
    continuous units (8), `bits` binary units (4) used when `binary_latent` (False: no binary latent, the
    ablation rows before "+ Binary latent space"), task code of `code_bits`
    bits with multiplier `code_p` (4, 9: the MNIST command), `translator` (False: z = [λ, b, code]).
    Loss: `recon_loss` "bce" | "mse" | "auto" (the reference: BCE for MNIST, MSE for every other data set),
    × `recon_scale` (FashionMNIST 5 in the reference). Optimisation: Adam (`lr`, `weight_decay` 1e-5), batches of
    `batch_size`, gradients clipped to ±`clip_value` (the reference's `clip_grad_value_(4)`), ExponentialLR
    `first_task_gamma` (0.99, hard-coded in the reference) on task 0 and `gamma` after. Epochs per task:
    `epochs` (every task) and `first_task_epochs` (task 0; None: `epochs`)."""

    architecture: str = "fc"
    width: int = 32
    latent: int = 8
    bits: int = 4
    binary_latent: bool = True
    code_bits: int = 4
    code_p: int = 9
    translator: bool = True
    recon_loss: str = "auto"
    recon_scale: float = 1.0
    epochs: int = 70
    first_task_epochs: int | None = None
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    gamma: float = 0.98
    first_task_gamma: float = 0.99
    clip_value: float = 4.0
    seed: int = 0
    device: str = "cpu"
    progress: bool = False

    RULES: ClassVar[dict[str, Rule]] = {
        "architecture": ARCHITECTURES, "width": at_least(2), "latent": at_least(1), "bits": at_least(0),
        "code_bits": Range(1, 30), "code_p": at_least(1), "recon_loss": RECON, "recon_scale": POSITIVE,
        "epochs": at_least(1), "first_task_epochs": at_least(1), "batch_size": at_least(2), "lr": POSITIVE,
        "weight_decay": at_least(0), "gamma": UNIT, "first_task_gamma": UNIT, "clip_value": POSITIVE,
        "seed": at_least(0), "device": DEVICE}

    def __post_init__(self) -> None:
        check_settings(self)
        if self.binary_latent and self.bits == 0:
            raise SettingError(type(self).__name__, "bits", 0, "an integer >= 1 when binary_latent is true (set "
                               "binary_latent=false for a VAE without the binary latent)")

    @property
    def binary_units(self) -> int:
        """Units of the binary latent actually built (0 without it)."""
        return self.bits if self.binary_latent else 0


@dataclasses.dataclass
class MultibandSettings(VAESettings):
    """Multiband training (§9.3) on top of `VAESettings` (whose `epochs` are the local epochs, 70 in the
    reference; `first_task_epochs` None means local + global epochs, the reference's 210).

    - `two_step`: local then global training (False: one generative-replay phase of epochs + global_epochs per
      task on new data plus frozen-copy replay — Table 9.4.4's "Generative replay" row and `gr-vae`);
    - `local_init`: "fresh" (the thesis: a new local VAE per task) or "warm" (the reference: the encoder
      continues and the decoder + translator start as a copy of the global ones; the first
      `encoder_warmup_epochs` epochs — None: min(20, max(E // 10, 5)) — train the encoder alone at lr / 10);
    - global training: `global_epochs` (140) of n/B iterations, the first `translator_warmup` (5) training
      the translator alone, Adam `global_lr`, ExponentialLR `global_gamma`; each iteration replays
      int(B · min(t, `replay_task_cap`) · `replay_fraction`) samples (cap None: t, the thesis; 3 the
      reference) split equally over the previous tasks, decoded by the frozen global model, with one
      continuous draw shared by all previous tasks (`same_z`, the reference); the current batch is encoded
      by the local encoder with bits ~ Bernoulli(sigmoid(l)) (`current_bits="logits"`, the reference) or a
      hard Gumbel sample, Bernoulli(sigmoid(2l)) (`"gumbel"`, the local training's distribution);
    - controlled forgetting (§9.3.3): threshold `forgetting_threshold` γ (0.9 the thesis' default; 1
      disables), compared against `forgetting_compare` current images once per epoch after the warm-up.
    """

    two_step: bool = True
    local_init: str = "fresh"
    encoder_warmup_epochs: int | None = None
    global_epochs: int = 140
    translator_warmup: int = 5
    global_lr: float = 1e-3
    global_gamma: float = 0.98
    replay_fraction: float = 0.5
    replay_task_cap: int | None = None
    same_z: bool = True
    current_bits: str = "logits"
    forgetting_threshold: float = 0.9
    forgetting_compare: int = 1000

    RULES: ClassVar[dict[str, Rule]] = {
        **VAESettings.RULES, "local_init": LOCAL_INITS, "encoder_warmup_epochs": at_least(0),
        "global_epochs": at_least(0), "translator_warmup": at_least(0), "global_lr": POSITIVE, "global_gamma": UNIT,
        "replay_fraction": POSITIVE, "replay_task_cap": at_least(1), "current_bits": CURRENT_BITS,
        "forgetting_threshold": Range(), "forgetting_compare": at_least(1)}

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            check_threshold(self.forgetting_threshold)
        except ConfigError:
            raise SettingError(type(self).__name__, "forgetting_threshold", self.forgetting_threshold,
                               "a number in (0, 1] (1 disables controlled forgetting)") from None

    @property
    def task_epochs(self) -> int:
        """Epochs of the one-phase (generative-replay) training per task: the same budget as local + global."""
        return self.epochs + self.global_epochs


@dataclasses.dataclass
class RegularisedSettings(VAESettings):
    """EWC / SI on the VAE (`penalty` "ewc" | "si"): each task trains on its own data with
    loss = −ELBO + penalty. EWC (Kirkpatrick et al. 2017): λ/2 Σ_k Σ_i F_k,i (θ_i − θ*_k,i)² with `strength`
    λ and the diagonal Fisher of the per-image negative ELBO over `fisher_samples` training images; SI (Zenke
    et al. 2017): c Σ_i Ω_i (θ_i − θ*_i)² with `strength` c and damping ξ = `damping`."""

    penalty: str = "ewc"
    strength: float = 1.0
    fisher_samples: int = 1000
    damping: float = 0.1

    RULES: ClassVar[dict[str, Rule]] = {
        **VAESettings.RULES, "penalty": ("ewc", "si"), "strength": at_least(0), "fisher_samples": at_least(1),
        "damping": POSITIVE}


@dataclasses.dataclass
class BoundSettings(VAESettings):
    """The bounds on the same VAE: `separate` (one VAE per task trained on its data alone) or `joint` (one VAE
    retrained on all data seen so far at every task, conditioned on the task; `from_scratch` re-initialises
    it every task, False continues)."""

    from_scratch: bool = False

    RULES: ClassVar[dict[str, Rule]] = dict(VAESettings.RULES)
