import math

import pytest
import torch

from genrep.data import DataSpec, load_dataset
from genrep.errors import ConfigError, InputError
from genrep.models import VAEConfig, build_model
from genrep.models.networks import log_normal_kl


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=512)


def test_gaussian_kl_matches_closed_form_and_monte_carlo():
    mu, logvar = torch.tensor([[0.3, -1.0]]), torch.tensor([[0.2, -0.5]])
    var = logvar.exp()
    closed = 0.5 * (mu**2 + var - logvar - 1).sum()
    assert torch.allclose(log_normal_kl(mu, logvar), closed.reshape(1))
    torch.manual_seed(0)
    z = mu + var.sqrt() * torch.randn(200_000, 2)
    log_q = (-0.5 * ((z - mu) ** 2 / var + logvar + math.log(2 * math.pi))).sum(1)
    log_p = (-0.5 * (z**2 + math.log(2 * math.pi))).sum(1)
    assert abs(float((log_q - log_p).mean()) - float(closed)) < 0.01
    assert torch.allclose(log_normal_kl(torch.zeros(1, 3), torch.zeros(1, 3)), torch.zeros(1))


@pytest.mark.parametrize("name", ["vae", "cvae"])
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_loss_falls_and_samples_have_shape_and_range(digits, name, arch):
    data = load_dataset("digits", value_range="-11", limit=512)
    torch.manual_seed(0)
    model = build_model(name, VAEConfig(arch=arch, hidden=[64], channels=[8, 16], latent_dim=4),
                        DataSpec.of(data), data)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = data.batch(slice(0, 256))
    first = model(batch).loss.item()
    for _ in range(60):
        out = model(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.loss.item() < 0.8 * first
    assert set(out.parts) == {"recon", "kl"}
    samples = model.eval().sample(10)
    assert samples.shape == (10, 1, 8, 8)
    assert samples.min() >= -1 and samples.max() <= 1


def test_negative_elbo_of_gaussian_likelihood_is_exact():
    data = load_dataset("digits", limit=16)
    model = build_model("vae", VAEConfig(likelihood="gaussian", gaussian_std=0.5), DataSpec.of(data))
    x = data.images[:2]
    logits = torch.full_like(x, 0.5)
    expected = ((x - 0.5) ** 2).flatten(1).sum(1) / (2 * 0.25) + 0.5 * 64 * math.log(2 * math.pi * 0.25)
    assert torch.allclose(model.negative_log_likelihood(x, logits), expected)


def test_cvae_conditions_on_labels(digits):
    model = build_model("cvae", VAEConfig(), DataSpec.of(digits), digits)
    torch.manual_seed(0)
    z = torch.zeros(2, 16)
    cond = model.condition({"y": torch.tensor([0, 1])})
    a, b = model.decode(z, cond)
    assert not torch.allclose(a, b), "decoder output must depend on the label"
    with pytest.raises(InputError, match="needs labels 'y'"):
        model({"x": digits.images[:4]})


def test_continuous_conditions_are_standardised_with_training_statistics():
    data = load_dataset("digits", limit=64)
    data.labels = None
    data.conditions = torch.randn(64, 3) * torch.tensor([1000.0, 1.0, 0.01]) + 5
    model = build_model("cvae", VAEConfig(), DataSpec.of(data), data)
    emb = model.condition({"c": data.conditions})
    assert torch.allclose(emb.mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(emb.std(0), torch.ones(3), atol=1e-4)
    with pytest.raises(InputError, match="N×3"):
        model.condition({"c": torch.zeros(4, 2)})
    with pytest.raises(InputError, match="needs conditions"):
        model.sample(4)


def test_wrong_image_shape_range_and_nan_are_rejected(digits):
    model = build_model("vae", VAEConfig(), DataSpec.of(digits))
    with pytest.raises(InputError, match=r"N×1×8×8"):
        model({"x": torch.rand(4, 1, 28, 28)})
    with pytest.raises(InputError, match=r"must lie in \[0, 1\]"):
        model({"x": torch.rand(4, 1, 8, 8) * 2 - 1})
    with pytest.raises(InputError, match="NaN"):
        model({"x": torch.full((4, 1, 8, 8), float("nan"))})
    with pytest.raises(InputError, match="float tensor"):
        model({"x": torch.zeros(4, 1, 8, 8, dtype=torch.uint8)})


def test_conv_arch_rejects_sizes_that_do_not_divide():
    data = load_dataset("digits", limit=16, pad_to=10)
    with pytest.raises(ConfigError, match="divisible by 4.*pad_to"):
        build_model("vae", VAEConfig(arch="conv", channels=[8, 16]), DataSpec.of(data))


def test_unknown_model_and_bad_config():
    data = load_dataset("digits", limit=16)
    with pytest.raises(ConfigError, match="unknown model 'vea'; valid names: .*vae"):
        build_model("vea", VAEConfig(), DataSpec.of(data))
    with pytest.raises(ConfigError, match="model.arch must be one of mlp, conv"):
        VAEConfig(arch="resnet")
