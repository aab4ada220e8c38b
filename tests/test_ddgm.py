import numpy as np
import pytest
import torch

from genrep.config import from_dict, parse_overrides
from genrep.data import DataSpec, load_dataset
from genrep.diffusion import LossAwareSampler, LossType, ModelVarType, TimestepSampler
from genrep.errors import ConfigError, InputError
from genrep.models import DDGM, DDGMConfig, UNetSettings, build_model
from genrep.models.ddgm import from_model_range, to_model_range

TINY = UNetSettings(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(),
                    middle_attention=False, dropout=0.0)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=256)


def tiny_ddgm(data, **kw) -> DDGM:
    torch.manual_seed(0)
    cfg = DDGMConfig(steps=kw.pop("steps", 50), unet=TINY, **kw)
    return build_model("ddgm", cfg, DataSpec.of(data), data)


def count_calls(module: torch.nn.Module) -> list:
    calls = []
    module.register_forward_hook(lambda m, args, out: calls.append(args[1].clone()))
    return calls


@torch.no_grad()
def eval_loss(model, batch, seed=123) -> float:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return model(batch).loss.item()


@pytest.mark.parametrize("loss", ["simple", "vlb", "hybrid"])
def test_loss_is_finite_and_falls(digits, loss):
    model = tiny_ddgm(digits, loss=loss)
    batch = digits.batch(slice(0, 64))
    before = eval_loss(model, batch)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(30):
        out = model(batch)
        assert torch.isfinite(out.loss)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert set(out.parts) == {"mse", "vb"}
    assert eval_loss(model, batch) < 0.7 * before


def test_loss_maps_to_diffusion_enums(digits):
    expected = {"simple": (ModelVarType.FIXED_LARGE, LossType.SIMPLE, 1),
                "vlb": (ModelVarType.LEARNED_RANGE, LossType.RESCALED_KL, 2),
                "hybrid": (ModelVarType.LEARNED_RANGE, LossType.HYBRID, 2)}
    for loss, (var, kind, mult) in expected.items():
        model = tiny_ddgm(digits, loss=loss)
        assert model.diffusion.model_var_type is var and model.diffusion.loss_type is kind
        assert model.unet.config.output_channels == mult * 1


def test_value_range_round_trip():
    x = torch.rand(3, 1, 4, 4) * 2 - 1
    assert torch.allclose(to_model_range(x, (-1.0, 1.0)), x)
    u = torch.rand(3, 1, 4, 4)
    assert torch.allclose(from_model_range(to_model_range(u, (0.0, 1.0)), (0.0, 1.0)), u, atol=1e-6)
    assert float(to_model_range(torch.zeros(1), (0.0, 1.0))) == -1.0


def test_sample_shape_and_range(digits):
    model = tiny_ddgm(digits).eval()
    calls = count_calls(model.unet)
    samples = model.sample(6)
    assert samples.shape == (6, 1, 8, 8)
    assert samples.min() >= 0 and samples.max() <= 1
    assert len(calls) == 50 and [int(c[0]) for c in calls] == list(range(49, -1, -1))
    with pytest.raises(InputError):
        model.sample(2, torch.tensor([0, 1]))


def test_respaced_sampling_with_ten_steps(digits):
    model = tiny_ddgm(digits, sample_steps=10).eval()
    assert model.sampling_diffusion.num_timesteps == 10
    calls = count_calls(model.unet)
    samples = model.sample(4)
    assert samples.shape == (4, 1, 8, 8) and torch.isfinite(samples).all()
    seen = [int(c[0]) for c in calls]
    assert len(seen) == 10 and seen[0] == 49 and seen[-1] == 0  # the model sees original timesteps


def test_ddim_is_deterministic_given_noise(digits):
    model = tiny_ddgm(digits, sampler="ddim", sample_steps=5).eval()
    with torch.no_grad():  # give the zero-initialised UNet a non-trivial output
        for p in model.unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    noise = torch.randn(3, 1, 8, 8)
    a, b = model.sample(3, noise=noise), model.sample(3, noise=noise)
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1


class StubSampler(TimestepSampler):
    def __init__(self, t, w):
        self.num_timesteps, self.t, self.w = 50, t, w

    def weights(self):
        return np.ones(self.num_timesteps)

    def sample(self, batch_size, device=None, generator=None):
        return self.t[:batch_size].to(device), self.w[:batch_size].to(device)


def test_loss_is_the_importance_weighted_mean(digits, monkeypatch):
    model = tiny_ddgm(digits)
    t = torch.tensor([0, 5, 10, 49])
    w = torch.tensor([0.5, 1.0, 2.0, 4.0])
    model.timestep_sampler = StubSampler(t, w)
    per_sample = torch.tensor([1.0, 2.0, 3.0, 4.0])
    seen = {}

    def fake_losses(unet, x0, t_in, noise=None, model_kwargs=None, **kw):
        seen["t"] = t_in
        return {"loss": per_sample, "mse": per_sample * 10, "vb": per_sample * 100}

    monkeypatch.setattr(model.diffusion, "training_losses", fake_losses)
    out = model(digits.batch(slice(0, 4)))
    assert torch.equal(seen["t"], t)
    assert out.loss.item() == pytest.approx(float((per_sample * w).mean()))
    assert out.parts["mse"].item() == pytest.approx(10 * float((per_sample * w).mean()))


def test_loss_aware_sampler_learns_from_training_losses_and_is_saved(digits):
    model = tiny_ddgm(digits, steps=30, timestep_sampler="loss-aware")
    assert isinstance(model.timestep_sampler, LossAwareSampler)
    batch = digits.batch(slice(0, 128))
    model.train()
    for _ in range(4):
        model(batch)
    counts = model.sampler_loss_counts.clone()
    assert 0 < int(counts.sum()) <= 30 * 10  # 10 losses of history per step
    assert int(counts.sum()) == int(model.timestep_sampler._loss_counts.sum())
    model.eval()
    with torch.no_grad():
        model(batch)  # evaluation does not feed the sampler
    assert torch.equal(model.sampler_loss_counts, counts)
    fresh = tiny_ddgm(digits, steps=30, timestep_sampler="loss-aware")
    fresh.load_state_dict(model.state_dict())
    fresh._draw_timesteps(2, "cpu")
    assert np.array_equal(fresh.timestep_sampler._loss_counts, counts.numpy())
    # warmed up: the sampler draws from its history (non-uniform probabilities)
    model.sampler_loss_history.fill_(1.0)
    model.sampler_loss_history[0] = 100.0
    model.sampler_loss_counts.fill_(10)
    model._draw_timesteps(1, "cpu")
    p = model.timestep_sampler.probabilities()
    assert p[0] > 10 * p[1]


def test_class_conditional(digits):
    torch.manual_seed(0)
    model = build_model("cddgm", DDGMConfig(steps=30, unet=TINY), DataSpec.of(digits), digits)
    assert model.conditional and model.unet.config.num_classes == 10
    out = model(digits.batch(slice(0, 8)))
    assert torch.isfinite(out.loss)
    with pytest.raises(InputError, match="labels"):
        model({"x": digits.batch(slice(0, 8))["x"]})
    assert model.eval().sample(3, torch.tensor([1, 2, 3])).shape == (3, 1, 8, 8)
    assert model.sample(3).shape == (3, 1, 8, 8)
    with pytest.raises(InputError):
        model.sample(2, torch.tensor([0, 11]))


def test_nll_bits_per_dim(digits):
    model = tiny_ddgm(digits, steps=30, loss="vlb").eval()
    x = digits.batch(slice(0, 3))["x"]
    bpd = model.nll_bits_per_dim(x)
    assert bpd.shape == (3,) and torch.isfinite(bpd).all() and (bpd > 0).all()
    terms = model.nll_bits_per_dim(x, return_terms=True)
    assert terms["vb"].shape == (3, 30)
    assert torch.allclose(terms["total_bpd"], terms["vb"].sum(1) + terms["prior_bpd"])


def test_nested_config_from_overrides():
    cfg = from_dict(DDGMConfig, parse_overrides(["steps=50", "unet.model_channels=16", "unet.channel_mult=[1,2]",
                                                 "sample_steps=10"]))
    assert cfg.steps == 50 and cfg.unet.model_channels == 16 and cfg.unet.channel_mult == (1, 2)


@pytest.mark.parametrize("kwargs, key", [
    ({"loss": "kl"}, "model.loss"),
    ({"schedule": "quadratic"}, "model.schedule"),
    ({"timestep_sampler": "beta"}, "model.timestep_sampler"),
    ({"sampler": "euler"}, "model.sampler"),
    ({"steps": 50, "sample_steps": 60}, "model.sample_steps"),
    ({"steps": 10}, "model.steps"),
    ({"steps": 0}, "model.steps"),
    ({"ddim_eta": -1.0}, "model.ddim_eta"),
])
def test_bad_configs_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        DDGMConfig(**kwargs)


def test_bad_unet_settings_name_the_key(digits):
    cfg = DDGMConfig(steps=30, unet=UNetSettings(model_channels=16, num_heads=3))
    with pytest.raises(ConfigError, match=r"model\.unet\.num_heads"):
        build_model("ddgm", cfg, DataSpec.of(digits))
