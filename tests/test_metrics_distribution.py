"""Distribution metrics on feature arrays (issue 3): FID against closed forms, scipy and
torchmetrics; KID; IS; PRD and improved P&R on hand-made distributions; the metric classes in
chunks and across 2 gloo processes; input errors."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from genrep.errors import InputError
from genrep.metrics import frechet as fid_module
from genrep.metrics import prd_curves
from genrep.metrics.frechet import FID, fid, fid_from_stats
from genrep.metrics.improved_pr import ImprovedPrecisionRecall, improved_precision_recall
from genrep.metrics.iscore import InceptionScore, inception_score
from genrep.metrics.kernel_distance import KID, kid
from genrep.metrics.prd_curves import PRD, prd, prd_curve


def mixture(n, modes, *, dim=4, seed=0, shift=0.0):
    """n points of an equal mixture of the first `modes` of 10 unit Gaussians whose centres lie ≥ 20
    apart on the coordinate axes of R^dim (+ `shift` on every coordinate)."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((10, dim))
    centres[np.arange(10), np.arange(10) % dim] = 20.0 * (1 + np.arange(10) // dim)
    return centres[rng.integers(0, modes, n)] + rng.normal(size=(n, dim)) + shift


def random_spd(dim, rng):
    a = rng.normal(size=(dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


# ---------------------------------------------------------------- FID
def test_fid_of_gaussians_matches_closed_form():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))  # commuting covariances Q diag(a) Qᵀ, Q diag(b) Qᵀ
    a, b = np.array([1.0, 2.0, 0.5, 3.0]), np.array([2.0, 0.5, 0.5, 1.0])
    mu1, mu2 = np.array([0.0, 1.0, -1.0, 2.0]), np.array([1.0, 0.0, 0.0, 2.5])
    sigma1, sigma2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    exact = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid_from_stats(mu1, sigma1, mu2, sigma2) == pytest.approx(exact, rel=1e-12)
    x1 = rng.multivariate_normal(mu1, sigma1, size=50_000)
    x2 = rng.multivariate_normal(mu2, sigma2, size=50_000)
    assert fid(x1, x2) == pytest.approx(exact, rel=0.02)


def test_fid_from_stats_matches_scipy_sqrtm():
    rng = np.random.default_rng(1)
    for dim in (3, 20, 64):
        mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
        s1, s2 = random_spd(dim, rng), random_spd(dim, rng)
        covmean = scipy.linalg.sqrtm(s1 @ s2).real
        reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
        assert fid_from_stats(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)
        as_torch = fid_from_stats(torch.from_numpy(mu1), torch.from_numpy(s1), mu2, s2)
        assert as_torch == pytest.approx(reference, rel=1e-8)


def test_fid_identity_and_order_invariance():
    x = mixture(3000, 10, dim=16, seed=2)
    assert abs(fid(x, x)) < 1e-6
    y = mixture(2000, 7, dim=16, seed=3)
    perm = np.random.default_rng(0).permutation
    assert fid(x[perm(len(x))], y[perm(len(y))]) == pytest.approx(fid(x, y), rel=1e-10)


def test_fid_singular_covariances_and_retry_path(monkeypatch):
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(10, 30)), rng.normal(size=(12, 30)) + 0.5  # rank-deficient covariances
    value = fid(real, fake)
    assert math.isfinite(value) and value > 0
    calls = []
    original = fid_module._trace_sqrt_product

    def failing_once(s1, s2):  # the eigen-solver fails on the first attempt: retried with 1e-6·I
        calls.append(s1.clone())
        return complex(np.nan) if len(calls) == 1 else original(s1, s2)

    monkeypatch.setattr(fid_module, "_trace_sqrt_product", failing_once)
    retried = fid(real, fake)
    assert len(calls) == 2 and torch.allclose(calls[1] - calls[0], 1e-6 * torch.eye(30, dtype=torch.float64))
    assert math.isfinite(retried) and retried == pytest.approx(value, rel=1e-3)  # the offset moves it by O(√1e-6)


def test_fid_rejects_non_covariance():
    with pytest.raises(InputError, match="not"):
        fid_from_stats(np.zeros(3), -np.eye(3), np.zeros(3), np.eye(3))
    with pytest.raises(InputError, match="positive semi-definite"):
        fid_from_stats(np.zeros(3), np.eye(3), np.zeros(3), -np.eye(3))
    with pytest.raises(InputError, match="shape"):
        fid_from_stats(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))


class Passthrough(nn.Module):
    """torchmetrics' custom `feature` module: pre-computed features in, the same features out."""

    def __init__(self, num_features):
        super().__init__()
        self.num_features = num_features

    def forward(self, x):
        return x


def test_fid_matches_torchmetrics_on_custom_features():
    from torchmetrics.image.fid import FrechetInceptionDistance

    real = torch.from_numpy(mixture(4000, 10, dim=84, seed=5))
    fake = torch.from_numpy(mixture(3000, 6, dim=84, seed=6, shift=0.3))
    reference = FrechetInceptionDistance(feature=Passthrough(84))
    for part in real.split(1000):
        reference.update(part, real=True)
    reference.update(fake, real=False)
    expected = float(reference.compute())
    assert fid(real, fake) == pytest.approx(expected, rel=1e-4)
    metric = FID(84)
    metric.update(real=real, fake=fake)
    assert metric.compute() == pytest.approx(expected, rel=1e-4)


# ---------------------------------------------------------------- KID and IS
def test_kid_same_and_shifted_distributions():
    rng = np.random.default_rng(7)
    real, other = rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8))
    same = kid(real, other, subsets=20, subset_size=500)
    shifted = kid(real, other + 0.5, subsets=20, subset_size=500)
    assert abs(same[0]) < 3 * same[1] / math.sqrt(20) + 1e-3
    assert shifted[0] > 10 * (abs(same[0]) + same[1])


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_matches_torchmetrics_on_full_sets():
    from torchmetrics.image.kid import KernelInceptionDistance

    real = torch.from_numpy(mixture(300, 10, dim=8, seed=9))
    fake = torch.from_numpy(mixture(300, 5, dim=8, seed=10))
    reference = KernelInceptionDistance(feature=Passthrough(8), subsets=1, subset_size=300)
    reference.update(real, real=True)
    reference.update(fake, real=False)
    expected = float(reference.compute()[0])
    assert kid(real, fake, subsets=1, subset_size=300)[0] == pytest.approx(expected, rel=1e-9)


def test_inception_score_bounds():
    k = 10
    assert inception_score(np.zeros((100, k))) == pytest.approx((1.0, 0.0))
    confident_logits = 50.0 * np.eye(k)[np.arange(200) % k]
    assert inception_score(confident_logits)[0] == pytest.approx(k, rel=1e-9)
    one_hot = np.eye(k)[np.arange(200) % k]  # probabilities are taken as they are (0·log 0 = 0)
    assert inception_score(one_hot) == pytest.approx((k, 0.0))
    logits = np.random.default_rng(11).normal(size=(500, k)) * 3
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    assert inception_score(probs, splits=5) == pytest.approx(inception_score(logits, splits=5), rel=1e-9)


# ---------------------------------------------------------------- PRD and improved P&R
@pytest.mark.parametrize("metric", ["prd", "prd-lloyd", "improved"])
def test_precision_recall_on_constructed_distributions(metric):
    def score(real, fake):
        if metric.startswith("prd"):
            return prd(real=real, fake=fake, num_runs=3, clustering="lloyd" if metric == "prd-lloyd" else "minibatch")
        return improved_precision_recall(real=real, fake=fake)

    real, same = mixture(2000, 10, dim=2, seed=12), mixture(2000, 10, dim=2, seed=13)
    assert min(score(real, same)) > 0.95
    assert max(score(real, same + 200.0)) < 0.05
    half = mixture(2000, 5, dim=2, seed=14)  # fake covers 5 of real's 10 modes
    precision, recall = score(real, half)
    assert precision > 0.9 and recall == pytest.approx(0.5, abs=0.06)
    precision, recall = score(half, real)  # the mirror: half of the fake lies off the real modes
    assert precision == pytest.approx(0.5, abs=0.06) and recall > 0.9


def test_prd_defaults_curve_and_balance():
    real, fake = mixture(3000, 10, seed=15), mixture(1000, 5, seed=16)
    precision, recall = prd(real=real, fake=fake)
    assert precision > 0.95 and recall == pytest.approx(0.5, abs=0.05)
    alpha, beta = prd_curve(real=real, fake=fake)
    assert alpha.shape == beta.shape == (1001,) and alpha.min() >= 0 and beta.max() <= 1
    assert np.all(np.diff(alpha) >= -1e-12) and np.all(np.diff(beta) <= 1e-12)  # α rises, β falls with λ
    assert prd(real=real, fake=fake) == (precision, recall)  # deterministic given the seed
    with pytest.raises(InputError, match="at least as many real"):
        prd(real=fake, fake=real)
    assert min(prd(real=fake, fake=real, enforce_balance=False, num_runs=2)) > 0.4
    with pytest.raises(TypeError):
        prd(real, fake)  # keyword-only: real= and fake= cannot be swapped by position


def record_fits(monkeypatch, name):
    """Replace scikit-learn's `name` ("MiniBatchKMeans" or "KMeans") inside genrep's PRD by a factory
    that builds the real estimator and records, for every fit: the constructor arguments, the data,
    the labels and the inertia. Returns the list of records."""
    import sklearn.cluster

    records = []

    def factory(**kwargs):
        model = getattr(sklearn.cluster, name)(**kwargs)
        fit = model.fit

        def recording_fit(x):
            fitted = fit(x)
            records.append({"kwargs": kwargs, "data": np.array(x), "labels": fitted.labels_.copy(),
                            "inertia": fitted.inertia_})
            return fitted

        model.fit = recording_fit
        return model

    monkeypatch.setattr(prd_curves, name, factory)
    return records


def brute_prd(label_runs, n_real, *, k=20, num_angles=1001, beta=8):
    """PRD (precision, recall) from given clusterings of [real; fake], written out loop by loop as
    compare_gan's prd_score.py computes it: np.histogram densities (eval = fake, ref = real), one
    curve per run over the angle grid, averaged, then max F_{1/β} and max F_β."""
    runs = []
    for labels in label_runs:
        ref = np.histogram(labels[:n_real], bins=k, range=(0, k), density=True)[0]
        ev = np.histogram(labels[n_real:], bins=k, range=(0, k), density=True)[0]
        curve = []
        for theta in np.linspace(1e-10, math.pi / 2 - 1e-10, num_angles):
            slope = math.tan(theta)
            alpha = sum(min(slope * ref[w], ev[w]) for w in range(k))
            curve.append((alpha, alpha / slope))
        runs.append(curve)
    mean = np.mean(runs, axis=0)  # num_angles × 2

    def max_f(b):
        return max((1 + b * b) * a * r / (b * b * a + r + 1e-10) for a, r in mean)

    return max_f(1 / beta), max_f(beta)


def test_prd_default_is_minibatch_kmeans_on_the_union_as_the_protocol(monkeypatch):
    """MiniBatchKMeans(n_clusters=20, n_init=10) fitted 10 times on [real subsample; fake], each with
    its own seeded random_state; no full-batch KMeans; the numbers follow from its labels exactly."""
    minibatch = record_fits(monkeypatch, "MiniBatchKMeans")
    lloyd = record_fits(monkeypatch, "KMeans")
    real, fake = mixture(1500, 10, seed=30), mixture(1000, 5, seed=31, shift=0.5)
    precision, recall = prd(real=real, fake=fake)
    assert not lloyd and len(minibatch) == 10
    for record in minibatch:
        assert {k: record["kwargs"][k] for k in ("n_clusters", "n_init")} == {"n_clusters": 20, "n_init": 10}
        data = record["data"]
        assert data.shape == (2000, 4)  # the union: real subsampled without replacement to the fake count
        assert data.dtype == np.float64  # as compare_gan
        np.testing.assert_array_equal(data[1000:], fake)
        real_rows = {tuple(row) for row in real}
        assert all(tuple(row) in real_rows for row in data[:1000]) and len({tuple(r) for r in data[:1000]}) == 1000
    states = [record["kwargs"]["random_state"] for record in minibatch]
    assert len(set(states)) == 10 and all(isinstance(s, int) for s in states)
    assert (precision, recall) == pytest.approx(brute_prd([r["labels"] for r in minibatch], 1000), abs=1e-9)
    assert precision > 0.9 and recall == pytest.approx(0.5, abs=0.06)  # fake covers half the modes
    minibatch.clear()
    assert prd(real=real, fake=fake) == (precision, recall)  # the same seed: the same random_states
    assert [r["kwargs"]["random_state"] for r in minibatch] == states
    minibatch.clear()
    prd(real=real, fake=fake, seed=1, num_runs=2)
    assert [r["kwargs"]["random_state"] for r in minibatch] != states[:2]
    minibatch.clear()
    prd_curve(real=real, fake=fake, num_runs=1)  # every entry point defaults to the protocol's clustering
    metric = PRD(num_runs=1)
    metric.update(real=real, fake=fake)
    metric.compute()
    assert len(minibatch) == 2 and not lloyd


def test_prd_lloyd_option_keeps_best_inertia_full_kmeans(monkeypatch):
    minibatch = record_fits(monkeypatch, "MiniBatchKMeans")
    lloyd = record_fits(monkeypatch, "KMeans")
    real, fake = mixture(800, 10, seed=32), mixture(600, 5, seed=33, shift=0.5)
    precision, recall = prd(real=real, fake=fake, num_runs=3, clustering="lloyd")
    assert not minibatch and len(lloyd) == 3 * 10  # n_init = 10 k-means++ seedings per run, Lloyd from each
    assert all(r["kwargs"]["n_init"] == 1 and r["kwargs"]["init"].shape == (20, 4) for r in lloyd)
    best = [min(lloyd[i:i + 10], key=lambda r: r["inertia"])["labels"] for i in range(0, 30, 10)]
    assert (precision, recall) == pytest.approx(brute_prd(best, 600), abs=1e-9)
    assert PRD(num_runs=3, clustering="lloyd").options["clustering"] == "lloyd"


def test_prd_bad_clustering_is_a_one_line_error():
    real = mixture(100, 10, seed=34)
    for call in (lambda: prd(real=real, fake=real, clustering="kmeans"),
                 lambda: prd_curve(real=real, fake=real, clustering="Lloyd"),
                 lambda: PRD(clustering="mini-batch")):
        with pytest.raises(InputError, match="prd clustering must be one of 'minibatch', 'lloyd'") as info:
            call()
        assert "\n" not in str(info.value)


# ---------------------------------------------------------------- metric classes
def class_cases():
    return [
        (lambda: FID(4), lambda r, f: fid(r, f)),
        (lambda: KID(subsets=5, subset_size=200), lambda r, f: kid(r, f, subsets=5, subset_size=200)),
        (lambda: PRD(num_runs=2), lambda r, f: prd(real=r, fake=f, num_runs=2)),
        (lambda: PRD(num_runs=2, clustering="lloyd"), lambda r, f: prd(real=r, fake=f, num_runs=2, clustering="lloyd")),
        (lambda: ImprovedPrecisionRecall(), lambda r, f: improved_precision_recall(real=r, fake=f)),
    ]


def test_classes_in_chunks_equal_functions():
    real, fake = mixture(900, 10, seed=17), mixture(900, 6, seed=18, shift=0.5)
    for make, function in class_cases():
        metric = make()
        for r, f in zip(np.array_split(real, 3), np.array_split(fake, 3)):
            metric.update(real=torch.from_numpy(r), fake=f)
        assert metric.compute() == pytest.approx(function(real, fake), rel=1e-9, abs=1e-12)
    logits = np.random.default_rng(19).normal(size=(300, 10)) * 2
    metric = InceptionScore(splits=5)
    for chunk in np.array_split(logits, 3):
        metric.update(fake=chunk)
    assert metric.compute() == pytest.approx(inception_score(logits, splits=5), rel=1e-12)


class GradCheckingExtractor(nn.Module):
    """Flattens 1×2×2 images to 4 features; fails if called with gradients enabled."""

    def forward(self, images):
        assert not torch.is_grad_enabled()
        return images.flatten(1) * 2.0


def test_classes_with_feature_extractor():
    real, fake = mixture(400, 10, seed=20), mixture(400, 10, seed=21, shift=1.0)
    metric = FID(4, feature_extractor=GradCheckingExtractor())
    metric.update(real=torch.from_numpy(real).view(-1, 1, 2, 2), fake=torch.from_numpy(fake).view(-1, 1, 2, 2))
    assert metric.compute() == pytest.approx(fid(2 * real, 2 * fake), rel=1e-9)
    bad = KID(feature_extractor=nn.Flatten(0))  # returns 1-D: not N×D
    with pytest.raises(InputError, match="feature_extractor"):
        bad.update(real=torch.zeros(3, 4))


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_class_input_errors():
    for metric in (FID(4), KID(), PRD(), ImprovedPrecisionRecall()):
        with pytest.raises(InputError, match="no real samples"):
            metric.compute()
        with pytest.raises(InputError, match=r"N×D"):
            metric.update(real=np.zeros(4))
        with pytest.raises(InputError, match="NaN"):
            metric.update(real=np.full((3, 4), np.nan))
        with pytest.raises(InputError, match="real= and/or fake="):
            metric.update()
        metric.update(real=np.zeros((3, 4)))
        with pytest.raises(InputError, match="no fake samples"):
            metric.compute()
        with pytest.raises(InputError, match="dimension 5"):
            metric.update(fake=np.zeros((3, 5)))
        with pytest.raises(InputError, match="same dimension"):
            metric.update(real=np.zeros((3, 4)), fake=np.zeros((3, 5)))
    score = InceptionScore()
    with pytest.raises(InputError, match="no fake samples"):
        score.compute()
    with pytest.raises(InputError, match="takes only fake="):
        score.update(real=np.zeros((3, 4)))
    with pytest.raises(InputError, match="positive int"):
        FID(0)
    with pytest.raises(InputError, match="same dimension"):
        fid(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(InputError, match="N×D"):
        improved_precision_recall(real=np.zeros(10), fake=np.zeros((10, 2)))


def _ddp_worker(rank, init_file, data, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        results = {}
        for i, (make, _) in enumerate(class_cases()):
            metric = make()
            metric.update(real=data["real"][rank], fake=data["fake"][rank])
            results[i] = metric.compute()
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                    reason="torch.distributed gloo is unavailable")
def test_classes_merge_states_across_two_processes(tmp_path):
    real, fake = mixture(900, 10, seed=22), mixture(700, 6, seed=23, shift=0.5)
    halves = {"real": np.array_split(real, 2), "fake": np.array_split(fake, 2)}
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), halves, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        results = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        for i, (_, function) in enumerate(class_cases()):
            assert results[i] == pytest.approx(function(real, fake), rel=1e-9, abs=1e-12), (rank, i)


def brute_force_improved_pr(real: torch.Tensor, fake: torch.Tensor, k: int) -> tuple[float, float]:
    """Kynkäänniemi et al. straight from the definition, with full torch.cdist matrices."""
    radius_real = torch.cdist(real, real).sort(1).values[:, k]  # column 0 is the point itself
    radius_fake = torch.cdist(fake, fake).sort(1).values[:, k]
    d = torch.cdist(fake, real)  # M × N
    precision = (d <= radius_real[None]).any(1).double().mean()
    recall = (d.T <= radius_fake[None]).any(1).double().mean()
    return float(precision), float(recall)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_improved_pr_matches_brute_force_in_84_dimensions(k):
    gen = torch.Generator().manual_seed(k)
    real = torch.randn(400, 84, generator=gen, dtype=torch.float64)
    fake = 1.2 * torch.randn(300, 84, generator=gen, dtype=torch.float64) + 0.3
    expected = brute_force_improved_pr(real, fake, k)
    assert 0.0 < expected[0] < 1.0 and 0.0 < expected[1] < 1.0 and expected[0] != expected[1]
    got = improved_precision_recall(real=real, fake=fake, k=k, batch_size=128, dtype=torch.float64)
    assert got == pytest.approx(expected, abs=1e-12)


def test_improved_pr_of_identical_high_dimensional_sets_stays_well_below_one():
    """k = 3 balls in 84-d cover much less than the distribution: two samples of the same isotropic
    Gaussian score about 0.5–0.6, not 1 (documented in the module docstring)."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 84, generator=gen), torch.randn(2000, 84, generator=gen)
    precision, recall = improved_precision_recall(real=a, fake=b, k=3)
    assert 0.4 < precision < 0.75 and 0.4 < recall < 0.75
