"""Helper for tests/test_gan_ddp.py: train a tiny cDCGAN with 2 CPU processes (DDP over gloo).

Run as `python tests/gan_ddp_worker.py OUT_DIR`; Fabric's launcher re-executes this command for rank 1.
Each rank writes OUT_DIR/rank{r}.pt with its initial parameters, its parameters after the first
`FIRST` steps (to compare with a one-process reference, `reference_steps`) and after `MORE` further
steps, the final loss and the world size.
"""

import sys
from pathlib import Path

import torch

from genrep.data import DataSpec, load_dataset
from genrep.models import build_model
from genrep.models.dcgan import DCGANConfig
from genrep.training import TrainConfig, Trainer, launch_fabric

# model.lr is high so that a wrong gradient (not averaged, or the wrong network's) moves a parameter
# by ~lr, far above the float tolerance of the comparison with the reference
MODEL = DCGANConfig(noise_dim=8, g_channels=4, d_channels=4, lr=1e-2)
FIRST, MORE, BATCH, CLIP = 2, 4, 8, 0.05


def data():
    return load_dataset("digits", value_range="-11", limit=64)


def train_config(steps: int, devices: int = 2) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=BATCH, grad_clip=CLIP, log_every=1, devices=devices,
                       accelerator="cpu", progress=False)


def build(train):
    torch.manual_seed(0)
    return build_model("cdcgan", MODEL, DataSpec.of(train), train)


def parameters(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def main(out: Path) -> None:
    fabric = launch_fabric(train_config(FIRST))
    train = data()
    model = build(train)
    initial = parameters(model)
    Trainer(train_config(FIRST), fabric=fabric, run_dir=None).fit(model, train)
    first = parameters(model)
    result = Trainer(train_config(MORE), fabric=fabric, run_dir=None).fit(model, train)
    torch.save({"initial": initial, "first": first, "final": parameters(model), "final_loss": result.final_loss,
                "world_size": fabric.world_size, "state_keys": list(model.state_dict())},
               out / f"rank{fabric.global_rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
