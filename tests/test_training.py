"""Tests of genrep.training: exact resume, atomic checkpoints, divergence, config checks, EMA,
weights files, mixed precision, model hooks, validation and sampling hooks."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genrep.data import ImageDataset
from genrep.errors import CheckpointError, ConfigError, TrainingDivergedError
from genrep.models.base import GenerativeModel, Output
from genrep.training import (
    EMA,
    TrainConfig,
    Trainer,
    launch_fabric,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)


class ToyAE(GenerativeModel):
    """MLP autoencoder on 1×8×8 images with dropout and latent noise (both draw from torch's global
    RNG, so exact resume needs the RNG states). From training forward call `nan_from` on the loss is NaN."""

    def __init__(self, hidden: int = 16, nan_from: int | None = None):
        super().__init__(image_shape=(1, 8, 8))
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(0.2),
                                     nn.Linear(hidden, 4))
        self.decoder = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 64))
        self.nan_from, self.calls = nan_from, 0

    def forward(self, batch):
        x = self.check_batch(batch)
        z = self.encoder(x)
        z = z + 0.1 * torch.randn_like(z)
        rec = F.mse_loss(self.decoder(z).view_as(x), x)
        reg = z.pow(2).mean()
        loss = rec + 0.01 * reg
        if self.training:
            self.calls += 1
            if self.nan_from is not None and self.calls >= self.nan_from:
                loss = loss * float("nan")
        return Output(loss, {"rec": rec.detach(), "reg": reg.detach()})

    def sample(self, n, cond=None):
        return torch.sigmoid(self.decoder(torch.randn(n, 4))).view(n, 1, 8, 8)


class ToyPair(ToyAE):
    """Two optimisers and its own training_step (the shape of a GAN step)."""

    def configure_optimizers(self, cfg):
        return [torch.optim.SGD(self.encoder.parameters(), lr=cfg.lr),
                torch.optim.SGD(self.decoder.parameters(), lr=cfg.lr)]

    def training_step(self, batch, optimizers, fabric):
        enc_opt, dec_opt = optimizers
        for opt in optimizers:
            opt.zero_grad()
        out = self(batch)
        fabric.backward(out.loss)
        enc_opt.step()
        dec_opt.step()
        return out


def data(n: int = 100, seed: int = 0) -> ImageDataset:
    return ImageDataset(torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)))


def cfg_of(**kw) -> TrainConfig:
    base = dict(steps=20, batch_size=16, lr=1e-2, log_every=1, checkpoint_every=5, progress=False)
    return TrainConfig(**{**base, **kw})


def fit(cfg, run_dir, *, model=None, resume=False, **kw):
    model = model if model is not None else ToyAE()
    trainer = Trainer(cfg, fabric=launch_fabric(cfg), run_dir=run_dir, resume=resume)
    return model, trainer.fit(model, kw.pop("train", data()), config={"model": {"hidden": 16}}, **kw)


def metrics(run_dir, key="loss"):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r[key]) for r in map(json.loads, lines) if key in r]


class Crash(Exception):
    pass


def crash_at(step):
    def hook(state):
        if state.step == step:
            raise Crash

    return hook


def test_interrupted_run_resumes_to_identical_parameters(tmp_path):
    # 100 images / batch 16 = 6 batches per epoch: the checkpoint at step 10 lies inside epoch 1.
    cfg = cfg_of(ema_decay=0.9, scheduler="exponential", lr_gamma=0.9)
    torch.manual_seed(0)
    full, result = fit(cfg, tmp_path / "full")
    assert result.steps == 20 and math.isfinite(result.final_loss)

    torch.manual_seed(0)
    with pytest.raises(Crash):  # killed after step 12; the last checkpoint is at step 10
        fit(cfg_of(ema_decay=0.9, scheduler="exponential", lr_gamma=0.9, sample_every=12), tmp_path / "cut",
            hooks=[crash_at(12)])
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.ckpt")["step"] == 10
    torch.manual_seed(123)  # a different initialisation: everything must come from the checkpoint
    resumed, result = fit(cfg, tmp_path / "cut", model=ToyAE(), resume=True)
    assert result.steps == 20

    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    ckpt_full = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.ckpt")
    ckpt_cut = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.ckpt")
    for name, tensor in ckpt_full["ema"]["params"].items():
        assert torch.equal(tensor, ckpt_cut["ema"]["params"][name]), name
    assert ckpt_full["optimizers"][0]["param_groups"][0]["lr"] == ckpt_cut["optimizers"][0]["param_groups"][0]["lr"]
    assert metrics(tmp_path / "full") == metrics(tmp_path / "cut")
    assert [s for s, _ in metrics(tmp_path / "cut")] == list(range(1, 21))
    assert metrics(tmp_path / "full", "lr") == metrics(tmp_path / "cut", "lr")
    # model.safetensors holds the EMA weights
    ema_model = load_weights(tmp_path / "full" / "model.safetensors", ToyAE())
    for name, tensor in ema_model.named_parameters():
        assert torch.equal(tensor, ckpt_full["ema"]["params"][name]), name


def test_resume_with_incompatible_config_names_the_keys(tmp_path):
    fit(cfg_of(steps=5), tmp_path)
    trainer = Trainer(cfg_of(steps=8, batch_size=8), fabric=launch_fabric(cfg_of()), run_dir=tmp_path, resume=True)
    with pytest.raises(ConfigError, match=r"train\.batch_size.*model\.hidden|model\.hidden.*train\.batch_size"):
        trainer.fit(ToyAE(), data(), config={"model": {"hidden": 32}})
    # a longer step budget and other logging settings are fine
    _, result = fit(cfg_of(steps=8, log_every=2, checkpoint_every=3), tmp_path, resume=True)
    assert result.steps == 8


def test_resume_without_checkpoint_raises(tmp_path):
    with pytest.raises(CheckpointError, match="last.ckpt"):
        fit(cfg_of(steps=2), tmp_path, resume=True)


def test_interrupted_checkpoint_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})

    def torn_save(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_damaged_checkpoint_raises_checkpoint_error_naming_file(tmp_path, damage):
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, {"step": 3, "w": torch.randn(1000)})
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    else:
        path.unlink()
    with pytest.raises(CheckpointError, match=str(path)) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_checkpoint_never_unpickles_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"obj": Crash()}, path)
    with pytest.raises(CheckpointError, match="evil.ckpt"):
        load_checkpoint(path)


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    cfg = cfg_of(steps=20, log_every=3, checkpoint_every=5)
    with pytest.raises(TrainingDivergedError) as info:
        fit(cfg, tmp_path, model=ToyAE(nan_from=8))
    message = str(info.value)
    assert "loss became nan at step 8" in message
    assert "step 5" in message and "last.ckpt" in message and "train.lr" in message
    state = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert state["step"] == 5
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert not (tmp_path / "model.safetensors").exists()


def test_ema_math_on_known_sequence():
    model = nn.BatchNorm1d(1)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.5)
    for value, expected in ((1.0, 0.5), (3.0, 1.75), (3.0, 2.375)):
        with torch.no_grad():
            model.weight.fill_(value)
            model.running_mean.fill_(value)
        ema.update(model)
        assert ema.params["weight"].item() == pytest.approx(expected)
        assert ema.buffers["running_mean"].item() == value  # buffers are copied, not averaged
    with ema.swapped(model):
        assert model.weight.item() == pytest.approx(2.375)
    assert model.weight.item() == 3.0
    other = EMA(model, decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.5 and other.params["weight"].item() == pytest.approx(2.375)


def test_weights_round_trip_and_mismatches(tmp_path):
    model = ToyAE()
    path = save_weights(tmp_path / "model.safetensors", model)
    loaded = load_weights(path, ToyAE())
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match=r"shape mismatches: encoder\.1\.weight"):
        load_weights(path, ToyAE(hidden=8))
    bigger = ToyAE()
    bigger.extra = nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match=r"missing keys: extra\.weight, extra\.bias"):
        load_weights(path, bigger)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_weights(path, model)


def test_bf16_mixed_precision_on_cpu(tmp_path):
    _, result = fit(cfg_of(steps=4, precision="bf16-mixed"), tmp_path)
    assert math.isfinite(result.final_loss)


def test_validation_and_hooks_do_not_change_training(tmp_path):
    cfg = cfg_of(steps=12, checkpoint_every=0, ema_decay=0.5)
    torch.manual_seed(0)
    plain, _ = fit(cfg, tmp_path / "plain")
    seen = []

    def hook(state):
        seen.append((state.step, state.model.training))
        state.model.sample(4)

    torch.manual_seed(0)
    busy, result = fit(cfg_of(steps=12, checkpoint_every=0, ema_decay=0.5, eval_every=5, sample_every=4),
                       tmp_path / "busy", val=data(40, seed=1), hooks=[hook])
    assert seen == [(4, False), (8, False), (12, False)]
    assert [s for s, _ in metrics(tmp_path / "busy", "val_loss")] == [5, 10, 12]
    assert result.val_loss == metrics(tmp_path / "busy", "val_loss")[-1][1]
    assert result.best_val_loss == min(v for _, v in metrics(tmp_path / "busy", "val_loss"))
    for a, b in zip(plain.parameters(), busy.parameters()):
        assert torch.equal(a, b)
    record = json.loads((tmp_path / "busy" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"step", "epoch", "loss", "rec", "reg", "lr", "images_per_s", "time"} <= set(record)
    assert any((tmp_path / "busy" / "tensorboard").iterdir())


def test_custom_training_step_with_two_optimizers(tmp_path):
    model = ToyPair()
    before = [p.detach().clone() for p in model.parameters()]
    _, result = fit(cfg_of(steps=6, scheduler="cosine"), tmp_path, model=model)
    assert math.isfinite(result.final_loss)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    state = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert len(state["optimizers"]) == 2
    assert metrics(tmp_path, "lr")[-1][1] == pytest.approx(0.0, abs=1e-12)  # cosine reaches 0 at the end
    assert metrics(tmp_path, "lr_1")[-1][1] == pytest.approx(0.0, abs=1e-12)


def test_two_optimizers_without_training_step_is_rejected():
    class Bad(ToyAE):
        configure_optimizers = ToyPair.configure_optimizers

    with pytest.raises(TypeError, match="training_step"):
        fit(cfg_of(steps=1), None, model=Bad())


@pytest.mark.parametrize("field, value, allowed", [("optimizer", "rmsprop", "adamw"), ("scheduler", "step", "cosine"),
                                                   ("precision", "8-bit", "bf16-mixed"), ("steps", 0, ">= 1"),
                                                   ("ema_decay", 1.0, "[0, 1)")])
def test_config_validation_names_field_and_choices(field, value, allowed):
    with pytest.raises(ConfigError, match=rf"train\.{field}.*{__import__('re').escape(allowed)}"):
        TrainConfig(**{field: value})
