"""Helper for tests/test_ddp.py: train a tiny model with 2 CPU processes (DDP over gloo).

Run as `python tests/ddp_worker.py OUT_DIR`; Fabric's launcher re-executes this command for rank 1.
Each rank writes OUT_DIR/rank{r}.pt with its final parameters and loss.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genrep.data import ImageDataset
from genrep.models.base import GenerativeModel, Output
from genrep.training import TrainConfig, Trainer, launch_fabric


class TinyAE(GenerativeModel):
    def __init__(self):
        super().__init__(image_shape=(1, 8, 8))
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 64))

    def forward(self, batch):
        x = self.check_batch(batch)
        loss = F.mse_loss(self.net(x).view_as(x), x)
        return Output(loss, {"mse": loss.detach()})


def main(out: Path) -> None:
    cfg = TrainConfig(steps=6, batch_size=8, lr=1e-2, log_every=2, checkpoint_every=3, ema_decay=0.9,
                      devices=2, accelerator="cpu", progress=False)
    fabric = launch_fabric(cfg)
    if fabric.is_global_zero:
        (out / "run").mkdir(parents=True, exist_ok=True)
    fabric.barrier()
    model = TinyAE()  # seeded by launch_fabric; DDP broadcasts rank 0's weights anyway
    data = ImageDataset(torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    result = Trainer(cfg, fabric=fabric, run_dir=out / "run").fit(model, data)
    state = {name: t.detach().clone() for name, t in model.state_dict().items()}
    torch.save({"params": state, "final_loss": result.final_loss, "world_size": fabric.world_size},
               out / f"rank{fabric.global_rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
