"""The (c)DCGAN over two CPU processes (DDP over gloo): G and D are separate DDP modules, so the
gradients of each are averaged over the ranks in its own backward.

- the `genrep train cdcgan --devices 2` command trains, checkpoints (state_dict keys as in one
  process) and resumes;
- through the Trainer (tests/gan_ddp_worker.py) both ranks end with identical parameters, and the
  first steps equal a one-process reference that averages the two ranks' gradients by hand;
- a model with its own training_step and no `distributed_modules` is refused in one line.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from genrep.data.dataset import BatchIterator
from genrep.errors import ConfigError
from genrep.models.base import GenerativeModel
from genrep.models.dcgan import _frozen
from genrep.training import TrainConfig, Trainer, load_checkpoint

HERE = Path(__file__).parent
WORKER = HERE / "gan_ddp_worker.py"
needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed gloo is unavailable")


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK")}
    return {**env, "OMP_NUM_THREADS": "1"}


def worker_module():
    spec = importlib.util.spec_from_file_location("gan_ddp_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def genrep(*argv, cwd):
    return subprocess.run([sys.executable, "-m", "genrep", *map(str, argv)], env=clean_env(), cwd=cwd,
                          capture_output=True, text=True, timeout=180)


def average_and_clip(modules, clip):
    """What DDP + fabric.clip_gradients do: every copy gets the mean gradient, then its norm is clipped."""
    for params in zip(*(m.parameters() for m in modules)):
        mean = torch.stack([p.grad for p in params]).mean(0)
        for p in params:
            p.grad = mean.clone()
    for m in modules:
        torch.nn.utils.clip_grad_norm_(m.parameters(), clip)


def reference_steps(w, steps: int) -> dict[str, torch.Tensor]:
    """Rank 0's parameters after `steps` DDP steps, computed in one process: one model copy per rank
    (its own shard of the batches, per-rank BatchNorm statistics, the same noise, as every rank is
    seeded alike), the D and G gradients averaged over the copies as DDP does."""
    train, cfg = w.data(), w.train_config(steps)
    models = [w.build(train), w.build(train)]
    optimizers = [m.configure_optimizers(cfg) for m in models]
    batches = [BatchIterator(train, cfg.batch_size, seed=cfg.seed, rank=r, num_replicas=2).epoch(0) for r in (0, 1)]
    torch.manual_seed(cfg.seed)  # what Trainer.fit does on every rank
    for _ in range(steps):
        rng = torch.get_rng_state()
        step = []
        for m, it in zip(models, batches):
            batch = next(it)
            torch.set_rng_state(rng)
            cond = m._cond(batch)
            step.append((m._symmetric(batch["x"]), cond, m._fake(len(batch["x"]), cond, "cpu")))
        for m, (_, d_opt), (real, cond, fake) in zip(models, optimizers, step):
            d_opt.zero_grad(set_to_none=True)
            d_loss, _ = m._losses(real, fake.detach(), cond)
            d_loss.backward()
        average_and_clip([m.discriminator for m in models], cfg.grad_clip)
        for _, d_opt in optimizers:
            d_opt.step()
        for m, (g_opt, _), (_, cond, fake) in zip(models, optimizers, step):
            g_opt.zero_grad(set_to_none=True)
            with _frozen(m.discriminator):
                logits = m.discriminator(fake, cond)
                F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)).backward()
        average_and_clip([m.generator for m in models], cfg.grad_clip)
        for g_opt, _ in optimizers:
            g_opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)
    return {name: p.detach().clone() for name, p in models[0].named_parameters()}


@needs_gloo
def test_two_process_gan_steps_average_gradients(tmp_path):
    proc = subprocess.run([sys.executable, str(WORKER), str(tmp_path)], env=clean_env(), capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    w = worker_module()
    model = w.build(w.data())
    assert ranks[0]["state_keys"] == list(model.state_dict()), "state_dict keys must not change under DDP"
    for stage in ("first", "final"):
        for name, tensor in ranks[0][stage].items():
            assert torch.equal(tensor, ranks[1][stage][name]), f"{name} differs between the ranks ({stage})"
    for prefix in ("generator.", "discriminator."):
        assert any(not torch.equal(ranks[0]["initial"][n], t) for n, t in ranks[0]["first"].items()
                   if n.startswith(prefix)), f"no {prefix} parameter changed"
    assert math.isfinite(ranks[0]["final_loss"]) and ranks[0]["final_loss"] == ranks[1]["final_loss"]

    reference = reference_steps(w, w.FIRST)
    for name, p in model.named_parameters():
        assert torch.equal(ranks[0]["initial"][name], p.detach())
    worst = max((ranks[0]["first"][n] - t).abs().max().item() for n, t in reference.items())
    moved = max((ranks[0]["first"][n] - ranks[0]["initial"][n]).abs().max().item() for n in reference)
    assert worst < 1e-5 < moved, f"DDP steps differ from the averaged-gradient reference by {worst:.3g}"


@needs_gloo
def test_train_cdcgan_on_two_devices_and_resume(tmp_path):
    run = tmp_path / "run"
    common = ["train", "cdcgan", "--dataset", "digits", "--devices", "2", "--batch-size", "8", "--no-progress",
              "--set", "model.noise_dim=8", "--set", "model.g_channels=4", "--set", "model.d_channels=4",
              "--set", "data.limit=96", "--set", "train.checkpoint_every=3", "--set", "train.log_every=2",
              "--set", "train.ema_decay=0.9", "--set", "train.grad_clip=1.0", "--out", run]
    proc = genrep(*common, "--steps", "6", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "model.safetensors").is_file()
    state = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert state["step"] == 6 and len(state["optimizers"]) == 2
    assert all(k.startswith(("generator.", "discriminator.")) for k in state["model"])
    assert set(state["ema"]["params"]) == {k for k in state["model"] if k.split(".")[-1] in ("weight", "bias")}
    losses = [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)

    proc = genrep(*common, "--steps", "8", "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert resumed["step"] == 8 and list(resumed["model"]) == list(state["model"])
    assert any(not torch.equal(resumed["model"][k], v) for k, v in state["model"].items())


class PairWithoutParts(GenerativeModel):
    """Its own training_step (two optimisers) but no distributed_modules."""

    def __init__(self):
        super().__init__(image_shape=(1, 8, 8))
        self.a, self.b = torch.nn.Linear(64, 8), torch.nn.Linear(8, 64)

    def configure_optimizers(self, cfg):
        return [torch.optim.SGD(self.a.parameters(), lr=0.1), torch.optim.SGD(self.b.parameters(), lr=0.1)]

    def training_step(self, batch, optimizers, fabric):
        raise AssertionError("never reached")


def test_training_step_without_distributed_modules_is_refused_in_one_line():
    trainer = Trainer(TrainConfig(steps=1), fabric=types.SimpleNamespace(world_size=2), run_dir=None)
    with pytest.raises(ConfigError, match="--devices 1") as err:
        trainer.fit(PairWithoutParts(), None)
    assert "\n" not in str(err.value) and "distributed_modules" in str(err.value)
