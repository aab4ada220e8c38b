"""Helper for tests/test_distributed_evaluation.py: `evaluate` with an extractor that has spatial
features (sFID) and logits (IS) over 2 CPU processes (gloo), and in one process.

Run as `python tests/distributed_eval_worker.py FAKE_NPZ N OUT_DIR`; Fabric's launcher re-executes
this command for rank 1. Rank 0 writes OUT_DIR/two.json (2 processes), then OUT_DIR/one.json
(`fabric=None`, the 1-process path, in the same process: the same thread count).
"""

import json
import sys
from pathlib import Path

import torch
from torch import nn

from genrep.experiments.evaluate import evaluate
from genrep.metrics import FeatureExtractor
from genrep.training.fabric import launch_processes

METRICS = ["fid", "prd", "ipr", "sinkhorn", "sfid", "is"]


class TinyExtractor(FeatureExtractor):
    """A fixed random conv net on 8×8 gray images: pooled features (24), spatial maps (16·4·4), 10 logits."""

    name, dim, channels = "tiny", 24, (1,)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Tanh(), nn.Conv2d(8, 16, 3), nn.Tanh())
        self.pool, self.head = nn.Linear(256, 24), nn.Linear(24, 10)

    def outputs(self, images, kinds):
        self.check(images)
        maps = self.trunk(images.to(self.device, torch.float32)).flatten(1)
        features = self.pool(maps)
        return {k: {"features": features, "spatial": maps, "logits": self.head(features)}[k] for k in kinds}

    def extract(self, images):
        return self.pool(self.trunk(images).flatten(1))


def main(fake: str, n: int, out: Path) -> None:
    fabric = launch_processes(accelerator="cpu", devices=2)
    options = dict(metrics=METRICS, features=TinyExtractor(), n=n, progress=False)
    two = evaluate("digits", fake, fabric=fabric, **options)
    if fabric.is_global_zero:
        (out / "two.json").write_text(json.dumps(two))
        (out / "one.json").write_text(json.dumps(evaluate("digits", fake, **options)))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
