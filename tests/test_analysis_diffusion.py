"""Diffusion analyses of thesis ch. 5.5: log-SNR (Eq. 5.2, Fig. 5.5.1) and reconstruction error per
step (Fig. 5.5.2 / 5.7.1), their CSV/PNG files and the `genrep analyze snr|reconstruction` commands."""

import csv
import math
import re
import types

import numpy as np
import pytest
import torch
from PIL import Image

from genrep.analysis import reconstruction as rec
from genrep.analysis.snr import (crossing_fraction, crossing_line, largest_change_fraction, snr_curve,
                                 write_snr_csv)
from genrep.cli.main import main
from genrep.data import load_dataset
from genrep.diffusion import GaussianDiffusion, get_betas
from genrep.errors import ConfigError, InputError

LINE = re.compile(r"^(?:(linear|cosine): )?log-SNR < 0 after (\d+\.\d)% of steps$")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "test", value_range=(-1.0, 1.0)).images


@pytest.fixture(scope="module")
def digits16():
    """Digits resized to 16×16 so that MS-SSIM (≥ 11 px) fits; 64 images."""
    return load_dataset("digits", "test", value_range=(-1.0, 1.0), image_size=16, limit=64).images


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("genrep: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ------------------------------------------------------------------------------------------- SNR
def test_snr_curve_matches_eq_5_2_by_hand():
    x0 = torch.tensor([[[[1.0, -1.0], [0.5, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])  # powers 0.5625, 1
    betas = np.array([0.1, 0.2, 0.3])
    c = snr_curve(x0, betas)
    ab = np.cumprod(1 - betas)
    power = np.array([0.5625, 1.0])
    expect = np.log(ab / (1 - ab))[:, None] + np.log(power)[None, :]
    np.testing.assert_allclose(c["alpha_bar"], ab)
    np.testing.assert_allclose(c["log_snr"], expect.mean(1))
    np.testing.assert_allclose(c["log_snr_std"], np.full(3, np.log(power).std(ddof=1)))
    np.testing.assert_allclose(c["fraction_of_steps"], [1 / 3, 2 / 3, 1.0])
    assert math.isnan(c["dlog_snr"][0])
    np.testing.assert_allclose(c["dlog_snr"][1:], np.diff(expect.mean(1)))
    # the other reading: log of the mean SNR
    np.testing.assert_allclose(snr_curve(x0, betas, average="snr")["log_snr"],
                               np.log(ab / (1 - ab)) + np.log(power.mean()))


def test_snr_curve_refuses_bad_inputs():
    with pytest.raises(InputError, match=r"\[-1, 1\]"):
        snr_curve(torch.full((2, 1, 4, 4), 2.0), get_betas("linear", 100))
    with pytest.raises(ConfigError, match="average"):
        snr_curve(torch.zeros(2, 1, 4, 4) + 0.5, get_betas("linear", 100), average="median")


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_log_snr_decreases_strictly(digits, schedule):
    c = snr_curve(digits, get_betas(schedule, 1000))
    assert np.all(np.diff(c["log_snr"]) < 0)


@pytest.mark.parametrize("steps", [1000, 500])
def test_crossing_points_on_digits_match_the_thesis(digits, steps):
    """Thesis 5.5: log-SNR < 0 after about 20% of the steps (linear) and 25–50% (cosine). Digits give
    23.0% / 44.6% at T = 1000 (MNIST 25.2 / 48.4, Fashion-MNIST 22.2 / 43.1)."""
    linear = crossing_fraction(snr_curve(digits, get_betas("linear", steps)))
    cosine = crossing_fraction(snr_curve(digits, get_betas("cosine", steps)))
    assert 0.18 <= linear <= 0.27
    assert 0.25 <= cosine <= 0.50
    assert linear < cosine


def test_largest_log_snr_changes_are_in_the_first_tenth(digits):
    """Thesis 5.5: "the biggest changes in the log-SNR are noticeable within the first 10% of steps".
    True for the linear schedule over all steps. The cosine schedule's last 3 steps (ᾱ → 0, β clipped at
    0.999: Δ = log 0.001 ≈ −6.9) drop more than any early step; excluding the last 1% it holds too."""
    lin = snr_curve(digits, get_betas("linear", 1000))
    cos = snr_curve(digits, get_betas("cosine", 1000))
    assert largest_change_fraction(lin) <= 0.1
    assert largest_change_fraction(cos) > 0.99  # the clipped tail, reported honestly
    assert largest_change_fraction(cos, skip_last=0.01) <= 0.1
    for c in (lin, cos):
        d = np.abs(c["dlog_snr"])
        assert np.nanmean(d[1:100]) > 4 * np.mean(d[100:990])  # ≈ 5× for both schedules


def test_derivative_does_not_depend_on_the_data(digits):
    betas = get_betas("linear", 200)
    a = snr_curve(digits, betas)["dlog_snr"]
    b = snr_curve(digits * 0.5, betas)["dlog_snr"]
    np.testing.assert_allclose(a[1:], b[1:], rtol=1e-12)


def test_crossing_line_format():
    assert crossing_line(0.2126) == "log-SNR < 0 after 21.3% of steps"
    assert crossing_line(0.446, "cosine") == "cosine: log-SNR < 0 after 44.6% of steps"


def test_snr_csv_columns(tmp_path, digits):
    curves = {s: snr_curve(digits, get_betas(s, 100)) for s in ("linear", "cosine")}
    rows = read_csv(write_snr_csv({"linear": curves["linear"]}, tmp_path / "one.csv"))
    assert list(rows[0]) == ["t", "fraction_of_steps", "alpha_bar", "log_snr", "log_snr_std", "dlog_snr"]
    assert len(rows) == 100 and rows[0]["t"] == "0" and rows[-1]["fraction_of_steps"] == "1"
    rows = read_csv(write_snr_csv(curves, tmp_path / "both.csv"))
    assert {"log_snr_linear", "log_snr_cosine", "dlog_snr_linear", "dlog_snr_cosine",
            "alpha_bar_linear", "alpha_bar_cosine"} <= set(rows[0])


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_cli_snr(capsys, tmp_path, schedule):
    out = tmp_path / schedule
    code, text, _ = run_cli(capsys, "analyze", "snr", "--dataset", "digits", "--schedule", schedule,
                            "--steps", "1000", "--out", str(out))
    assert code == 0
    lines = [line for line in text.splitlines() if "log-SNR" in line]
    assert len(lines) == 1
    match = LINE.match(lines[0])
    assert match and match.group(1) is None
    rows = read_csv(out / "snr.csv")
    assert list(rows[0]) == ["t", "fraction_of_steps", "alpha_bar", "log_snr", "log_snr_std", "dlog_snr"]
    log_snr = np.array([float(r["log_snr"]) for r in rows])
    assert len(rows) == 1000 and np.all(np.diff(log_snr) < 0)
    first_negative = float(rows[int(np.flatnonzero(log_snr < 0)[0])]["fraction_of_steps"])
    assert match.group(2) == f"{100 * first_negative:.1f}"
    assert Image.open(out / "snr.png").size[0] >= 800


def test_cli_snr_both_prints_one_line_per_schedule(capsys, tmp_path):
    code, text, _ = run_cli(capsys, "analyze", "snr", "--dataset", "digits", "--schedule", "both",
                            "--steps", "500", "--out", str(tmp_path), "--n", "100")
    assert code == 0
    matches = [LINE.match(line) for line in text.splitlines() if "log-SNR" in line]
    assert [m.group(1) for m in matches] == ["linear", "cosine"]
    assert "log_snr_cosine" in read_csv(tmp_path / "snr.csv")[0]


@pytest.mark.parametrize("argv, fragment", [
    (["--schedule", "quadratic"], "unknown noise schedule"),
    (["--steps", "1"], "≥ 2"),
    (["--steps", "0"], "≥ 2"),
    (["--dataset", "no_such_data"], "unknown dataset"),
])
def test_cli_snr_errors_are_one_line(capsys, tmp_path, argv, fragment):
    base = {"--dataset": "digits", "--schedule": "linear", "--steps": "100", "--out": str(tmp_path)}
    base.update(dict(zip(argv[::2], argv[1::2])))
    code, _, err = run_cli(capsys, "analyze", "snr", *[item for pair in base.items() for item in pair])
    assert_one_line_error(code, err, fragment)


# --------------------------------------------------------------------------------- reconstruction
def test_noise_decomposition_gets_worse_with_t(digits16):
    diffusion = GaussianDiffusion(get_betas("linear", 1000))
    c = rec.reconstruction_curve(digits16, diffusion, [0, 19, 49, 99, 149, 199])
    assert np.all(np.diff(c["mae"]) > 0)
    assert np.all(np.diff(c["ms_ssim"]) < 0)
    assert c["mae"][0] < 0.02 and c["ms_ssim"][0] > 0.97
    assert np.all(c["mae_ci95"] >= 0) and np.all(np.isfinite(c["ms_ssim_ci95"]))
    np.testing.assert_allclose(c["fraction_of_steps"], [0.001, 0.02, 0.05, 0.1, 0.15, 0.2])


def test_oracle_and_gaussian_denoisers(digits16):
    """The exact ε of a known image reconstructs it from any step (ancestral and one-shot); the exact
    Gaussian denoiser does better than no denoiser, and a DDGM-like stub goes through `ddgm_parts`."""
    diffusion = GaussianDiffusion(get_betas("linear", 100))
    x0 = digits16[:8]
    oracle = rec.oracle_eps_model(x0, diffusion)
    for reverse in ("ancestral", "x0"):
        x_hat = rec.reconstruct(x0, diffusion, 60, eps_model=oracle, reverse=reverse,
                                generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(x_hat, x0, atol=1e-4, rtol=0)

    train = load_dataset("digits", "train", value_range=(-1.0, 1.0), image_size=16).images
    stub = types.SimpleNamespace(diffusion=diffusion, unet=rec.GaussianDenoiser(train).eps_model(diffusion))
    got_diffusion, net, last_step = rec.ddgm_parts(stub)
    assert got_diffusion is diffusion and last_step is None
    ts = [4, 19]
    gauss = rec.reconstruction_curve(digits16, diffusion, ts, eps_model=net, reverse="x0")
    noise = rec.reconstruction_curve(digits16, diffusion, ts)
    assert np.all(gauss["mae"] < noise["mae"]) and np.all(gauss["ms_ssim"] > noise["ms_ssim"])
    ancestral = rec.reconstruction_curve(digits16[:16], diffusion, ts, eps_model=net)
    assert np.all(np.isfinite(ancestral["mae"])) and ancestral["mae"][1] > ancestral["mae"][0]

    with pytest.raises(ConfigError, match="not a diffusion model"):
        rec.ddgm_parts(types.SimpleNamespace(encoder=None))


def test_daed_like_models_end_with_their_last_step(digits16):
    """A model with `dae_step` (DAED): the chain stops at x_1 and the DAE maps x_1 to x0."""
    diffusion = GaussianDiffusion(get_betas("linear", 50))
    x0 = digits16[:4]
    oracle = rec.oracle_eps_model(x0, diffusion)
    seen = []

    def dae_step(x1):
        seen.append(x1)
        t0 = torch.zeros(len(x1), dtype=torch.long)
        return diffusion.predict_x0_from_eps(x1, t0, oracle(x1, t0))

    stub = types.SimpleNamespace(diffusion=diffusion, unet=oracle, dae_step=dae_step)
    d, net, last = rec.ddgm_parts(stub)
    assert last is dae_step
    for t in (0, 30):
        x_hat = rec.reconstruct(x0, d, t, eps_model=net, last_step=last, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(x_hat, x0, atol=1e-4, rtol=0)
    assert len(seen) == 2
    # the chain from t = 30 stopped at a noisy x_1 (its last step adds noise of std √β_1 ≈ 0.1), not at x0
    ab0 = float(diffusion.alphas_cumprod[0])
    assert 0.02 < float((seen[1] - math.sqrt(ab0) * x0).std()) < 0.2


def test_conditional_models_get_the_labels(digits16):
    diffusion = GaussianDiffusion(get_betas("linear", 50))
    calls = []

    def eps_model(x_t, t, y=None):
        calls.append(y)
        return torch.zeros_like(x_t)

    labels = torch.arange(len(digits16)) % 10
    rec.reconstruction_curve(digits16, diffusion, [3], eps_model=eps_model, labels=labels, batch_size=40)
    assert len(calls) == 2 * 4 and torch.equal(calls[0], labels[:40]) and torch.equal(calls[4], labels[40:])
    with pytest.raises(InputError, match="labels"):
        rec.reconstruction_curve(digits16, diffusion, [3], eps_model=eps_model, labels=labels[:5])


def test_gaussian_denoiser_is_the_posterior_mean_of_a_gaussian():
    """For data that *are* Gaussian, E[x0|x_t] beats every other linear gain, e.g. 0.9× or 1.1× its own."""
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(16, 16, generator=gen, dtype=torch.float64) * 0.03
    x = (torch.randn(4000, 16, generator=gen, dtype=torch.float64) @ mix).reshape(-1, 1, 4, 4)
    den = rec.GaussianDenoiser(x[:3000])
    x0 = x[3000:]
    ab = torch.full((len(x0),), 0.5, dtype=torch.float64)
    x_t = ab.sqrt().reshape(-1, 1, 1, 1) * x0 + (1 - ab).sqrt().reshape(-1, 1, 1, 1) * torch.randn(
        x0.shape, generator=gen, dtype=torch.float64)
    best = den.x0_given_xt(x_t, ab)
    mse = lambda y: float((y - x0).pow(2).mean())  # noqa: E731
    mean = den.mean.reshape(1, 1, 4, 4)
    for scale in (0.9, 1.1):
        assert mse(best) < mse(mean + scale * (best - mean))


def test_reconstruction_without_msssim_for_tiny_images(digits):
    c = rec.reconstruction_curve(digits[:20], GaussianDiffusion(get_betas("linear", 100)), [0, 10])
    assert np.isnan(c["ms_ssim"]).all() and np.all(np.diff(c["mae"]) > 0)


def test_default_t_values():
    assert rec.default_t_values(1000) == [0, 19, 39, 59, 79, 99, 119, 139, 159, 179, 199]
    assert rec.default_t_values(10, max_fraction=1.0, points=3) == [0, 4, 9]
    with pytest.raises(ConfigError):
        rec.check_t_values([5, 100], 100)


@pytest.mark.needs_source("fashion_mnist")
def test_cli_reconstruction_cross_dataset(capsys, tmp_path):
    out = tmp_path / "rec"
    code, text, _ = run_cli(capsys, "analyze", "reconstruction", "--dataset", "digits", "--eval-dataset",
                            "fashion_mnist", "--schedule", "linear", "--steps", "200", "--out", str(out),
                            "--t-values", "0", "9", "19", "39", "--n", "40", "--image-size", "16",
                            "--method", "gaussian", "--n-fit", "500", "--reverse", "x0")
    assert code == 0, text
    rows = read_csv(out / "reconstruction.csv")
    assert list(rows[0]) == list(rec.CSV_COLUMNS)
    assert [r["dataset"] for r in rows] == ["digits"] * 4 + ["fashion_mnist"] * 4
    for name in ("digits", "fashion_mnist"):
        mae = [float(r["mae"]) for r in rows if r["dataset"] == name]
        assert mae == sorted(mae)
    assert sum(line.startswith(("digits:", "fashion_mnist:")) for line in text.splitlines()) == 2
    assert Image.open(out / "reconstruction.png").size[0] >= 800


def test_cli_reconstruction_with_a_stub_run(capsys, tmp_path, monkeypatch, digits16):
    """--run goes through `load_run_and_data` and `ddgm_parts`; here a stub DDGM with the oracle-free
    Gaussian ε-model stands in for a trained run."""
    import genrep.experiments.latent_pictures as lp

    diffusion = GaussianDiffusion(get_betas("cosine", 50))
    model = types.SimpleNamespace(diffusion=diffusion, unet=rec.GaussianDenoiser(digits16).eps_model(diffusion))
    seen = []

    class Data(types.SimpleNamespace):  # a run's data in [0, 1], as DDGM runs keep it
        def subset(self, index):
            return Data(name=self.name, images=self.images[index], image_shape=self.image_shape,
                        value_range=self.value_range)

        def __len__(self):
            return len(self.images)

    def load(run, dataset=None, split="test"):
        seen.append(dataset)
        return model, Data(name=dataset or "digits", images=(digits16 + 1) / 2, image_shape=(1, 16, 16),
                           value_range=(0.0, 1.0)), None

    monkeypatch.setattr(lp, "load_run_and_data", load)
    code, text, _ = run_cli(capsys, "analyze", "reconstruction", "--run", str(tmp_path), "--out",
                            str(tmp_path / "o"), "--t-values", "0", "5", "--n", "16", "--eval-dataset", "mnist")
    assert code == 0, text
    rows = read_csv(tmp_path / "o" / "reconstruction.csv")
    assert [r["dataset"] for r in rows] == ["digits", "digits", "mnist", "mnist"]
    assert seen == [None, "mnist"]
    assert float(rows[0]["mae"]) < 0.02  # the [0, 1] data were mapped to [-1, 1] before noising
    code, _, err = run_cli(capsys, "analyze", "reconstruction", "--run", str(tmp_path), "--steps", "100",
                           "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "drop --method/--schedule/--steps")
    monkeypatch.setattr(lp, "load_run_and_data", lambda run, dataset=None, split="test": (
        types.SimpleNamespace(), load(run)[1], None))
    code, _, err = run_cli(capsys, "analyze", "reconstruction", "--run", str(tmp_path), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "not a diffusion model")


@pytest.mark.parametrize("argv, fragment", [
    (["--dataset", "digits", "--schedule", "sigmoid"], "unknown noise schedule"),
    (["--dataset", "digits", "--steps", "1"], "≥ 2"),
    (["--dataset", "nope"], "unknown dataset"),
    (["--dataset", "digits", "--method", "wiener"], "unknown --method"),
    (["--dataset", "digits", "--t-values", "5000"], "--t-values"),
    (["--schedule", "linear"], "--dataset"),
])
def test_cli_reconstruction_errors_are_one_line(capsys, tmp_path, argv, fragment):
    code, _, err = run_cli(capsys, "analyze", "reconstruction", *argv, "--out", str(tmp_path), "--n", "10")
    assert_one_line_error(code, err, fragment)


def test_latent_subcommand_still_registered(capsys):
    with pytest.raises(SystemExit) as info:
        main(["analyze", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("latent", "snr", "reconstruction"):
        assert name in out
