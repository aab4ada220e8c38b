"""Chapter 5.7: the two-stage DAED switching experiment (Fig. 5.7.2) and `genrep reproduce table-5.7.1`."""

import csv
import dataclasses
import json
import math

import pytest
import torch

from genrep.cli.main import main
from genrep.data import DataSpec, load_dataset
from genrep.experiments import switching as S
from genrep.experiments.reproduce import table_5_7_1 as R
from genrep.experiments.run_config import run_config_from_dict
from genrep.metrics.features import LeNet
from genrep.models import build_model

TINY_UNET = {"model_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [],
             "middle_attention": False, "dropout": 0.0}


# --------------------------------------------------------------------------------------------- switching


@pytest.fixture(scope="module")
def ddgm_run(tmp_path_factory):
    """A 20-step (cosine) DDGM on digits, trained 5 steps."""
    from genrep.experiments.train import train_run

    raw = {"model_name": "ddgm", "model": {"steps": 20, "schedule": "cosine", "unet": TINY_UNET},
           "data": {"name": "digits", "limit": 200, "validation_fraction": 0.0},
           "train": {"steps": 5, "batch_size": 16, "progress": False, "log_every": 1, "checkpoint_every": 0}}
    run_dir = tmp_path_factory.mktemp("switching") / "ddgm"
    train_run(run_config_from_dict(raw), run_dir)
    return run_dir


def test_switching_points_follow_the_log_snr(ddgm_run):
    from genrep.analysis.snr import snr_curve
    from genrep.experiments.train import load_trained_model

    model = load_trained_model(ddgm_run)
    images = load_dataset("digits", "test", limit=50).images
    messages = []
    points = S.switching_points(model, images, [2.0, 0.0, 0.01, 99.0], log=messages.append)
    curve = snr_curve(images * 2 - 1, model.diffusion.betas.numpy())
    nearest = [int(abs(curve["log_snr"] - 2).argmin()), int(abs(curve["log_snr"]).argmin())]
    assert [p["t"] for p in points][:2] == nearest
    assert points[-1]["t"] == 0 and any("outside" in m for m in messages)  # 99 → the first step
    assert any("skipped" in m for m in messages) and len(points) == 3  # 0.01 maps to the same step as 0
    for p in points:
        assert p["beta1_equivalent"] == pytest.approx(1 - p["alpha_bar"])
        assert p["fraction_of_steps"] == (p["t"] + 1) / 20


def test_switching_experiment_at_micro_scale(ddgm_run, tmp_path):
    from genrep.experiments.latent_pictures import load_run_and_data

    model, test, _ = load_run_and_data(ddgm_run, None, "test")
    train = load_run_and_data(ddgm_run, None, "train")[1]
    settings = S.SwitchingSettings(dae_steps=3, batch_size=16, n=40, sample_batch_size=25)
    torch.manual_seed(0)
    features = LeNet().eval()
    result = S.switching_experiment(model, train, test, tmp_path, features=features, log_snrs=[4.0, 0.0],
                                    settings=settings, log=lambda _: None)
    assert len(result["rows"]) == 2 and math.isfinite(result["ddgm_fid"])
    assert all(math.isfinite(r["fid"]) and r["n"] == 40 and r["dae_steps"] == 3 for r in result["rows"])
    with open(tmp_path / "switching.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == S.CSV_COLUMNS and len(rows) == 2
    for name in ("switching.png", "switching_samples.png", "switching.json"):
        assert (tmp_path / name).stat().st_size > 0
    daes = sorted((tmp_path / "daes").glob("dae_t*.safetensors"))
    assert len(daes) == 2
    # a second call reuses the trained DAEs (same DDGM, same settings) and gives the same numbers
    stamp = daes[0].stat().st_mtime_ns
    messages = []
    again = S.switching_experiment(model, train, test, tmp_path, features=features, log_snrs=[4.0, 0.0],
                                   settings=settings, log=messages.append)
    assert daes[0].stat().st_mtime_ns == stamp and sum("reusing" in m for m in messages) == 2
    assert result["ddgm_fid"] == pytest.approx(again["ddgm_fid"])
    assert [r["fid"] for r in again["rows"]] == pytest.approx([r["fid"] for r in result["rows"]])


def test_cli_switching_with_a_torchscript_feature_net(ddgm_run, tmp_path, capsys):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 12))
    torch.jit.trace(net, torch.rand(2, 1, 8, 8)).save(str(tmp_path / "feat.pt"))
    out = tmp_path / "out"
    assert main(["analyze", "switching", str(ddgm_run), "--out", str(out), "--switch-log-snr", "5,1",
                 "--dae-steps", "2", "--batch-size", "16", "--n", "30", "--features", str(tmp_path / "feat.pt"),
                 "--dae-channels", "8", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "DDGM" in printed and (out / "switching.csv").is_file() and (out / "switching.png").is_file()
    stored = json.loads(next((out / "daes").glob("*.json")).read_text())
    assert stored["identity"]["unet"]["model_channels"] == 8


@pytest.mark.parametrize("argv, fragment", [(["--switch-log-snr", "a,b"], "--switch-log-snr"),
                                            (["--dae-steps", "0"], "dae-steps")])
def test_cli_switching_errors(ddgm_run, tmp_path, capsys, argv, fragment):
    assert main(["analyze", "switching", str(ddgm_run), "--out", str(tmp_path), *argv]) == 2
    assert fragment in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- table 5.7.1


SHAPES = {"digits": (1, 8, 8), "fashion_mnist": (1, 28, 28)}


@pytest.mark.parametrize("scale", R.SCALES)
def test_every_row_builds_a_model(scale):
    s = R.SCALES[scale]
    spec = DataSpec(s.dataset, SHAPES[s.dataset], (0.0, 1.0), num_classes=10)
    params = {}
    for key, model_name, beta1, loss in R.ROWS:
        cfg = run_config_from_dict(R.run_config(key, scale, seed=2))
        assert cfg.train.seed == 2 and cfg.data.name == s.dataset and cfg.model.loss == loss
        torch.manual_seed(0)
        model = build_model(cfg.model_name, cfg.model, spec)
        params[key] = sum(p.numel() for p in model.parameters())
        assert model.diffusion.num_timesteps == R.diffusion_length(key, scale)
        if model_name == "daed":  # β_1 = 0.001: the plain linear schedule's own first step (the reference's)
            first = beta1 if beta1 == 0.1 else 1e-4 * 1000 / s.diffusion_steps
            assert float(model.diffusion.betas[0]) == pytest.approx(first)
        if scale == "paper":
            continue  # a full-size model: building it is the check
        batch = {"x": torch.rand(2, *SHAPES[s.dataset])}
        assert torch.isfinite(model(batch).loss)
        if scale == "smoke":
            assert model.eval().sample(2).shape == (2, *SHAPES[s.dataset])
    if scale == "paper":
        assert params["ddgm-simple"] == pytest.approx(8.8e6, rel=0.01)  # thesis Table 5.9.5: 8.8 M
        assert params["daed-0.001-simple"] == pytest.approx(2 * params["ddgm-simple"], rel=0.01)  # 17.6 M


def test_paper_scale_samples_unclipped_as_the_reference_did():
    for key, *_ in R.ROWS:  # every row, DDGM and DAED, says it explicitly
        assert R.run_config(key, "paper", 0)["model"]["clip_denoised"] is False
        assert run_config_from_dict(R.run_config(key, "paper", 0)).model.clip_denoised is False
        assert R.run_config(key, "cpu", 0)["model"]["clip_denoised"] is True


def test_paper_scale_is_the_published_setup():
    s = R.SCALES["paper"]
    assert (s.diffusion_steps, s.batch_size, s.lr, s.train_steps, s.features) == (500, 128, 1e-4, 100_000, "inception")
    for key, *_ in R.ROWS:  # the β_1 = 0.001 runs: 500 steps, of which 499 are the DDGM's (published)
        assert R.diffusion_length(key, "paper") == R.PUBLISHED[key]["T"] + ("0.001" in key)
    cfg = run_config_from_dict(R.run_config("daed-0.1-vlb", "paper", 0))
    assert cfg.train.optimizer == "adamw" and cfg.model.unet.num_res_blocks == 3 and cfg.model.unet.dropout == 0.3
    assert R.SCALES["cpu"].dataset == "fashion_mnist" and R.SCALES["cpu"].features == "lenet"
    # the published runs' timestep samplers by default, the thesis' p ∝ β_t on request
    assert cfg.model.dae_sampler == "first-step"
    assert run_config_from_dict(R.run_config("daed-0.001-simple", "cpu", 0)).model.dae_sampler == "uniform"
    thesis = dataclasses.replace(R.SCALES["cpu"], dae_sampler="beta")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(R.SCALES, "cpu", thesis)
        assert run_config_from_dict(R.run_config("daed-0.001-simple", "cpu", 0)).model.dae_sampler == "beta"


@pytest.fixture
def micro_scale(monkeypatch):
    scale = dataclasses.replace(R.SCALES["smoke"], diffusion_steps=30, train_steps=2, batch_size=16, n_eval=30,
                                sample_steps=3, train_limit=100)
    monkeypatch.setitem(R.SCALES, "smoke", scale)
    monkeypatch.setattr(R, "feature_extractor", lambda scale, progress: (seeded_lenet(), "random LeNet"))


def seeded_lenet():
    """The same random LeNet on every call (no training, no cached weights)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return LeNet().eval()


def test_table_end_to_end_and_reuse(micro_scale, tmp_path, capsys):
    assert main(["reproduce", "table-5.7.1", "--scale", "smoke", "--out", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for label in ("DDGM", "DAED β1 = 0.1", "DAED β1 = 0.001", "VLB", "Simple", "[5.7]", "[7.5]", "[8.9]", "[468]"):
        assert label in printed
    assert "compare rankings only" in printed
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["values"]) == {key for key, *_ in R.ROWS}
    for values in results["values"].values():
        assert set(values) == set(R.METRIC_KEYS) and all(math.isfinite(v[0]) for v in values.values())
    assert "compare rankings only" in (tmp_path / "results.md").read_text()
    run_dir = tmp_path / "seed0" / "daed-0.1-vlb"
    weights, samples = run_dir / "model.safetensors", run_dir / "eval_samples_n30_seed0.npz"
    stamps = weights.stat().st_mtime_ns, samples.stat().st_mtime_ns
    assert main(["reproduce", "table-5.7.1", "--scale", "smoke", "--out", str(tmp_path), "--no-progress"]) == 0
    assert (weights.stat().st_mtime_ns, samples.stat().st_mtime_ns) == stamps  # reused
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["values"] == results["values"]


def test_table_is_listed(capsys):
    assert main(["reproduce", "list"]) == 0
    assert "table-5.7.1" in capsys.readouterr().out


def test_paper_dry_run_matches_the_reference_code(capsys):
    """REFERENCE_CODE.md §2.2–2.3: the settings of the published FashionMNIST runs, row by row."""
    assert main(["reproduce", "table-5.7.1", "--scale", "paper", "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    rows = plan["rows"]
    assert plan["train"] == {"steps": 100_000, "batch_size": 128, "optimizer": "adamw", "lr": 1e-4,
                             "weight_decay": 0.0, "grad_clip": None, "accelerator": "auto"}
    for key, row in rows.items():
        assert row["sampling"] == {"steps": "all", "sampler": "ancestral", "clip_denoised": False}, key
    for key in ("ddgm-vlb", "ddgm-simple"):  # linear, T = 500: 0.0002 … 0.04, uniform t
        assert (rows[key]["T"], rows[key]["beta_0"], rows[key]["beta_last"]) == (500, pytest.approx(2e-4),
                                                                                pytest.approx(0.04))
        assert rows[key]["timestep_sampler"]["p_t0"] == pytest.approx(1 / 500)
    for loss in ("vlb", "simple"):
        big, small = rows[f"daed-0.1-{loss}"], rows[f"daed-0.001-{loss}"]
        # β_1 = 0.1: linear_combine of T′ = 468 (fresh linspace(1e-4, 0.02)·1000/468, β[0] := 0.1), dae_uniform
        assert (big["T"], big["beta_0"]) == (468, pytest.approx(0.1))
        assert big["beta_last"] == pytest.approx(0.02 * 1000 / 468)
        assert big["timestep_sampler"]["name"] == "first-step"
        assert big["timestep_sampler"]["p_t0"] == pytest.approx(46.8 / (46.8 + 467))  # ≈ 0.091
        # β_1 = 0.001: the plain 500-step linear DDGM whose own first step (2e-4) is the DAE's, uniform t
        assert (small["T"], small["ddgm_steps"], small["beta_0"]) == (500, 499, pytest.approx(2e-4))
        assert small["timestep_sampler"]["p_t0"] == pytest.approx(1 / 500)
        assert small["dae"]["noise_variance"] == pytest.approx(2e-4)
        for row in (big, small):  # the DAE predicts ε; in VLB mode its term is (T′−1)·MSE(x̂_0(ε̂), x_0)
            assert row["dae"]["prediction"] == "eps"
            assert row["dae"]["loss"] == ("MSE(eps, eps_hat)" if loss == "simple" else "(T'-1)·MSE(x0, x0_hat(eps_hat))")


def test_dry_run_of_a_table_without_a_plan_is_one_line(capsys, monkeypatch):
    from genrep.experiments.reproduce import table_4_4_1

    monkeypatch.delattr(table_4_4_1, "plan")
    assert main(["reproduce", "table-4.4.1", "--dry-run"]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "has no settings plan" in err and "table-5.7.1" in err
