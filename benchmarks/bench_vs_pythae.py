"""genrep's VAE and WAE-MMD side by side with pythae's, on MNIST, same nets, loss, optimiser and budget.

    pip install pythae            # benchmark-only dependency (not installed by `make`)
    python benchmarks/bench_vs_pythae.py [--epochs 10] [--seed 0] [--n 10000] [--out /tmp/vs_pythae]

Both libraries train through their own code path: genrep through `train_run` (its Trainer), pythae
through its `TrainingPipeline`. Shared settings: MNIST 60,000 training images in [0, 1]; the MLP
784-512-256-16 with LeakyReLU(0.2) (genrep's `mlp` arch, rebuilt layer for layer as pythae
`BaseEncoder`/`BaseDecoder`); latent 16; Adam lr 1e-3, batch 250, no scheduler, `--epochs` epochs
(= 240 steps each); VAE: Bernoulli likelihood (BCE summed over pixels) + KL; WAE: summed squared
error + 10·IMQ-MMD (scales 0.1…10 of C = 2·d·σ², σ = 1). Samples: decoder means of z ~ N(0, I).
Score: LeNet FID (genrep's MNIST LeNet, `genrep features train --dataset mnist`; trained and cached
if missing) of `--n` samples against the `--n` first test images, the same function for both.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch
from torch import nn

from genrep.data import load_dataset
from genrep.experiments.run_config import resolve_run_config
from genrep.experiments.train import load_trained_model, train_run
from genrep.metrics import fid
from genrep.models.networks import mlp

LATENT, HIDDEN, BATCH, LR = 16, [512, 256], 250, 1e-3
IMQ_SCALES = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]


def pythae_nets(encoder_out: int):
    """pythae encoder/decoder with exactly genrep's `mlp` layers (784-512-256-d, LeakyReLU 0.2)."""
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = mlp([784, *HIDDEN, encoder_out])

        def forward(self, x):
            h = self.net(x.flatten(1))
            if encoder_out == 2 * LATENT:
                return ModelOutput(embedding=h[:, :LATENT], log_covariance=h[:, LATENT:])
            return ModelOutput(embedding=h)

    class Decoder(BaseDecoder):
        def __init__(self, sigmoid: bool):
            super().__init__()
            self.net, self.sigmoid = mlp([LATENT, *reversed(HIDDEN), 784]), sigmoid

        def forward(self, z):
            out = self.net(z).view(-1, 1, 28, 28)
            return ModelOutput(reconstruction=torch.sigmoid(out) if self.sigmoid else out.clamp(0, 1))

    return Encoder, Decoder


def train_pythae(kind: str, train_x: torch.Tensor, epochs: int, seed: int, out: Path) -> tuple[nn.Module, float]:
    from pythae.models import VAE, VAEConfig, WAE_MMD, WAE_MMD_Config
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig

    Encoder, Decoder = pythae_nets(2 * LATENT if kind == "vae" else LATENT)
    if kind == "vae":
        model = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce"),
                    encoder=Encoder(), decoder=Decoder(sigmoid=True))
    else:
        config = WAE_MMD_Config(input_dim=(1, 28, 28), latent_dim=LATENT, kernel_choice="imq", reg_weight=10.0,
                                kernel_bandwidth=1.0, scales=IMQ_SCALES, reconstruction_loss_scale=1.0)
        model = WAE_MMD(config, encoder=Encoder(), decoder=Decoder(sigmoid=True))
    trainer = BaseTrainerConfig(output_dir=str(out), learning_rate=LR, per_device_train_batch_size=BATCH,
                                per_device_eval_batch_size=1000, num_epochs=epochs, optimizer_cls="Adam",
                                scheduler_cls=None, no_cuda=True, seed=seed, steps_saving=None)
    start = time.perf_counter()
    TrainingPipeline(training_config=trainer, model=model)(train_data=train_x.numpy(), eval_data=None)
    return model.eval(), time.perf_counter() - start


@torch.no_grad()
def pythae_samples(model, n: int, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return model.decoder(torch.randn(n, LATENT))["reconstruction"].clamp(0, 1)


def train_genrep(kind: str, epochs: int, seed: int, out: Path) -> tuple[nn.Module, float]:
    model = {"vae": {"hidden": HIDDEN, "latent_dim": LATENT, "likelihood": "bernoulli"},
             "wae": {"hidden": HIDDEN, "latent_dim": LATENT, "lambda_mmd": 10.0, "output": "sigmoid"}}[kind]
    cfg = resolve_run_config(kind, overrides={
        "data": {"name": "mnist", "value_range": "01"}, "model": model,
        "train": {"steps": epochs * 60_000 // BATCH, "batch_size": BATCH, "lr": LR, "seed": seed, "progress": False,
                  "checkpoint_every": 0, "log_every": 240}})
    summary = train_run(cfg, out)
    return load_trained_model(out), summary["wall_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--models", nargs="+", default=["vae", "wae"])
    parser.add_argument("--out", default="/tmp/vs_pythae")
    args = parser.parse_args()
    from genrep.experiments.reproduce.table_4_3_1 import lenet_for_mnist

    lenet, how = lenet_for_mnist("cpu", progress=False)
    train_x = load_dataset("mnist", "train").images
    test_x = load_dataset("mnist", "test").images[:args.n]
    real = lenet.features(test_x, progress=False)
    print(f"LeNet: {how}; {args.epochs} epochs × 240 steps at batch {BATCH}, seed {args.seed}, {args.n} samples")
    print("| model | library | LeNet FID | train time (s) |\n|---|---|---|---|", flush=True)
    for kind in args.models:
        for library in ("genrep", "pythae"):
            out = Path(args.out) / f"{library}_{kind}"
            shutil.rmtree(out, ignore_errors=True)
            if library == "genrep":
                model, seconds = train_genrep(kind, args.epochs, args.seed, out)
                torch.manual_seed(args.seed)
                samples = model.sample(args.n)
            else:
                model, seconds = train_pythae(kind, train_x, args.epochs, args.seed, out)
                samples = pythae_samples(model, args.n, args.seed)
            score = fid(real, lenet.features(samples, progress=False))
            print(f"| {kind} | {library} | {score:.2f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
