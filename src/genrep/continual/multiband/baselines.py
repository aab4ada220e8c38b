"""The generative continual-learning baselines of Tables 9.4.1–9.4.3 on the Multiband VAE's own VAE and runner.

- `RegularisedVAE` (`ewc-vae`, `si-vae`): one task-conditioned VAE trained on each task's data alone with a
  parameter penalty on all its weights (encoder, conditioner, decoder): EWC (Kirkpatrick et al. 2017) with
  the diagonal Fisher of the per-image negative ELBO (`regularizers.diagonal_fisher`), or SI (Zenke et al.
  2017) with the path integral of the ELBO's gradient (`regularizers.SIImportance`).
- `SeparateVAEs` (`separate-vae`): one VAE per task trained on that task alone; task j is drawn from model j
  (Table 9.4.3's "Separate models"; memory grows with the tasks). Its first scores R[j, j] are the reference
  for forward transfer (`generative_eval.diagonal_transfer`).
- `JointVAE` (`joint-vae`): the upper bound, one task-conditioned VAE retrained at every task on all data seen
  so far (continuing, or from scratch with `from_scratch`).
"""

from __future__ import annotations

from typing import Any

import torch

from genrep.continual.multiband.base import VAELearner
from genrep.continual.multiband.settings import BoundSettings, RegularisedSettings
from genrep.continual.multiband.vae import TwoLatentVAE, negative_elbo_per_image
from genrep.continual.regularizers import EWCPenalty, SIImportance, diagonal_fisher
from genrep.continual.scenario import Task
from genrep.errors import CheckpointError

FISHER_BATCH = 25  # per-sample gradients of a batch take FISHER_BATCH × |θ| floats


class RegularisedVAE(VAELearner):
    """EWC or SI on the VAE (module docstring; `penalty` picks which)."""

    Settings = RegularisedSettings

    def setup(self, scenario) -> None:
        super().setup(scenario)
        s = self.settings
        self.regulariser = EWCPenalty(s.strength) if s.penalty == "ewc" else SIImportance(s.strength,
                                                                                           damping=s.damping)

    def vae(self) -> TwoLatentVAE:
        return TwoLatentVAE(self.encoder, self.generatives[0])

    def _learn(self, task: Task, generator: torch.Generator) -> None:
        s, t, vae = self.settings, task.index, self.vae()
        x = self.images(task)
        regulariser = self.regulariser
        penalty = (lambda: regulariser.penalty(vae)) if len(regulariser) else None
        on_step = None
        if s.penalty == "si":
            regulariser.begin_task(vae)

            def on_step(when: str) -> None:
                (regulariser.before_step if when == "before" else regulariser.after_step)(vae)

        prior = self.train_vae(vae, x, t, self.task_epochs(t), generator, phases=self.task_phases(vae, t),
                               penalty=penalty, on_step=on_step, label=f"task {t} VAE + {s.penalty}")[t]
        self.generatives[0].set_bit_prior(t, prior)
        if s.penalty == "si":
            regulariser.end_task(vae)
        else:
            rows = torch.randperm(len(x), generator=generator)[: s.fisher_samples]
            tasks = torch.full((FISHER_BATCH,), t, dtype=torch.long, device=x.device)

            def per_image(batch: torch.Tensor) -> torch.Tensor:
                recon, mu, log_var, _ = vae(batch, tasks[: len(batch)], 1.0)  # soft bits: no scatter under vmap
                return negative_elbo_per_image(recon, batch, mu, log_var, kind=self.recon, scale=s.recon_scale)

            regulariser.consolidate(vae, diagonal_fisher(vae, x[rows].split(FISHER_BATCH), per_image))
        self.history.append({"task": t, "epochs": self.task_epochs(t), "penalty": s.penalty})

    def extra_state(self) -> dict[str, Any]:
        return {"regulariser": self.regulariser.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "regulariser" not in state:
            raise CheckpointError(f"{type(self).__name__} state lacks the {self.settings.penalty} importances")
        self.regulariser.load_state_dict(state["regulariser"])


class SeparateVAEs(VAELearner):
    """One VAE per task (module docstring)."""

    Settings = BoundSettings

    def generative_for(self, task: int):
        return self.generatives[task]

    def _learn(self, task: Task, generator: torch.Generator) -> None:
        t = task.index
        if t > 0:
            self.encoder, generative = self.new_networks(t)
            self.generatives.append(generative)
        vae = TwoLatentVAE(self.encoder, self.generatives[t])
        prior = self.train_vae(vae, self.images(task), t, self.task_epochs(t), generator,
                               phases=self.task_phases(vae, t), label=f"task {t} separate VAE")[t]
        self._set_prior(t, prior)
        self.history.append({"task": t, "epochs": self.task_epochs(t)})

    def _set_prior(self, t: int, prior: torch.Tensor) -> None:
        """Row t of model t's prior (model t answers only task t; its earlier rows are unused placeholders)."""
        model = self.generatives[t]
        while model.tasks_known < t:
            model.set_bit_prior(model.tasks_known, torch.full_like(prior, 0.5))
        model.set_bit_prior(t, prior)


class JointVAE(VAELearner):
    """Upper bound: retrained on all data seen so far at every task (module docstring)."""

    Settings = BoundSettings

    def setup(self, scenario) -> None:
        super().setup(scenario)
        self.seen: list[torch.Tensor] = []

    def _learn(self, task: Task, generator: torch.Generator) -> None:
        s, t = self.settings, task.index
        self.seen.append(task.train.images)
        if s.from_scratch and t > 0:
            priors = self.generatives[0].bit_prior
            self.encoder, self.generatives[0] = self.new_networks(t)
            self.generatives[0].bit_prior = priors.clone()
        vae = TwoLatentVAE(self.encoder, self.generatives[0])
        x = torch.cat(self.seen).to(s.device, torch.float32)
        tasks = torch.cat([torch.full((len(images),), k, dtype=torch.long) for k, images in enumerate(self.seen)])
        priors = self.train_vae(vae, x, tasks, self.task_epochs(t), generator, phases=self.task_phases(vae, t),
                                label=f"task {t} joint VAE")
        for k in range(t + 1):
            self.generatives[0].set_bit_prior(k, priors[k])
        self.history.append({"task": t, "epochs": self.task_epochs(t), "train_size": len(x)})

    def extra_state(self) -> dict[str, Any]:
        return {"seen": [images.clone() for images in self.seen]}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.seen = [images.clone() for images in state.get("seen", [])]

    def memory_bytes(self) -> int:
        """The VAE plus the stored training data (what joint training keeps between tasks)."""
        return super().memory_bytes() + sum(images.numel() * images.element_size() for images in self.seen)
