"""A new user's mistakes with `genrep train`, `genrep demo` and `genrep reproduce` (issue 13 §5):
a failed train leaves no run folder in the way of the corrected command, running out of memory is
a one-line error naming the setting, a resume may change train.lr / train.grad_clip / train.steps
(applied and recorded), the wall time adds up over resumed segments, Ctrl-C gives advice that fits
the command, and `reproduce` checks its inputs before it trains anything."""

from __future__ import annotations

import itertools
import json
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_one_line_error, run_cli
from genrep.data import ImageDataset
from genrep.errors import ConfigError
from genrep.models.base import GenerativeModel, Output
from genrep.training import TrainConfig, Trainer, launch_fabric, load_checkpoint
from genrep.training import loop

FAST = ["--no-progress", "--set", "train.log_every=5", "--set", "train.checkpoint_every=10"]
OOM = "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to allocate 123000000000 bytes"


def train_digits(capsys, out, *extra, steps=10):
    return run_cli(capsys, "train", "vae", "--dataset", "digits", "--out", out, "--steps", steps, *FAST, *extra)


def metrics(run_dir, key="lr"):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in lines if key in r}


# 1. a failed train leaves nothing in the way ---------------------------------------------------

@pytest.mark.parametrize("argv, fragments", [
    (["--dataset", "nosuch"], ["unknown dataset 'nosuch'"]),
    (["--dataset", "mnist", "--data-path", "{tmp}/no_mnist_here"], ["no_mnist_here", "does not exist"]),
    (["--dataset", "npz", "--data-path", "{tmp}/junk.npz"], ["junk.npz"]),
    (["--dataset", "digits", "--set", "model.arch=mnist"], ["model.arch 'mnist' needs 28×28", "8×8"]),
    (["--dataset", "digits", "--set", f"model.latent_dim={10 ** 13}"],
     ["model too large", "lower model.latent_dim", "out of memory"]),
])
def test_failed_train_leaves_no_run_folder(capsys, tmp_path, argv, fragments):
    (tmp_path / "junk.npz").write_bytes(b"not an npz file")
    out = tmp_path / "run"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, err = run_cli(capsys, "train", "vae", *argv, "--out", out, "--steps", 5, "--no-progress")
    assert_one_line_error(code, err, *fragments)
    assert not out.exists(), sorted(p.name for p in out.iterdir())


def test_corrected_rerun_needs_no_overwrite(capsys, tmp_path):
    out = tmp_path / "run"
    code, _, err = train_digits(capsys, out, "--set", f"model.latent_dim={10 ** 13}")
    line = assert_one_line_error(code, err, "model too large: building vae ran out of memory",
                                 f"lower model.latent_dim ({10 ** 13}; default 16)")
    assert "Traceback" not in err and not out.exists(), line
    code, stdout, err = train_digits(capsys, out, "--set", "model.latent_dim=8")
    assert code == 0, err
    assert (out / "model.safetensors").is_file() and "run folder" in stdout


def failing_step(monkeypatch, at_call: int, error: BaseException):
    """Make the Trainer's `at_call`-th optimisation step raise `error`."""
    original, calls = loop.Trainer._step, itertools.count(1)

    def step(self, *args, **kwargs):
        if next(calls) == at_call:
            raise error
        return original(self, *args, **kwargs)

    monkeypatch.setattr(loop.Trainer, "_step", step)


def test_out_of_memory_while_training_is_one_line_and_removes_the_folder(capsys, tmp_path, monkeypatch):
    failing_step(monkeypatch, 3, RuntimeError(OOM))
    out = tmp_path / "run"
    code, _, err = train_digits(capsys, out)
    assert_one_line_error(code, err, "out of memory while training vae", "123 GB", "train.batch_size (128)")
    assert not out.exists()


def test_torch_out_of_memory_error_is_one_line(capsys, tmp_path, monkeypatch):
    failing_step(monkeypatch, 2, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"))
    code, _, err = train_digits(capsys, tmp_path / "run", "--set", "model.hidden=[1024,512]")
    assert_one_line_error(code, err, "out of memory while training vae", "20.00 GiB",
                          "model.hidden ([1024, 512]; default [512, 256])", "train.batch_size")


def test_failure_after_a_checkpoint_keeps_the_folder(tmp_path, monkeypatch):
    from genrep.experiments.run_config import resolve_run_config
    from genrep.experiments.train import train_run

    cfg = resolve_run_config("vae", overrides={"train": {"steps": 20, "checkpoint_every": 10, "progress": False}})
    failing_step(monkeypatch, 15, RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        train_run(cfg, tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["step"] == 10


def test_failure_keeps_a_folder_that_existed_before(tmp_path, monkeypatch):
    from genrep.experiments.run_config import resolve_run_config
    from genrep.experiments.train import train_run

    cfg = resolve_run_config("vae", overrides={"train": {"steps": 20, "checkpoint_every": 10, "progress": False}})
    empty = tmp_path / "empty"
    empty.mkdir()
    failing_step(monkeypatch, 3, RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        train_run(cfg, empty)
    assert empty.is_dir() and not any(empty.iterdir())  # kept, emptied of what the command wrote
    # a resumed run that fails is never touched
    monkeypatch.undo()
    train_run(cfg, tmp_path / "done")
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "done").rglob("*"))
    longer = resolve_run_config("vae", overrides={"train": {"steps": 30, "checkpoint_every": 10, "progress": False}})
    failing_step(monkeypatch, 1, RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        train_run(longer, tmp_path / "done", resume=True)
    assert set(before) <= set(p.relative_to(tmp_path) for p in (tmp_path / "done").rglob("*"))


def test_overwrite_keeps_the_old_run_when_the_new_one_cannot_start(capsys, tmp_path):
    out = tmp_path / "run"
    assert train_digits(capsys, out)[0] == 0
    code, _, err = train_digits(capsys, out, "--overwrite", "--set", "model.arch=mnist")
    assert_one_line_error(code, err, "model.arch 'mnist'")
    assert (out / "model.safetensors").is_file()  # validated before the old run was wiped


# 2. a resume may change train.lr, train.grad_clip, train.steps ---------------------------------

def test_resume_applies_and_records_lr_grad_clip_and_steps(capsys, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert train_digits(capsys, out, steps=10)[0] == 0
    clips = []
    original_clip = loop.Fabric.clip_gradients

    def clip(self, module, optimizer, max_norm=None, **kwargs):
        clips.append(max_norm)
        return original_clip(self, module, optimizer, max_norm=max_norm, **kwargs)

    monkeypatch.setattr(loop.Fabric, "clip_gradients", clip)
    code, _, err = train_digits(capsys, out, "--resume", "--lr", "1e-4", "--set", "train.grad_clip=0.5", steps=20)
    assert code == 0, err
    lrs = metrics(out)
    assert [lrs[s] for s in (5, 10)] == [1e-3, 1e-3] and [lrs[s] for s in (15, 20)] == [1e-4, 1e-4]
    assert clips == [0.5] * 10
    changes = [json.loads(line) for line in (out / "resume_changes.jsonl").read_text().splitlines()]
    assert {(c["step"], c["key"], c["old"], c["new"]) for c in changes} == {
        (10, "train.steps", 10, 20), (10, "train.lr", 1e-3, 1e-4), (10, "train.grad_clip", None, 0.5)}
    import yaml

    stored = yaml.safe_load((out / "config.yaml").read_text())["train"]
    assert (stored["lr"], stored["grad_clip"], stored["steps"]) == (1e-4, 0.5, 20)
    assert load_checkpoint(out / "checkpoints" / "last.ckpt")["config"]["train"]["lr"] == 1e-4


def test_resume_still_refuses_other_changes_by_name(capsys, tmp_path):
    out = tmp_path / "run"
    assert train_digits(capsys, out)[0] == 0
    code, _, err = train_digits(capsys, out, "--resume", "--lr", "1e-4", "--batch-size", "64", steps=20)
    line = assert_one_line_error(code, err, "train.batch_size (128 → 64)", "train.lr, train.grad_clip")
    assert "train.lr (" not in line  # a changed lr is allowed, so it is not named as a difference
    assert not (out / "resume_changes.jsonl").exists()


class TinyAE(GenerativeModel):
    def __init__(self):
        super().__init__(image_shape=(1, 8, 8))
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 64))

    def forward(self, batch):
        x = self.check_batch(batch)
        loss = F.mse_loss(self.net(x).view_as(x), x)
        return Output(loss, {})

    def sample(self, n, cond=None):
        return torch.rand(n, 1, 8, 8)


class Stop(Exception):
    pass


@pytest.mark.parametrize("scheduler", ["cosine", "exponential", "none"])
def test_changed_lr_reaches_the_optimiser_with_the_schedule_kept(tmp_path, scheduler):
    data = ImageDataset(torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    cfg = dict(steps=16, batch_size=8, lr=0.02, scheduler=scheduler, lr_gamma=0.5, log_every=1,
               checkpoint_every=8, sample_every=11, progress=False)

    def fit(run_dir, hooks=(), resume=False, **changes):
        train_cfg = TrainConfig(**{**cfg, **changes})
        trainer = Trainer(train_cfg, fabric=launch_fabric(train_cfg), run_dir=run_dir, resume=resume)
        torch.manual_seed(0)
        return trainer.fit(TinyAE(), data, hooks=hooks)

    fit(tmp_path / "full")

    def stop(state):
        raise Stop

    with pytest.raises(Stop):  # stopped at step 11, the checkpoint is at step 8
        fit(tmp_path / "cut", hooks=[stop])
    fit(tmp_path / "cut", resume=True, lr=0.005)
    full, cut = metrics(tmp_path / "full"), metrics(tmp_path / "cut")
    assert all(cut[s] == full[s] for s in range(1, 9))
    assert all(cut[s] == pytest.approx(full[s] / 4, rel=1e-9) for s in range(9, 17)), (full, cut)


# 3. the wall time of a resumed run counts every segment ----------------------------------------

def test_wall_time_accumulates_over_resumed_segments(capsys, tmp_path, monkeypatch):
    out = tmp_path / "run"
    fake = itertools.count(0.0, 50.0)  # a slow first segment: every clock reading is 50 s later
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: next(fake)))
    assert train_digits(capsys, out, steps=10)[0] == 0
    monkeypatch.undo()
    first = load_checkpoint(out / "checkpoints" / "last.ckpt")["wall_time_s"]
    assert first >= 50
    assert train_digits(capsys, out, "--resume", steps=20)[0] == 0
    total = json.loads((out / "summary.json").read_text())["wall_time_s"]
    second = load_checkpoint(out / "checkpoints" / "last.ckpt")["wall_time_s"]
    assert first < second <= total < first + 60


# 4. Ctrl-C advice fits the command -------------------------------------------------------------

def test_interrupted_train_before_a_checkpoint_says_run_again(capsys, tmp_path, monkeypatch):
    failing_step(monkeypatch, 3, KeyboardInterrupt())
    out = tmp_path / "run"
    code, _, err = train_digits(capsys, out)
    assert code == 130
    assert "genrep: interrupted" in err and "nothing to resume" in err and "--resume" not in err, err
    assert not out.exists()


def test_interrupted_train_after_a_checkpoint_says_resume(capsys, tmp_path, monkeypatch):
    failing_step(monkeypatch, 15, KeyboardInterrupt())
    out = tmp_path / "run"
    code, _, err = train_digits(capsys, out, steps=20)
    assert code == 130 and "last.ckpt" in err and "continue with the same command and --resume" in err, err
    assert (out / "checkpoints" / "last.ckpt").is_file()


def test_interrupted_demo_suggests_overwrite_not_resume(capsys, tmp_path, monkeypatch):
    import genrep.experiments.demo as demo

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_demo", interrupted)
    code, _, err = run_cli(capsys, "demo", "--out", tmp_path / "demo", "--no-progress")
    assert code == 130
    assert f"genrep demo --out {tmp_path / 'demo'} --overwrite" in err and "--resume" not in err, err


def test_interrupted_reproduce_says_run_again(capsys, tmp_path, monkeypatch):
    from genrep.experiments.reproduce import table_4_3_1

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(table_4_3_1, "run", interrupted)
    code, _, err = run_cli(capsys, "reproduce", "table-4.3.1", "--out", tmp_path / "t")
    assert code == 130 and "run the same command again" in err and "--resume" not in err, err


# 5. reproduce checks every input before it trains ----------------------------------------------

@pytest.fixture
def no_training(monkeypatch):
    """Any LeNet or model training in table-4.3.1 fails the test."""
    from genrep.experiments.reproduce import table_4_3_1

    def trained(*args, **kwargs):
        raise AssertionError("training started before the inputs were checked")

    monkeypatch.setattr(table_4_3_1, "lenet_for_mnist", trained)
    monkeypatch.setattr(table_4_3_1, "train_or_reuse", trained)


def test_reproduce_checks_the_calorimeter_path_first(capsys, tmp_path, no_training):
    code, _, err = run_cli(capsys, "reproduce", "table-4.3.1", "--out", tmp_path / "t",
                           "--calorimeter-path", tmp_path / "zdc.npz", "--no-progress")
    assert_one_line_error(code, err, "--calorimeter-path", "zdc.npz", "does not exist")
    np.savez(tmp_path / "zdc.npz", responses=np.zeros((10, 44, 44), dtype=np.float32))  # no particles
    code, _, err = run_cli(capsys, "reproduce", "table-4.3.1", "--out", tmp_path / "t",
                           "--calorimeter-path", tmp_path / "zdc.npz", "--no-progress")
    assert_one_line_error(code, err, "zdc.npz", "particles")


def test_reproduce_checks_the_output_folder_and_values(capsys, tmp_path, no_training):
    (tmp_path / "a_file").write_text("x")
    code, _, err = run_cli(capsys, "reproduce", "table-4.3.1", "--out", tmp_path / "a_file" / "t")
    assert_one_line_error(code, err, "cannot write", "a_file is a file")
    code, _, err = run_cli(capsys, "reproduce", "table-4.3.1", "--out", tmp_path / "t", "--scale", "huge")
    assert_one_line_error(code, err, "--scale must be one of smoke, cpu, paper")
    from genrep.experiments.reproduce import table_4_3_1

    with pytest.raises(ConfigError, match="--seeds must be an integer >= 1"):
        table_4_3_1.run(scale="smoke", seeds=0, out=tmp_path / "t", progress=False)


def test_reproduce_checks_the_celeba_path_first(capsys, tmp_path):
    code, _, err = run_cli(capsys, "reproduce", "table-4.4.1", "--out", tmp_path / "t",
                           "--celeba-path", tmp_path / "celeba")
    assert_one_line_error(code, err, "--celeba-path", "does not exist")
    (tmp_path / "celeba").mkdir()
    code, _, err = run_cli(capsys, "reproduce", "table-4.4.1", "--out", tmp_path / "t",
                           "--celeba-path", tmp_path / "celeba")
    assert_one_line_error(code, err, "img_align_celeba")
