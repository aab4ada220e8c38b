"""e2e Sinkhorn autoencoder: loss terms against hand computations, gradient flow, conditioning."""

import numpy as np
import pytest
import torch

from genrep.data import load_dataset
from genrep.data.spec import DataSpec
from genrep.errors import ConfigError, InputError
from genrep.models import build_model
from genrep.models.sae_losses import (
    binomial_blur,
    diversity_regulariser,
    laplacian_loss,
    laplacian_pyramid,
    max_pyramid_levels,
    sinkhorn_loss,
)
from genrep.models.sinkhorn_ae import SINKHORN_PRESETS, THESIS_SCALING, SinkhornAEConfig


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train")


def _model(digits, conditional=False, **overrides):
    spec = DataSpec.of(digits)
    cfg = SinkhornAEConfig(hidden=[64], noise_hidden=[32, 32], latent_dim=4, noise_dim=8, **overrides)
    return build_model("ce2e-sae" if conditional else "e2e-sae", cfg, spec, digits)


# ---- Laplacian pyramid (Eq. 4.1) ------------------------------------------------------------

def test_pyramid_of_constant_image_is_zero():
    x = torch.full((2, 3, 16, 16), 0.37)
    for band in laplacian_pyramid(x, 3):
        assert band.abs().max() < 1e-6
    assert [b.shape[-1] for b in laplacian_pyramid(x, 3)] == [16, 8, 4]


def _reflect(i, n):
    return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)


def test_pyramid_matches_hand_computation_on_small_image():
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(6, 6))
    w = np.array([1, 4, 6, 4, 1]) / 16.0
    blurred = np.zeros_like(img)
    for i in range(6):
        for j in range(6):
            blurred[i, j] = sum(w[a] * w[b] * img[_reflect(i + a - 2, 6), _reflect(j + b - 2, 6)]
                                for a in range(5) for b in range(5))
    pooled = blurred.reshape(3, 2, 3, 2).mean(axis=(1, 3))
    pooled_blur = np.zeros_like(pooled)
    for i in range(3):
        for j in range(3):
            pooled_blur[i, j] = sum(w[a] * w[b] * pooled[_reflect(i + a - 2, 3), _reflect(j + b - 2, 3)]
                                    for a in range(5) for b in range(5))
    bands = laplacian_pyramid(torch.tensor(img)[None, None], 2)
    np.testing.assert_allclose(bands[0][0, 0].numpy(), img - blurred, atol=1e-12)
    np.testing.assert_allclose(bands[1][0, 0].numpy(), pooled - pooled_blur, atol=1e-12)
    assert torch.allclose(binomial_blur(torch.tensor(img)[None, None])[0, 0], torch.tensor(blurred))


def test_laplacian_loss_is_mean_l1_of_bands_and_zero_for_equal_images():
    x, y = torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 12)
    expected = sum((a - b).abs().mean() for a, b in zip(laplacian_pyramid(x, 3), laplacian_pyramid(y, 3)))
    assert torch.isclose(laplacian_loss(x, y, 3), expected)
    assert laplacian_loss(x, x, 3) == 0
    # a constant offset lives only in the low-pass residual, which the loss leaves out
    assert laplacian_loss(x, x + 0.2, 3) < 1e-6


def test_pyramid_levels_limited_by_image_size():
    assert max_pyramid_levels(8) == 2 and max_pyramid_levels(28) == 4 and max_pyramid_levels(12) == 3
    with pytest.raises(InputError, match="12 px"):
        laplacian_pyramid(torch.rand(1, 1, 8, 8), 3)


# ---- Sinkhorn (Eq. 4.4) and R_s (Eq. 4.5–4.6) ------------------------------------------------

@pytest.mark.parametrize("diameter", [0.01, None])
def test_sinkhorn_of_identical_clouds_is_zero_and_of_shifted_clouds_positive(diameter):
    loss = sinkhorn_loss(0.05, 0.95, diameter)
    z = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    assert abs(float(loss(z, z))) < 1e-5
    assert float(loss(z, z + 1.0)) > 0.3


def test_converged_sinkhorn_approaches_half_squared_w2_of_a_shift():
    """For a pure translation by v, W₂² = ‖v‖²; the cost ½‖a−b‖² makes S → ½‖v‖² as blur → 0."""
    z = torch.randn(200, 2, generator=torch.Generator().manual_seed(1))
    v = torch.tensor([1.0, -0.5])
    value = float(sinkhorn_loss(0.01, 0.9, None)(z, z + v))
    assert value == pytest.approx(0.5 * float(v @ v), rel=0.05)


def test_presets_resolve_and_fields_override_them():
    assert SinkhornAEConfig().sinkhorn_preset == "thesis"
    assert SinkhornAEConfig().sinkhorn_settings() == (0.05, THESIS_SCALING, None)
    assert SINKHORN_PRESETS["reference"] == (0.05, 0.95, 0.01)
    reference = SinkhornAEConfig(sinkhorn_preset="reference")
    assert reference.sinkhorn_settings() == (0.05, 0.95, 0.01)
    assert SinkhornAEConfig(sinkhorn_preset="reference", sinkhorn_blur=0.1).sinkhorn_settings() == (0.1, 0.95, 0.01)
    assert SinkhornAEConfig(sinkhorn_scaling=0.5, sinkhorn_diameter=3.0).sinkhorn_settings() == (0.05, 0.5, 3.0)
    with pytest.raises(ConfigError, match="model.sinkhorn_preset must be one of thesis, reference, got 'exact'"):
        SinkhornAEConfig(sinkhorn_preset="exact")


def test_thesis_preset_is_the_converged_divergence_and_reference_is_not():
    """At blur 0.05 on clouds of spread ~2, S_ε is within a few % of the exact ½W₂² (POT's network
    simplex); the reference preset's two Sinkhorn iterations are not."""
    import ot

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(100, 8, generator=gen) * 2, torch.randn(100, 8, generator=gen) * 2.4 + 0.6
    weights = torch.full((100,), 0.01, dtype=torch.float64)
    exact = float(ot.emd2(weights, weights, 0.5 * torch.cdist(a.double(), b.double()) ** 2))
    thesis = float(sinkhorn_loss(*SinkhornAEConfig().sinkhorn_settings())(a, b))
    reference = float(sinkhorn_loss(*SinkhornAEConfig(sinkhorn_preset="reference").sinkhorn_settings())(a, b))
    assert thesis == pytest.approx(exact, rel=0.03)
    assert abs(reference - exact) / exact > 0.06


def test_the_model_uses_its_preset(digits):
    for preset in SINKHORN_PRESETS:
        loss = _model(digits, sinkhorn_preset=preset).sinkhorn.loss
        assert (loss.blur, loss.scaling, loss.diameter) == SINKHORN_PRESETS[preset]


def test_diversity_regulariser_masks_pairs_below_tau():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    sim01 = float(1.0 / np.sqrt(1.01))  # cos between rows 0 and 1; rows 0/2 orthogonal, 1/2 cos ≈ 0.0995
    sim12 = float(0.1 / np.sqrt(1.01))
    # τ = 0.5 keeps only the (0, 1) and (1, 0) pairs
    assert float(diversity_regulariser(z, tau=0.5, rho=1.0)) == pytest.approx(2 * sim01**2, rel=1e-6)
    # τ = 0.05 also keeps (1, 2), (2, 1); ρ scales
    assert float(diversity_regulariser(z, tau=0.05, rho=0.5)) == pytest.approx(sim01**2 + sim12**2, rel=1e-6)
    assert float(diversity_regulariser(z, tau=1.01, rho=1.0)) == 0.0  # nothing passes; diagonal never counts


# ---- the model -------------------------------------------------------------------------------

def test_sinkhorn_gradients_reach_encoder_and_noise_generator(digits):
    model = _model(digits, recon_weight=0.0)  # only the Sinkhorn term
    out = model({"x": digits.images[:32]})
    out.loss.backward()
    for part in (model.encoder, model.noise_generator):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in model.decoder.parameters())


def test_conditional_encoder_and_decoder_never_receive_y(digits):
    model = _model(digits, conditional=True)
    seen = []
    for part in (model.encoder, model.decoder):
        part.register_forward_hook(lambda mod, args, out: seen.append([a.shape for a in args]))
    batch = {"x": digits.images[:16], "y": digits.labels[:16]}
    model(batch)
    assert seen == [[torch.Size([16, 1, 8, 8])], [torch.Size([16, 4])]]  # images only, codes only
    z1 = model.encode(batch["x"])
    assert torch.equal(z1, model.encode(batch["x"]))
    assert model.noise_generator.cond_branch is not None and model.encoder.head[0].in_features == 64


def test_conditional_sinkhorn_concatenates_scaled_condition(digits, monkeypatch):
    model = _model(digits, conditional=True, condition_scale=3.0)
    captured = {}

    def fake(a, b):
        captured["a"], captured["b"] = a, b
        return (a - b).pow(2).mean()

    monkeypatch.setattr(model.sinkhorn, "forward", fake)
    y = digits.labels[:8]
    model({"x": digits.images[:8], "y": y})
    expected = 3.0 * torch.nn.functional.one_hot(y, 10).float()
    assert captured["a"].shape == (8, 14) and torch.equal(captured["a"][:, 4:], expected)
    assert torch.equal(captured["b"][:, 4:], expected)


def _train(model, batch, steps, params=None, lr=2e-3):
    opt = torch.optim.Adam(model.parameters() if params is None else params, lr)
    for _ in range(steps):
        out = model(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    with torch.no_grad():
        torch.manual_seed(123)
        return model(batch)


def test_training_lowers_loss_and_the_sinkhorn_term_matches_the_clouds(digits):
    batch = {"x": digits.images[:128]}
    torch.manual_seed(0)
    model = _model(digits)
    with torch.no_grad():
        first = model(batch)
    last = _train(model, batch, 80)
    assert float(last.loss) < 0.5 * float(first.loss)
    # the same training without the Sinkhorn term leaves the noise far from the codes
    torch.manual_seed(0)
    unmatched = _train(_model(digits, sinkhorn_weight=0.0), batch, 80)
    assert float(last.parts["sinkhorn"]) < 0.5 * float(unmatched.parts["sinkhorn"])


def test_sinkhorn_falls_while_the_noise_generator_learns_fixed_codes(digits):
    torch.manual_seed(0)
    model = _model(digits, recon_weight=0.0)
    batch = {"x": digits.images[:128]}
    with torch.no_grad():
        model.encoder.head[-1].weight.mul_(20.0)  # codes spread well away from the initial noise cloud
        torch.manual_seed(123)
        before = float(model(batch).parts["sinkhorn"])
    after = float(_train(model, batch, 60, params=model.noise_generator.parameters(), lr=1e-2).parts["sinkhorn"])
    assert after < 0.2 * before


@pytest.mark.parametrize("noise", ["normal", "uniform"])
def test_samples_shape_range_and_conditions(digits, noise):
    model = _model(digits, conditional=True, noise=noise).eval()
    x = model.sample(10)
    assert x.shape == (10, 1, 8, 8) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert model.sample(3, torch.tensor([1, 2, 3])).shape == (3, 1, 8, 8)
    eps = model.noise(1000)
    assert (eps.min() >= 0 and eps.max() < 1) if noise == "uniform" else abs(float(eps.mean())) < 0.15
    with pytest.raises(InputError, match="rows"):
        model.sample(3, torch.tensor([1, 2]))
    with pytest.raises(InputError, match="unconditional"):
        _model(digits).sample(2, torch.tensor([0, 1]))


def test_optional_terms_are_logged_and_change_the_loss(digits):
    torch.manual_seed(0)
    plain = _model(digits, arch="conv", channels=[8])
    torch.manual_seed(0)
    full = _model(digits, arch="conv", channels=[8], laplacian_weight=1.0, laplacian_levels=2,
                  diversity_weight=0.1, encoder_l2=0.01)
    batch = {"x": digits.images[:32]}
    torch.manual_seed(1)
    a = plain(batch)
    torch.manual_seed(1)
    b = full(batch)
    assert set(b.parts) == {"recon", "laplacian", "sinkhorn", "diversity", "encoder_l2"}
    assert float(b.loss.detach()) > float(a.loss.detach())


def test_config_errors(digits):
    with pytest.raises(ConfigError, match="noise"):
        SinkhornAEConfig(noise="laplace")
    with pytest.raises(ConfigError, match="blur"):
        SinkhornAEConfig(sinkhorn_blur=0.0)
    with pytest.raises(ConfigError, match="laplacian_levels must lie in 1..2"):
        _model(digits, laplacian_weight=1.0, laplacian_levels=3)
    with pytest.raises(InputError, match="labels 'y' or conditions 'c'"):
        _model(digits, conditional=True)({"x": digits.images[:4]})


def test_cli_trains_e2e_sae_on_digits(tmp_path, capsys):
    from genrep.cli.main import main

    code = main(["train", "e2e-sae", "--dataset", "digits", "--steps", "30", "--out", str(tmp_path / "r"),
                 "--no-progress", "--set", "model.hidden=[64]"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "r" / "model.safetensors").is_file() and (tmp_path / "r" / "samples" / "last.png").is_file()
