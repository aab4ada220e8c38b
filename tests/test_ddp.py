"""Two-process CPU DDP (gloo) through the Trainer: gradients are synchronised across ranks."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from genrep.training import load_checkpoint

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                    reason="torch.distributed gloo is unavailable")
def test_two_process_ddp_keeps_ranks_identical(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK")}
    proc = subprocess.run([sys.executable, str(WORKER), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["world_size"] == rank1["world_size"] == 2
    for name, tensor in rank0["params"].items():
        assert torch.equal(tensor, rank1["params"][name]), name
    assert math.isfinite(rank0["final_loss"]) and rank0["final_loss"] == rank1["final_loss"]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["step"] == 6
