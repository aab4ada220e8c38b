"""Speed of Multiband VAE's two training steps (FC MNIST VAE of the reference, batch 64), against the reference's
figures on this hardware class (issue 16: local step 15 ms at batch 64; global iteration 24 ms with 64 + 32
samples, measured on a 2-core machine).

- local step: forward of the two-latent VAE (Gumbel bits at τ = 0.5), −ELBO, backward, gradient clipping, Adam;
- global iteration (task 1): 32 replayed samples from the frozen model + 64 current images encoded by the local
  encoder, shuffled into mini-batches of 64 (two Adam steps on translator + decoder), controlled forgetting off
  (γ = 1, the reference's class-incremental runs) and on (γ = 0.95 against 1000 current latents).

    python benchmarks/bench_multiband.py --threads 2
    python benchmarks/bench_multiband.py --threads 2 --reference DIR   # + the reference code's steps, same process

`--reference DIR`: a folder holding the reference repository's `vae_experiments/` (KamilDeja/multiband_vae
fafaf64; `git archive HEAD vae_experiments | tar -x -C DIR`). Its VAE is built on the CPU and timed through the
reference's own functions (`VAE.forward`, `training_functions.loss_fn`, `vae_utils.generate_previous_data`),
with anomaly detection switched off again after import (the module turns it on globally) and its UMAP/seaborn
visualiser stubbed out (not needed for a step).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import types

import torch
from bench_unet_vs_diffusers import median_s  # the shared timer; the script folder is on sys.path

from genrep.continual.multiband import MultibandVAE, TwoLatentVAE
from genrep.continual.multiband.base import freeze
from genrep.continual.multiband.vae import vae_loss
from genrep.continual.scenario import Scenario, Task
from genrep.data.dataset import ImageDataset

REFERENCE_MS = {"local_step": 15.0, "global_iteration": 24.0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--reference", default=None, help="folder with the reference's vae_experiments/ (see above)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.rand(2000, 1, 28, 28)
    data = ImageDataset(images, torch.zeros(2000, dtype=torch.long), name="mnist")
    scenario = Scenario("bench", (Task(0, "t0", data, data), Task(1, "t1", data, data)), (1, 28, 28), (0.0, 1.0), 1)
    learner = MultibandVAE(forgetting_threshold=0.95)
    learner.setup(scenario)
    learner.generatives[0].set_bit_prior(0, torch.full((4,), 0.5))
    vae = TwoLatentVAE(learner.encoder, learner.generatives[0])
    optimizer, _ = learner.optimizer(vae.parameters(), 1e-3, 0.98)  # the learner's Adam (fused where available)
    batch, task = images[:64], torch.zeros(64, dtype=torch.long)

    def local_step() -> None:
        recon, mu, log_var, _ = vae(batch, task, 0.5)
        loss = vae_loss(recon, batch, mu, log_var, kind="bce")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_value_(vae.parameters(), 4.0)
        optimizer.step()

    frozen = freeze(copy.deepcopy(learner.generatives[0]))
    model = copy.deepcopy(learner.generatives[0])
    model.set_bit_prior(1, torch.full((4,), 0.5))
    global_optimizer, _ = learner.optimizer(model.parameters(), 1e-3, 0.98, 0.0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        compare = (model.conditioner(*learner.encode_current(vae, images[:1000], 1)), images[:1000])
    n_prev = learner.n_replay(64, 1)

    def global_iteration(forgetting: bool):
        return lambda: learner.global_iteration(model, frozen, vae, batch, 1, n_prev, global_optimizer, generator,
                                                compare if forgetting else None)

    results = {"threads": args.threads, "replayed_per_iteration": n_prev}
    for name, fn in (("local_step", local_step), ("global_iteration", global_iteration(False)),
                     ("global_iteration_forgetting", global_iteration(True))):
        results[f"{name}_ms"] = round(1000 * median_s(fn, args.repeats, warmup=5), 2)
    for name, reference in REFERENCE_MS.items():
        results[f"{name}_reference_issue_ms"] = reference
    if args.reference:
        results.update(reference_timings(args.reference, images, args.repeats))
    print(json.dumps(results, indent=1))


def reference_timings(folder: str, images: torch.Tensor, repeats: int) -> dict[str, float]:
    """The reference's local step and global iteration (FC MNIST, batch 64, 32 replayed), timed in this process."""
    sys.path.insert(0, folder)
    sys.modules["vae_experiments.latent_visualise"] = types.SimpleNamespace(Visualizer=None)
    from vae_experiments import models_definition, training_functions, vae_utils

    torch.autograd.set_detect_anomaly(False)
    torch.manual_seed(0)
    vae = models_definition.VAE(latent_size=8, binary_latent_size=4, d=32, p_coding=9, n_dim_coding=4,
                                cond_p_coding=0, cond_n_dim_coding=0, cond_dim=10, device="cpu", in_size=28, fc=True)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3, weight_decay=1e-5)
    x, y = images[:64], torch.zeros(64, dtype=torch.long)
    bce = torch.nn.BCELoss(reduction="sum")

    def local_step() -> None:
        recon, mean, log_var, *_ = vae(x, 0, y, temp=0.5, translate_noise=True)
        loss, _ = training_functions.loss_fn(recon, x, mean, log_var, bce)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_value_(vae.parameters(), 4.0)
        optimizer.step()

    vae.decoder.ones_distribution = torch.full((2, 4), 0.5)
    frozen = copy.deepcopy(vae.decoder).eval()
    decoder = copy.deepcopy(vae.decoder).train()
    global_optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-3)
    class_table = torch.ones(2, 10, dtype=torch.long)

    def global_iteration() -> None:  # the body of `train_global_decoder`'s inner loop, forgetting off
        recon_prev, classes_prev, z_prev, task_ids_prev, _ = vae_utils.generate_previous_data(
            frozen, class_table=class_table, n_tasks=1, n_img=32, num_local=64, return_z=True, translate_noise=True,
            same_z=True, equal_split=True)
        z_prev, _, z_bin_prev, _ = z_prev
        with torch.no_grad():
            means, log_var, bin_z = vae.encoder(x, y)
            z_bin_local = torch.distributions.Bernoulli(logits=bin_z).sample() * 2 - 1
            z_local = torch.randn(64, 8) * torch.exp(0.5 * log_var) + means
        z = torch.cat([z_prev, z_local])
        z_bin = torch.cat([z_bin_prev, z_bin_local])
        tasks = torch.cat([task_ids_prev, torch.ones(64)])
        classes = torch.cat([classes_prev, y])
        target = torch.cat([recon_prev, x])
        order = torch.randperm(len(z))
        for start in range(0, len(z), 64):
            rows = order[start:start + 64]
            loss = bce(decoder(z[rows], z_bin[rows], tasks[rows], classes[rows]), target[rows])
            decoder.zero_grad()
            loss.backward()
            global_optimizer.step()

    return {"reference_local_step_ms": round(1000 * median_s(local_step, repeats, warmup=5), 2),
            "reference_global_iteration_ms": round(1000 * median_s(global_iteration, repeats, warmup=5), 2)}


if __name__ == "__main__":
    main()
