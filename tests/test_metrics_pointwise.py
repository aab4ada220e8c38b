"""MS-SSIM, Sinkhorn divergence and calorimeter channel metrics against known values."""

import numpy as np
import ot
import pytest
import torch
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    structural_similarity_index_measure,
)

from genrep.data.calorimeter import GRID, to_counts
from genrep.errors import InputError
from genrep.metrics.calorimeter import calorimeter_channels, channel_mae, channel_wasserstein
from genrep.metrics.msssim import MSSSIM, max_scales, ms_ssim, scale_weights
from genrep.metrics.sinkhorn import MAX_POINTS, SinkhornDivergence, sinkhorn_divergence


def _images(n, side, seed=0, channels=1):
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(n, channels, side + 4, side + 4, generator=g), 5, 1)
    return smooth.clamp(0, 1)


def _noisy(x, level, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (x + level * torch.randn(x.shape, generator=g)).clamp(0, 1)


# ---- MS-SSIM --------------------------------------------------------------------------------

def test_ms_ssim_identity_is_one():
    x = _images(4, 28)
    assert torch.allclose(ms_ssim(x, x), torch.ones(4), atol=1e-5)


def test_ms_ssim_decreases_with_noise():
    x = _images(8, 32, channels=3)
    values = [ms_ssim(x, _noisy(x, s)).mean().item() for s in (0.02, 0.1, 0.3)]
    assert values[0] > values[1] > values[2] > 0
    assert torch.allclose(ms_ssim(x, _noisy(x, 0.1)), ms_ssim(_noisy(x, 0.1), x))


def test_ms_ssim_matches_library_five_scales():
    x = _images(2, 192, channels=3)
    y = _noisy(x, 0.1)
    expected = multiscale_structural_similarity_index_measure(y, x, data_range=1.0, reduction="none")
    assert max_scales(192) == 5
    assert torch.allclose(ms_ssim(x, y), expected, atol=1e-6)


def test_one_scale_is_plain_ssim():
    x = _images(3, 16)
    y = _noisy(x, 0.1)
    expected = structural_similarity_index_measure(x, y, data_range=1.0, reduction="none")
    assert max_scales(16) == 1
    assert torch.allclose(ms_ssim(x, y), expected, atol=1e-6)


@pytest.mark.parametrize("side, scales", [(11, 1), (21, 1), (22, 2), (28, 2), (32, 2), (43, 2), (44, 3),
                                          (64, 3), (88, 3), (96, 3), (99, 4), (128, 4), (175, 4), (176, 5),
                                          (512, 5)])
def test_scale_counts(side, scales):
    assert max_scales(side) == scales
    assert max_scales((side, 600)) == scales


@pytest.mark.parametrize("side", [28, 32, 44, 64])
def test_small_images_use_renormalised_weights(side):
    s = max_scales(side)
    weights = scale_weights(s)
    assert len(weights) == s and abs(sum(weights) - 1) < 1e-12
    assert weights[0] / weights[1] == pytest.approx(0.0448 / 0.2856)
    x = _images(2, side)
    y = _noisy(x, 0.1)
    expected = multiscale_structural_similarity_index_measure(x, y, data_range=1.0, reduction="none", betas=weights)
    assert torch.allclose(ms_ssim(x, y), expected, atol=1e-6)
    assert not torch.allclose(ms_ssim(x, y, scales=1), expected, atol=1e-3)


def test_ms_ssim_errors():
    x = _images(2, 28)
    with pytest.raises(InputError, match="at least 11"):
        ms_ssim(_images(2, 10), _images(2, 10))
    with pytest.raises(InputError, match="same shape"):
        ms_ssim(x, _images(3, 28))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        ms_ssim(x * 2 - 1, x)
    with pytest.raises(InputError, match="scales must be in 1..2"):
        ms_ssim(x, x, scales=3)
    with pytest.raises(InputError, match="N×C×H×W"):
        ms_ssim(x[0], x[0])


def test_msssim_class_accumulates():
    x = _images(10, 28)
    y = _noisy(x, 0.1)
    metric = MSSSIM()
    for i in range(0, 10, 4):
        metric.update(real=x[i : i + 4], fake=y[i : i + 4])
    assert abs(metric.compute().item() - ms_ssim(x, y).mean().item()) < 1e-6
    with pytest.warns(UserWarning), pytest.raises(InputError, match="before any update"):
        MSSSIM().compute()


# ---- Sinkhorn -------------------------------------------------------------------------------

def test_sinkhorn_matches_exact_ot():
    """With blur 0.01 on clouds of diameter ~5, ε = 1e-4 ≪ the squared nearest-neighbour
    spacing, so the debiased S_ε is within O(ε) of the exact OT cost ½·W₂²; what remains is
    geomloss' ε-annealing (one iteration per ε, scaling 0.95): measured 0.06–0.14% low. Tolerance
    1% relative."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g, dtype=torch.float64)
    y = 0.7 * torch.randn(64, 2, generator=g, dtype=torch.float64) + torch.tensor([1.0, -0.5], dtype=torch.float64)
    cost = ot.dist(x.numpy(), y.numpy(), metric="sqeuclidean") / 2
    exact = ot.emd2(np.full(64, 1 / 64), np.full(64, 1 / 64), cost)
    s = sinkhorn_divergence(x, y, blur=0.01)
    assert s == pytest.approx(exact, rel=1e-2)
    assert s == pytest.approx(sinkhorn_divergence(x.numpy(), y.numpy(), blur=0.01))


def test_sinkhorn_self_zero_and_shift_positive():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(100, 8, generator=g)
    assert abs(sinkhorn_divergence(x, x)) < 1e-4
    shifted = [sinkhorn_divergence(x, x + d) for d in (0.5, 1.0)]
    # a pure translation by d: ½·‖d·1‖² = ½·8·d²
    assert shifted[0] == pytest.approx(0.5 * 8 * 0.25, rel=0.05)
    assert 0 < shifted[0] < shifted[1]


def test_sinkhorn_class_chunks_equal_function():
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(150, 6, generator=g), torch.randn(90, 6, generator=g) + 0.3
    metric = SinkhornDivergence()
    for i in range(0, 150, 40):
        metric.update(real=real[i : i + 40])
    metric.update(fake=fake[:50].numpy())
    metric.update(real=None, fake=fake[50:])
    assert metric.compute().item() == pytest.approx(sinkhorn_divergence(real, fake), rel=1e-6)


def test_sinkhorn_errors():
    x = torch.randn(10, 4)
    with pytest.raises(InputError, match="same dimension"):
        sinkhorn_divergence(x, torch.randn(10, 5))
    with pytest.raises(InputError, match="N×D"):
        sinkhorn_divergence(x[0], x)
    with pytest.raises(InputError, match="NaN"):
        sinkhorn_divergence(x, torch.full((10, 4), float("nan")))
    with pytest.raises(InputError, match="subsample"):
        sinkhorn_divergence(torch.zeros(MAX_POINTS + 1, 1), x[:, :1])
    metric = SinkhornDivergence()
    with pytest.raises(InputError, match="real=, fake="):
        metric.update()
    metric.update(real=x)
    with pytest.raises(InputError, match="dimension 5"):
        metric.update(fake=torch.randn(3, 5))
    with pytest.raises(InputError, match="needs at least one update"):
        metric.compute()


# ---- calorimeter ----------------------------------------------------------------------------

def _response(pixels):
    """A (44, 44) response with the given {(i, j): count}."""
    r = torch.zeros(GRID, GRID)
    for (i, j), v in pixels.items():
        r[i, j] = v
    return r


def test_channels_of_hand_made_response():
    # (i+j) even → quadrant towers ch1..ch4; (i+j) odd → ch5
    r = _response({(0, 0): 1, (21, 21): 2, (0, 22): 10, (20, 42): 20, (22, 0): 100, (43, 1): 200,
                   (22, 22): 1000, (43, 43): 2000, (0, 1): 3, (22, 23): 4, (43, 0): 5})
    expected = [3, 30, 300, 3000, 12]
    ch = calorimeter_channels(r[None])
    assert ch.tolist() == [expected]
    assert calorimeter_channels(r[None, None].numpy()).tolist() == [expected]
    assert isinstance(calorimeter_channels(r[None].numpy().astype(np.int64)), np.ndarray)
    # a uniform response: 242 even fibres per quadrant, 968 odd fibres
    assert calorimeter_channels(torch.ones(1, GRID, GRID)).tolist() == [[242, 242, 242, 242, 968]]


def test_channel_mae_on_constructed_pairs():
    real = torch.zeros(2, GRID, GRID)
    fake = torch.stack([_response({(0, 0): 1, (0, 22): 2, (22, 0): 3, (22, 22): 4, (0, 1): 5}),
                        torch.zeros(GRID, GRID)])
    # row 0: |Δ| = 1..5 (mean 3), row 1: 0 → mean over 10 entries = 1.5
    assert channel_mae(real, fake) == pytest.approx(1.5)
    assert channel_mae(fake.numpy(), real.numpy()) == pytest.approx(1.5)
    with pytest.raises(InputError, match="paired"):
        channel_mae(real, fake[:1])


def test_channel_wasserstein_hand_values():
    g = torch.Generator().manual_seed(0)
    real = torch.poisson(torch.full((50, GRID, GRID), 2.0), generator=g)
    c = 7.0
    shift = _response({(0, 0): c, (0, 22): c, (22, 0): c, (22, 22): c, (0, 1): c})
    fake = real + shift  # every channel of every row + c
    assert channel_wasserstein(real, fake, convention="per-channel-raw") == pytest.approx(c)
    assert channel_wasserstein(real, real) == 0
    # one row each: pooled W₁ of two 5-point samples = mean |sorted differences| in log(1+x)
    a = _response({(0, 0): 1, (0, 22): 2, (22, 0): 3, (22, 22): 4, (0, 1): 5})[None]
    b = _response({(0, 0): 9, (0, 22): 2, (22, 0): 0, (22, 22): 40, (0, 1): 5})[None]
    expected = np.mean(np.abs(np.sort(np.log1p([1, 2, 3, 4, 5])) - np.sort(np.log1p([9, 2, 0, 40, 5]))))
    assert channel_wasserstein(a, b) == pytest.approx(expected)
    assert channel_wasserstein(a, b, convention="pooled-log") == pytest.approx(expected)
    assert channel_wasserstein(a, b, convention="per-channel-raw") == pytest.approx((8 + 0 + 3 + 36 + 0) / 5)
    # unpaired sets of different sizes
    assert channel_wasserstein(real, fake[:20]) > 0


def test_calorimeter_rejects_bad_inputs():
    images = torch.rand(2, GRID, GRID) * 2 - 1  # e.g. generator output in [-1, 1]
    with pytest.raises(InputError, match="to_counts"):
        channel_mae(images, images)
    with pytest.raises(InputError, match="fake responses.*>= 0"):
        channel_wasserstein(images.abs(), images)
    assert channel_mae(to_counts(images, (-1, 1)), to_counts(images, (-1, 1))) == 0
    with pytest.raises(InputError, match="convention"):
        channel_wasserstein(images.abs(), images.abs(), convention="raw")
    with pytest.raises(InputError, match="NaN"):
        calorimeter_channels(torch.full((1, GRID, GRID), float("nan")))
    with pytest.raises(InputError, match=r"\(N, 44, 44\)"):
        calorimeter_channels(torch.zeros(1, 28, 28))


def test_sinkhorn_keeps_the_autograd_mode():
    """geomloss re-enables gradients at the end of its loop; our wrapper must not let that leak."""
    from genrep.metrics.sinkhorn import SinkhornLoss

    a, b = torch.randn(20, 3), torch.randn(20, 3)
    with torch.no_grad():
        value = SinkhornLoss(p=2, blur=0.05)(a, b)
        assert not torch.is_grad_enabled() and not value.requires_grad
        sinkhorn_divergence(a, b)
        assert not torch.is_grad_enabled()
    a.requires_grad_(True)
    assert SinkhornLoss(p=2, blur=0.05)(a, b).requires_grad
