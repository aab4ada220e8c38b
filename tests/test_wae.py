"""WAE-MMD / cWAE: the IMQ MMD estimator against hand-computed values and its unbiasedness, the
loss falling on digits, samples, conditions and config checks."""

import pytest
import torch

from genrep.data import DataSpec, load_dataset
from genrep.errors import ConfigError, InputError
from genrep.models import build_model
from genrep.models.wae import IMQ_SCALES, WAE, WAEConfig, imq_mmd


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", value_range="-11", limit=256)


def _k(a, b, scales, c_base):
    return sum(s * c_base / (s * c_base + sum((u - v) ** 2 for u, v in zip(a, b))) for s in scales)


def test_mmd_matches_a_hand_computed_u_statistic():
    x = [[0.0, 1.0], [1.0, 0.0], [3.0, -1.0]]
    y = [[0.5, 0.5], [2.0, 2.0], [-1.0, 0.0], [0.0, -2.0]]
    for scales, c_base in [((1.0,), 2.0), (IMQ_SCALES, 4.0)]:
        kxx = sum(_k(a, b, scales, c_base) for i, a in enumerate(x) for j, b in enumerate(x) if i != j) / (3 * 2)
        kyy = sum(_k(a, b, scales, c_base) for i, a in enumerate(y) for j, b in enumerate(y) if i != j) / (4 * 3)
        kxy = sum(_k(a, b, scales, c_base) for a in x for b in y) / (3 * 4)
        expected = kxx + kyy - 2 * kxy
        got = imq_mmd(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64),
                      c_base=c_base, scales=scales)
        assert got.item() == pytest.approx(expected, rel=1e-12)


def test_mmd_is_small_for_one_distribution_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 8, generator=g), torch.randn(300, 8, generator=g)
    same = imq_mmd(x, y, c_base=16.0).item()
    shifted = [imq_mmd(x, y + s, c_base=16.0).item() for s in (0.5, 2.0)]
    assert abs(same) < 0.03
    assert 5 * abs(same) < shifted[0] < shifted[1]


def test_mmd_u_statistic_is_unbiased():
    """E[MMD²_u] = 0 when both samples come from one distribution, even for 4 points each (the
    biased V-statistic, which keeps the diagonal, is clearly positive there)."""
    g = torch.Generator().manual_seed(1)
    values = torch.stack([imq_mmd(torch.randn(4, 2, generator=g, dtype=torch.float64),
                                  torch.randn(4, 2, generator=g, dtype=torch.float64), c_base=4.0)
                          for _ in range(400)])
    assert abs(values.mean().item()) < 4 * values.std().item() / 20
    assert abs(values.mean().item()) < 0.15  # the V-statistic averages ≈ 1.4 here


def test_mmd_input_errors():
    with pytest.raises(InputError, match="at least 2 points"):
        imq_mmd(torch.zeros(1, 3), torch.zeros(5, 3), c_base=1.0)
    with pytest.raises(InputError, match="N×D"):
        imq_mmd(torch.zeros(4, 3), torch.zeros(4, 2), c_base=1.0)


def test_prior_std_sets_the_prior_and_the_kernel_scale():
    model = WAE(WAEConfig(latent_dim=4, prior_std=3.0), image_shape=(1, 8, 8))
    torch.manual_seed(0)
    assert abs(model.mmd(3.0 * torch.randn(500, 4)).item()) < 0.02
    assert model.mmd(torch.randn(500, 4)).item() > 0.1


@pytest.mark.parametrize("name", ["wae", "cwae"])
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_loss_falls_and_samples_have_shape_and_range(digits, name, arch):
    torch.manual_seed(0)
    cfg = WAEConfig(arch=arch, hidden=[64], channels=[8, 16], latent_dim=4, output="tanh")
    model = build_model(name, cfg, DataSpec.of(digits), digits)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = digits.batch(slice(0, 64))
    first = model(batch).loss.item()
    for _ in range(30):
        out = model(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.loss.item() < 0.5 * first
    assert set(out.parts) == {"recon", "mmd"}
    assert torch.isfinite(out.parts["mmd"])
    samples = model.eval().sample(10)
    assert samples.shape == (10, 1, 8, 8)
    assert samples.min() >= -1 and samples.max() <= 1


def test_reconstruction_term_is_the_summed_squared_error(digits):
    model = build_model("wae", WAEConfig(lambda_mmd=0.0, recon_scale=0.05), DataSpec.of(digits)).eval()
    batch = digits.batch(slice(0, 8))
    x = batch["x"]
    with torch.no_grad():
        expected = 0.05 * (x - model.reconstruct(batch)).pow(2).flatten(1).sum(1).mean()
        out = model(batch)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert model.encode(x).shape == (8, 16)
    assert model.decode(torch.zeros(3, 16)).shape == (3, 1, 8, 8)
    assert model(digits.batch(slice(0, 1))).parts["mmd"].item() == 0.0  # one image: no MMD estimate


def test_cwae_needs_a_condition_and_sample_follows_the_labels(digits):
    model = build_model("cwae", WAEConfig(latent_dim=4), DataSpec.of(digits), digits).eval()
    with pytest.raises(InputError, match="conditional"):
        model({"x": digits.images[:4]})
    with pytest.raises(InputError, match="3 rows but n=4"):
        model.sample(4, torch.tensor([0, 1, 2]))
    labels = torch.tensor([3, 3, 7, 7])
    assert model.sample(4, labels).shape == (4, 1, 8, 8)
    assert model.sample(5).shape == (5, 1, 8, 8)  # default labels cycle through the classes
    z = torch.zeros(2, 4)
    a, b = model.decode(z, model.condition({"y": torch.tensor([0, 1])}))
    assert not torch.allclose(a, b), "the decoder must depend on the label"
    unconditional = build_model("wae", WAEConfig(latent_dim=4), DataSpec.of(digits))
    with pytest.raises(InputError, match="unconditional"):
        unconditional.sample(4, labels)


def test_config_is_checked():
    with pytest.raises(ConfigError, match="model.arch must be one of mlp, conv, mnist, calo, wae64"):
        WAEConfig(arch="resnet")
    with pytest.raises(ConfigError, match="model.output must be one of sigmoid, tanh"):
        WAEConfig(output="linear")
    with pytest.raises(ConfigError, match="kernel_scales"):
        WAEConfig(kernel_scales=())
    with pytest.raises(ConfigError, match="prior_std"):
        WAEConfig(prior_std=0.0)
    assert WAEConfig(kernel_scales=[1, 2]).kernel_scales == (1.0, 2.0)
    assert WAEConfig().lambda_mmd == 10.0 and WAEConfig().kernel_scales == IMQ_SCALES
