import math

import numpy as np
import pytest
import torch

from genrep.data import DataSpec, load_dataset
from genrep.diffusion import (
    BetaProportionalSampler,
    FirstStepWeightedSampler,
    LossType,
    ModelVarType,
    TimestepSampler,
    UniformSampler,
    linear_betas,
    shortened_steps,
    switching_step,
)
from genrep.errors import ConfigError, InputError
from genrep.models.ddgm import from_model_range
from genrep.models import DAED, DAEDConfig, DDGMConfig, TwoStageDAE, UNetSettings, build_model, two_stage_sample

TINY = UNetSettings(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(),
                    middle_attention=False, dropout=0.0)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=256)


def tiny_daed(data, **kw) -> DAED:
    torch.manual_seed(0)
    cfg = DAEDConfig(steps=kw.pop("steps", 50), unet=TINY, dae_unet=TINY, **kw)
    return build_model("daed", cfg, DataSpec.of(data), data)


def record(module: torch.nn.Module) -> list:
    calls = []
    module.register_forward_hook(lambda m, args, out: calls.append((args[0].detach().clone(), args[1].clone())))
    return calls


def perturb(module: torch.nn.Module, scale: float = 0.05) -> None:
    """Give a zero-initialised UNet a non-trivial output."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


class StubSampler(TimestepSampler):
    def __init__(self, t):
        self.t, self.num_timesteps = t, int(t.max()) + 1

    def weights(self):
        return np.ones(self.num_timesteps)

    def sample(self, batch_size, device=None, generator=None):
        return self.t[:batch_size].to(device), torch.ones(batch_size, device=device)


def test_shortened_schedule(digits):
    model = tiny_daed(digits, steps=500, beta1=0.1, steps_rule="published")
    assert model.T_short == 468 and model.diffusion.num_timesteps == 468
    betas = model.diffusion.betas.numpy()
    assert betas[0] == pytest.approx(0.1)
    assert np.allclose(betas[1:], linear_betas(468)[1:])  # a fresh linear schedule of length T′
    model = tiny_daed(digits, steps=50, beta1=0.2)
    assert model.T_short == shortened_steps(50, 0.2) == 50 - switching_step(50, 0.2)
    assert float(model.diffusion.betas[0]) == pytest.approx(0.2)
    assert math.isclose(float(model.diffusion.alphas_cumprod[0]), 0.8)
    cosine = tiny_daed(digits, steps=50, beta1=0.1, schedule="cosine")
    assert float(cosine.diffusion.betas[0]) == pytest.approx(0.1)


def test_loss_modes_map_to_enums(digits):
    simple, vlb = tiny_daed(digits, loss="simple"), tiny_daed(digits, loss="vlb")
    assert simple.diffusion.loss_type is LossType.SIMPLE and simple.diffusion.model_var_type is ModelVarType.FIXED_LARGE
    assert vlb.diffusion.loss_type is LossType.RESCALED_KL
    assert vlb.diffusion.model_var_type is ModelVarType.LEARNED_RANGE
    assert vlb.unet.config.output_channels == 2 and vlb.dae.config.output_channels == 1


@pytest.mark.parametrize("loss", ["simple", "vlb"])
def test_dae_gets_exactly_the_first_step_rows(digits, loss):
    model = tiny_daed(digits, loss=loss)
    t = torch.tensor([0, 3, 0, 17, 45, 0, 1, 9])
    model.timestep_sampler = StubSampler(t)
    dae_calls, unet_calls = record(model.dae), record(model.unet)
    batch = digits.batch(slice(0, 8))
    torch.manual_seed(7)
    out = model(batch)
    torch.manual_seed(7)
    noise = torch.randn(8, 1, 8, 8)  # the noise forward draws first (the stub sampler draws nothing)
    first = t == 0
    assert len(dae_calls) == 1 and len(unet_calls) == 1
    x1, t_dae = dae_calls[0]
    assert torch.equal(t_dae, torch.zeros(3, dtype=torch.long))
    x0 = batch["x"] * 2 - 1
    expected = math.sqrt(0.9) * x0[first] + math.sqrt(0.1) * noise[first]
    assert torch.allclose(x1, expected, atol=1e-5)
    assert torch.equal(unet_calls[0][1], t[~first])
    assert out.loss.item() == pytest.approx(out.parts["dae"].item() + out.parts["diffusion"].item(), rel=1e-5)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.dae.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.unet.parameters())


def test_batches_without_first_step_leave_the_dae_alone(digits):
    model = tiny_daed(digits)
    model.timestep_sampler = StubSampler(torch.tensor([4, 5, 6, 7]))
    dae_calls = record(model.dae)
    out = model(digits.batch(slice(0, 4)))
    out.loss.backward()
    assert not dae_calls and out.parts["dae"].item() == 0.0
    assert all(p.grad is None for p in model.dae.parameters())


def test_final_step_is_deterministic(digits):
    for loss in ("simple", "vlb"):
        model = tiny_daed(digits, loss=loss).eval()
        perturb(model.dae)
        x1 = torch.randn(4, 1, 8, 8)
        a, b = model.dae_step(x1), model.dae_step(x1)
        assert torch.equal(a, b)
        if loss == "simple":  # the DAE step is the noise-free p_sample at t = 0 with the DAE as ε-model
            t0 = torch.zeros(4, dtype=torch.long)
            ref = model.diffusion.p_sample(model.dae, x1, t0, generator=torch.Generator().manual_seed(1))["sample"]
            assert torch.allclose(a, ref, atol=1e-5)
        model.sample_x1 = lambda n, **kw: x1  # same x1 → same x0
        assert torch.equal(model.sample(4), model.sample(4))


def test_sampling_runs_ddgm_to_x1_then_one_dae_step(digits):
    model = tiny_daed(digits).eval()
    dae_calls, unet_calls = record(model.dae), record(model.unet)
    samples = model.sample(5)
    assert samples.shape == (5, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    assert len(dae_calls) == 1 and int(dae_calls[0][1].max()) == 0
    assert [int(c[1][0]) for c in unet_calls] == list(range(model.T_short - 1, 0, -1))
    with pytest.raises(InputError):
        model.sample(2, torch.tensor([0, 1]))


def test_respaced_sampling(digits):
    model = tiny_daed(digits, sample_steps=5).eval()
    kept = model.sampling_diffusion.timestep_map.tolist()
    assert kept[:2] == [0, 1] and kept[-1] == model.T_short - 1 and len(kept) == 6
    dae_calls, unet_calls = record(model.dae), record(model.unet)
    assert model.sample(3).shape == (3, 1, 8, 8)
    assert len(unet_calls) == 5 and len(dae_calls) == 1
    assert int(unet_calls[-1][1][0]) == 1
    ddim = tiny_daed(digits, sample_steps=5, sampler="ddim").eval()
    assert torch.isfinite(ddim.sample(2)).all()


@pytest.mark.parametrize("rule", ["beta", "first-step", "uniform"])
def test_sampler_frequencies_follow_the_rule(digits, rule):
    model = tiny_daed(digits, dae_sampler=rule, beta1=0.1)
    sampler, T = model.timestep_sampler, model.T_short
    betas = model.diffusion.betas.numpy()
    if rule == "beta":
        assert isinstance(sampler, BetaProportionalSampler)
        p = betas / betas.sum()
    elif rule == "first-step":
        assert isinstance(sampler, FirstStepWeightedSampler)
        w = np.ones(T)
        w[0] = 0.1 * T
        p = w / w.sum()
    else:
        assert isinstance(sampler, UniformSampler)
        p = np.full(T, 1.0 / T)
    assert np.allclose(sampler.probabilities(), p)
    n = 200_000
    t, weights = sampler.sample(n, generator=torch.Generator().manual_seed(0))
    freq = np.bincount(t.numpy(), minlength=T) / n
    assert abs(freq[0] - p[0]) < 4 * math.sqrt(p[0] * (1 - p[0]) / n) + 1e-9
    assert np.abs(freq - p).max() < 0.01
    assert torch.allclose(weights, torch.from_numpy(1.0 / (T * p[t.numpy()])).float())


@pytest.mark.parametrize("loss", ["simple", "vlb"])
def test_loss_falls_on_digits(digits, loss):
    model = tiny_daed(digits, loss=loss, dae_sampler="first-step")
    batch = digits.batch(slice(0, 64))

    def fixed_loss():
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(123)
            return model(batch).loss.item()

    before = fixed_loss()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(30):
        out = model(batch)
        assert torch.isfinite(out.loss)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert fixed_loss() < 0.7 * before


def test_reconstruct_and_diffusion_bits(digits):
    model = tiny_daed(digits, steps=30, beta1=0.1).eval()
    x = digits.batch(slice(0, 3))["x"]
    rec = model.reconstruct(x)
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1
    terms = model.diffusion_bits_per_dim(x)
    assert terms["vb"].shape == (3, model.T_short - 1) and torch.isfinite(terms["total_bpd"]).all()


def test_two_stage_sampling_calls_the_dae_once(digits):
    torch.manual_seed(0)
    ddgm = build_model("ddgm", DDGMConfig(steps=50, unet=TINY), DataSpec.of(digits)).eval()
    dae = TwoStageDAE.for_ddgm(ddgm, beta1=0.1, unet=TINY).eval()
    k = switching_step(50, 0.1)
    assert dae.switch_step == k
    out = dae(digits.batch(slice(0, 16)))  # trains on q(x_k|x_0), x̂_0-MSE
    assert torch.isfinite(out.loss) and set(out.parts) == {"mse"}
    dae_calls, ddgm_calls = record(dae.unet), record(ddgm.unet)
    samples = two_stage_sample(ddgm, dae, k, 4)
    assert samples.shape == (4, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    assert len(dae_calls) == 1 and int(dae_calls[0][1][0]) == k
    assert [int(c[1][0]) for c in ddgm_calls] == list(range(49, k, -1))
    with pytest.raises(InputError, match="switching step"):
        two_stage_sample(ddgm, dae, k + 1, 2)
    other = TwoStageDAE.for_ddgm(build_model("ddgm", DDGMConfig(steps=60, unet=TINY), DataSpec.of(digits)), unet=TINY)
    with pytest.raises(InputError, match="schedule"):
        two_stage_sample(ddgm, other, other.switch_step, 2)
    with pytest.raises(InputError):
        dae.sample(2)


@pytest.mark.parametrize("kwargs, key", [
    ({"beta1": 1.5}, "model.beta1"),
    ({"beta1": 0.0}, "model.beta1"),
    ({"loss": "hybrid"}, "model.loss"),
    ({"dae_sampler": "gamma"}, "model.dae_sampler"),
    ({"steps_rule": "guess"}, "model.steps_rule"),
    ({"steps": 50, "steps_rule": "published"}, "model.steps_rule"),
    ({"schedule": "linear_combine"}, "model.schedule"),
    ({"steps": 50, "sample_steps": 50}, "model.sample_steps"),
    ({"steps": 22, "beta1": 0.3}, "model.steps"),
    ({"sampler": "euler"}, "model.sampler"),
])
def test_bad_configs_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        DAEDConfig(**kwargs)


def test_bad_dae_unet_names_its_key(digits):
    cfg = DAEDConfig(steps=50, unet=TINY, dae_unet=UNetSettings(model_channels=16, num_heads=3))
    with pytest.raises(ConfigError, match=r"model\.dae_unet\.num_heads"):
        build_model("daed", cfg, DataSpec.of(digits))


def test_defaults_follow_the_published_runs():
    """T = 500, β_1 = 0.1: T′ = 468 and p(t = 0) = 0.091, as the published runs (not 452 and 0.0099)."""
    from genrep.models.daed import daed_timestep_sampler

    cfg = DAEDConfig(steps=500, beta1=0.1)
    assert (cfg.steps_rule, cfg.dae_sampler, cfg.shortened_steps) == ("thesis", "first-step", 468)
    w = daed_timestep_sampler(cfg).weights()
    assert w[0] / w.sum() == pytest.approx(0.0911, abs=1e-4)


def test_plain_linear_is_the_reference_small_beta_run(digits):
    """The reference's "β_1 = 0.001" DAED: the plain T-step linear schedule, its own β[0] for the DAE."""
    cfg = DAEDConfig(steps=500, beta1=0.001, schedule="plain-linear", steps_rule="argmin")
    assert cfg.shortened_steps == 500 and cfg.first_step_beta == pytest.approx(2e-4)
    model = tiny_daed(digits, steps=50, beta1=0.001, schedule="plain-linear", dae_sampler="first-step")
    assert model.T_short == 50
    np.testing.assert_allclose(model.diffusion.betas.double().numpy(), linear_betas(50))
    w = model.timestep_sampler.weights()  # the first-step weight uses the real first-step noise, 0.002·50
    assert w[0] == pytest.approx(linear_betas(50)[0] * 50) and (w[1:] == 1).all()


class FixedOutput(torch.nn.Module):
    def __init__(self, out):
        super().__init__()
        self.out, self.weight = out, torch.nn.Parameter(torch.ones(()))

    def forward(self, x, t):
        return self.weight * self.out[: len(x)]


@pytest.mark.parametrize("loss, prediction", [("simple", None), ("vlb", "eps"), ("vlb", None), ("simple", "x0")])
def test_dae_parameterisation_and_loss(digits, loss, prediction):
    model = tiny_daed(digits, steps=50, beta1=0.1, loss=loss, dae_prediction=prediction)
    x0 = digits.batch(slice(0, 4))["x"] * 2 - 1
    noise, out = torch.randn_like(x0), torch.randn_like(x0)
    model.dae = FixedOutput(out)
    beta, T_short = 0.1, model.T_short
    x1 = math.sqrt(1 - beta) * x0 + math.sqrt(beta) * noise
    x0_from_eps = (x1 - math.sqrt(beta) * out) / math.sqrt(1 - beta)
    got = model.dae_loss(x0, noise)
    resolved = prediction or ("eps" if loss == "simple" else "x0")
    if resolved == "x0":
        expected, step = ((x0 - out) ** 2).mean((1, 2, 3)), out
    elif loss == "simple":
        expected, step = ((noise - out) ** 2).mean((1, 2, 3)), x0_from_eps
    else:  # the reference's VLB term at t = 0: (T′−1)·MSE(x̂_0(ε̂), x_0) = (T′−1)·β/(1−β)·ε-MSE
        expected, step = (T_short - 1) * ((x0 - x0_from_eps) ** 2).mean((1, 2, 3)), x0_from_eps
        assert torch.allclose(expected, (T_short - 1) * beta / (1 - beta) * ((noise - out) ** 2).mean((1, 2, 3)),
                              rtol=1e-4)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
    model.config.clip_denoised = False
    assert torch.allclose(model.dae_step(x1), step, atol=1e-5)


def test_bad_dae_prediction_names_the_key():
    with pytest.raises(ConfigError, match=r"model\.dae_prediction"):
        DAEDConfig(dae_prediction="v")


def test_reference_two_stage_dae_trains_an_eps_dae_at_beta1(digits):
    torch.manual_seed(0)
    ddgm = build_model("ddgm", DDGMConfig(steps=50, unet=TINY), DataSpec.of(digits)).eval()
    dae = TwoStageDAE.for_ddgm(ddgm, beta1=0.1, unet=TINY, mode="reference")
    perturb(dae.unet)
    calls = record(dae.unet)
    batch = digits.batch(slice(0, 8))
    torch.manual_seed(3)
    out = dae(batch)
    torch.manual_seed(3)
    noise = torch.randn(8, 1, 8, 8)
    x_in, t_in = calls[0]
    x0 = batch["x"] * 2 - 1
    assert torch.equal(t_in, torch.zeros(8, dtype=torch.long))  # a DAED's DAE: time input 0
    assert torch.allclose(x_in, math.sqrt(0.9) * x0 + math.sqrt(0.1) * noise, atol=1e-5)
    eps_hat = dae.unet(x_in, t_in)
    assert out.loss.item() == pytest.approx(((noise - eps_hat) ** 2).mean().item(), rel=1e-5)


@pytest.mark.parametrize("k", [0, 1, 7])
def test_reference_two_stage_sampling_order(digits, k):
    """DDGM steps T−1 … max(k, 1), the DDGM's t = 0 step on that x, then the ε-DAE (image_sample_with_two_models)."""
    torch.manual_seed(0)
    ddgm = build_model("ddgm", DDGMConfig(steps=50, unet=TINY), DataSpec.of(digits)).eval()
    perturb(ddgm.unet)
    dae = TwoStageDAE.for_ddgm(ddgm, beta1=0.1, switch_step=k, unet=TINY, mode="reference").eval()
    perturb(dae.unet, 0.01)
    ddgm_calls, dae_calls = record(ddgm.unet), record(dae.unet)
    samples = two_stage_sample(ddgm, dae, k, 3, generator=torch.Generator().manual_seed(0))
    assert [int(c[1][0]) for c in ddgm_calls] == [*range(49, max(k, 1) - 1, -1), 0]
    ddgm_in, _ = ddgm_calls[-1]
    x0_ddgm = ddgm.diffusion.p_mean_variance(ddgm.unet, ddgm_in, torch.zeros(3, dtype=torch.long),
                                             clip_denoised=True)["pred_xstart"]
    x_dae, t_dae = dae_calls[0]
    assert torch.allclose(x_dae, x0_ddgm, atol=1e-5) and int(t_dae[0]) == 0
    eps = dae.unet(x_dae, t_dae)
    expected = (x_dae - math.sqrt(0.1) * eps) / math.sqrt(0.9)
    assert 0.2 < float((expected.abs() < 1).float().mean())  # most pixels are not clamped: a real check
    assert torch.allclose(samples, from_model_range(expected, ddgm.value_range), atol=1e-5)


def test_bad_two_stage_mode_is_refused(digits):
    ddgm = build_model("ddgm", DDGMConfig(steps=50, unet=TINY), DataSpec.of(digits))
    with pytest.raises(ConfigError, match=r"model\.mode"):
        TwoStageDAE.for_ddgm(ddgm, unet=TINY, mode="paper")
