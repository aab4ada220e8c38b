"""Multiband VAE (thesis ch.9, §9.3; METHODS.md §5; REFERENCE_CODE.md §5.2) and, with `two_step=False`, the
generative-replay VAE it is compared with (Table 9.4.4's first row, `gr-vae`).

Task t with images x^t:
1. **Local training** (§9.3.1, Eq. 9.1): a local VAE (encoder, translator, decoder) maximises the ELBO on x^t
   alone; the last epoch's bit frequencies become the task's bit prior. `local_init="fresh"` (thesis) builds
   it anew; `"warm"` (reference) keeps the encoder and starts translator + decoder from the global ones,
   training the encoder alone at lr/10 for the first epochs. Task 0 trains `first_task_epochs` (default
   local + global epochs, as the reference) and its translator + decoder become the global model.
2. **Global training** (t > 0, §9.3.2, Eqs. 9.2–9.3): the global translator + decoder are copied; the old ones
   are frozen for replay. For `translator_warmup` epochs only the translator trains, then translator and
   decoder. Each iteration pairs a random batch of x^t, encoded by the local encoder, with replayed
   samples of earlier tasks (λ ~ N(0, I), bits ~ prior, targets = the frozen model's images), loss
   Σ‖x − p_θ(t_ρ(λ, b, i))‖ (BCE or squared error, summed as the reference), in shuffled mini-batches.
3. **Controlled forgetting** (§9.3.3, `forgetting.replace_similar_targets`): after the warm-up, a replayed
   target whose translated latent has cosine similarity > γ with a current image's is replaced by that image.
   Z^i (`forgetting_compare` current images, encoded and translated) is made once per epoch; the reference
   re-translates the same encodings at every iteration with the translator as it trains.

With `two_step=False` the VAE trains once per task (epochs + global_epochs) on new data plus replay from the
frozen copy of its own decoder, re-encoded like new data (the reference's `train_with_replay`).
"""

from __future__ import annotations

import copy
import math
import torch

from genrep.continual import distributed
from genrep.continual.multiband.base import VAELearner, freeze
from genrep.continual.multiband.forgetting import replace_similar_targets
from genrep.continual.multiband.settings import MultibandSettings
from genrep.continual.multiband.vae import GenerativePart, TwoLatentVAE, reconstruction_sum
from genrep.continual.scenario import Task
from genrep.continual.seeding import seeded, stream_seed

LOCAL_STREAM = 3_000  # seeded stream offset of task t's fresh local networks
FORGETTING_STREAM = 10_000_000  # stream offset of the controlled-forgetting comparison sets


def replay_counts(n: int, tasks: int) -> list[int]:
    """n replayed samples split equally over `tasks` previous tasks, the remainder to the first ones."""
    return [n // tasks + (1 if k < n % tasks else 0) for k in range(tasks)]


def draw_replay(frozen: GenerativePart, n: int, tasks: int, *, same_z: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(λ, bits, task ids, targets) of n replayed samples of tasks 0..tasks−1 (`replay_counts`): λ ~ N(0, I) and
    bits ~ Bernoulli(prior[k]) per task, or with `same_z` one λ and one uniform draw shared by every task's
    first rows (the reference's `same_z`); targets = frozen(λ, bits, k)."""
    counts = replay_counts(n, tasks)
    device = frozen.bit_prior.device
    task_ids = torch.cat([torch.full((c,), k, dtype=torch.long, device=device) for k, c in enumerate(counts)])
    if same_z:
        longest = max(counts)
        lam_max = torch.randn(longest, frozen.latent, device=device)
        u_max = torch.rand(longest, frozen.bits, device=device)
        lam = torch.cat([lam_max[:c] for c in counts])
        uniform = torch.cat([u_max[:c] for c in counts])
    else:
        lam = torch.randn(n, frozen.latent, device=device)
        uniform = torch.rand(n, frozen.bits, device=device)
    bits = frozen.prior_bits(task_ids, uniform)
    with torch.no_grad():
        targets = frozen(lam, bits, task_ids)
    return lam, bits, task_ids, targets


class MultibandVAE(VAELearner):
    """Multiband VAE (module docstring); `two_step=False` gives the generative-replay VAE."""

    Settings = MultibandSettings

    def _learn(self, task: Task, generator: torch.Generator) -> None:
        if self.settings.two_step:
            self._two_step(task, generator)
        else:
            self._replay_phase(task, generator)

    # -- generative replay (two_step=False) ----------------------------------------------------------------
    def n_replay(self, batch: int, t: int) -> int:
        s = self.settings
        return int(batch * min(t, s.replay_task_cap or t) * s.replay_fraction)

    def _replay_phase(self, task: Task, generator: torch.Generator) -> None:
        s, t = self.settings, task.index
        generative = self.generatives[0]
        vae = TwoLatentVAE(self.encoder, generative)
        replay = None
        if t > 0:
            frozen = freeze(copy.deepcopy(generative))

            def replay(n_new: int) -> tuple[torch.Tensor, torch.Tensor]:
                _, _, tasks, targets = draw_replay(frozen, self.n_replay(n_new, t), t, same_z=s.same_z)
                return targets, tasks

        epochs = s.first_task_epochs if t == 0 and s.first_task_epochs else s.task_epochs
        prior = self.train_vae(vae, self.images(task), t, epochs, generator, phases=self.task_phases(vae, t),
                               replay=replay, label=f"task {t} VAE + replay")[t]
        generative.set_bit_prior(t, prior)
        self.history.append({"task": t, "epochs": epochs})

    # -- Multiband: local then global ----------------------------------------------------------------------
    def local_vae(self, t: int) -> TwoLatentVAE:
        """The local model of task t: fresh networks (thesis), or the kept encoder with a copy of the global
        translator + decoder (reference, `local_init="warm"`); task 0 uses the networks built in setup."""
        if t == 0:
            return TwoLatentVAE(self.encoder, self.generatives[0])
        if self.settings.local_init == "fresh":
            self.encoder, generative = self.new_networks(LOCAL_STREAM + t)
            return TwoLatentVAE(self.encoder, generative)
        generative = copy.deepcopy(self.generatives[0])
        for parameter in generative.parameters():
            parameter.requires_grad_(True)
        return TwoLatentVAE(self.encoder, generative)

    def local_phases(self, vae: TwoLatentVAE, t: int, epochs: int) -> list[tuple[int, list, float, float]]:
        s = self.settings
        if t == 0 or s.local_init == "fresh":
            return self.task_phases(vae, t)
        warmup = s.encoder_warmup_epochs
        warmup = min(20, max(epochs // 10, 5)) if warmup is None else warmup
        phases = [(warmup, list(vae.parameters()), s.lr, s.gamma)]
        if warmup > 0:
            phases.insert(0, (0, list(vae.encoder.parameters()), s.lr / 10, s.gamma))
        return phases

    def _two_step(self, task: Task, generator: torch.Generator) -> None:
        s, t = self.settings, task.index
        x = self.images(task)
        epochs = s.epochs if t else (s.first_task_epochs or s.epochs + s.global_epochs)
        vae = self.local_vae(t)
        prior = self.train_vae(vae, x, t, epochs, generator, phases=self.local_phases(vae, t, epochs),
                               label=f"task {t} local VAE")[t]
        if t == 0:
            self.generatives[0].set_bit_prior(0, prior)
            self.history.append({"task": 0, "local_epochs": epochs})
            return
        self.generatives[0] = self.global_training(task, vae, prior, x, generator)

    def global_training(self, task: Task, local: TwoLatentVAE, prior: torch.Tensor, x: torch.Tensor,
                        generator: torch.Generator) -> GenerativePart:
        """Steps 2–3 of the module docstring; returns the new global translator + decoder."""
        s, t = self.settings, task.index
        frozen = freeze(copy.deepcopy(self.generatives[0]))
        model = copy.deepcopy(self.generatives[0])
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        model.set_bit_prior(t, prior)
        model.train()
        local.encoder.eval()
        translator = list(model.conditioner.parameters())
        warmup = s.translator_warmup if translator else 0
        optimizer, scheduler = self.optimizer(translator or model.parameters(), s.global_lr, s.global_gamma, 0.0)
        iterations = math.ceil(len(x) / s.batch_size)
        n_prev = self.n_replay(s.batch_size, t)
        replaced_total, current_z, current_images = 0, None, None
        for epoch in self.epochs_bar(s.global_epochs, f"task {t} global"):
            if epoch == warmup and warmup > 0:
                optimizer, scheduler = self.optimizer(model.parameters(), s.global_lr, s.global_gamma, 0.0)
            forgetting = epoch > warmup and s.forgetting_threshold < 1.0
            if forgetting:  # drawn from its own stream, so that the switch changes nothing but the targets
                with seeded(stream_seed(s.seed, FORGETTING_STREAM + 1_000 * t + epoch)), torch.no_grad():
                    current_images = x[torch.randperm(len(x), device=x.device)[: s.forgetting_compare]]
                    current_z = model.conditioner(*self.encode_current(local, current_images, t))
            for _ in range(iterations):
                batch = x[torch.randperm(len(x), generator=generator)[: s.batch_size]]
                replaced_total += self.global_iteration(model, frozen, local, batch, t, n_prev, optimizer, generator,
                                                        (current_z, current_images) if forgetting else None)
            scheduler.step()
        self.history.append({"task": t, "local_epochs": s.epochs, "global_epochs": s.global_epochs,
                             "replayed_per_iteration": n_prev, "targets_replaced": replaced_total})
        if distributed.world()[1] > 1:
            distributed.broadcast_buffers(model)
        return model

    def global_iteration(self, model: GenerativePart, frozen: GenerativePart, local: TwoLatentVAE,
                         batch: torch.Tensor, t: int, n_prev: int, optimizer: torch.optim.Optimizer,
                         generator: torch.Generator, compare: tuple[torch.Tensor, torch.Tensor] | None) -> int:
        """One iteration of global training: n_prev replayed samples + the encoded current `batch`, targets
        switched by controlled forgetting against `compare` = (current latents z, their images) if given,
        shuffled into mini-batches of B, one Adam step each on the summed reconstruction loss. Returns the
        number of replaced targets."""
        s = self.settings
        lam_prev, bits_prev, tasks_prev, targets_prev = draw_replay(frozen, n_prev, t, same_z=s.same_z)
        lam_new, bits_new, tasks_new = self.encode_current(local, batch, t)
        replaced = 0
        if compare is not None:
            with torch.no_grad():
                prev_z = model.conditioner(lam_prev, bits_prev, tasks_prev)
            targets_prev, mask = replace_similar_targets(prev_z, targets_prev, *compare, s.forgetting_threshold)
            replaced = int(mask.sum())
        lam, bits = torch.cat([lam_prev, lam_new]), torch.cat([bits_prev, bits_new])
        tasks, targets = torch.cat([tasks_prev, tasks_new]), torch.cat([targets_prev, batch])
        split = distributed.world()[1] > 1  # data parallel: this rank's rows of each chunk, gradients summed
        for chunk in torch.randperm(len(lam), generator=generator).split(s.batch_size):
            if split:
                chunk = chunk[distributed.rows_of_rank(0, len(chunk))]
            loss = reconstruction_sum(model(lam[chunk], bits[chunk], tasks[chunk]), targets[chunk], self.recon)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if split:
                distributed.all_reduce_gradients(model)
            optimizer.step()
        return replaced

    def encode_current(self, local: TwoLatentVAE, images: torch.Tensor, t: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(λ, bits, task ids) of current images under the local encoder: λ = μ + σ·ε, bits by `current_bits`."""
        with torch.no_grad():
            mu, log_var, logits = local.encode(images)
            lam = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
            bits = self.encode_bits(logits, self.settings.current_bits)
        return lam, bits, torch.full((len(images),), t, dtype=torch.long, device=images.device)
