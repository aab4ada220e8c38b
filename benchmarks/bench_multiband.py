"""Speed of Multiband VAE's two training steps (FC MNIST VAE of the reference, batch 64), against the reference's
figures on this hardware class (issue 16: local step 15 ms at batch 64; global iteration 24 ms with 64 + 32
samples, measured on a 2-core machine).

- local step: forward of the two-latent VAE (Gumbel bits at τ = 0.5), −ELBO, backward, gradient clipping, Adam;
- global iteration (task 1): 32 replayed samples from the frozen model + 64 current images encoded by the local
  encoder, shuffled into mini-batches of 64 (two Adam steps on translator + decoder), controlled forgetting off
  (γ = 1, the reference's class-incremental runs) and on (γ = 0.95 against 1000 current latents).

    python benchmarks/bench_multiband.py --threads 2
"""

from __future__ import annotations

import argparse
import copy
import json

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
        results[f"{name}_reference_ms"] = reference
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
