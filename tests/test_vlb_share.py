"""Share of the variational bound per diffusion step (thesis Fig. 5.9.8): maths, models, CLI."""

import csv

import numpy as np
import pytest
import torch

from genrep.analysis import vlb_share as V
from genrep.cli.main import main
from genrep.data import DataSpec, load_dataset
from genrep.errors import ConfigError
from genrep.models import DAEDConfig, DDGMConfig, UNetSettings, build_model

TINY = UNetSettings(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(),
                    middle_attention=False, dropout=0.0)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "test", limit=64)


def perturbed(model):
    """A zero-initialised UNet predicts ε = 0 everywhere; give it a non-trivial output."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def test_share_curve_by_hand():
    vb = np.array([[3.0, 1.0, 0.0, 0.0], [1.0, 1.0, 2.0, 0.0]])
    curve = V.share_curve(vb, np.arange(4), 4, prior_bpd=np.array([1.0, 1.0]))
    assert np.allclose(curve["vb_bpd"], [2, 1, 1, 0]) and curve["steps_bpd"] == 4.0
    assert np.allclose(curve["share"], [0.5, 0.25, 0.25, 0.0])
    assert np.allclose(curve["cumulative_share"], [0.5, 0.75, 1.0, 1.0])
    assert np.allclose(curve["fraction_of_steps"], [0.25, 0.5, 0.75, 1.0])
    assert curve["prior_share_of_bound"] == pytest.approx(1 / 5)
    assert V.reached_at(curve, 0.5) == (0, 0.25) and V.reached_at(curve, 0.9) == (2, 0.75)
    skipped = V.share_curve(vb, np.arange(4), 4, skip_first=1)
    assert list(skipped["t"]) == [1, 2, 3] and np.allclose(skipped["share"], [0.5, 0.5, 0.0])
    lines = V.summary_lines(curve)
    assert "step t=0 holds 50.0%" in lines[0] and "90% of the bound reached at step t=2 (3 steps, 75.00%" in lines[2]
    with pytest.raises(ConfigError, match="skip-first"):
        V.share_curve(vb, np.arange(4), 4, skip_first=4)


def test_ddgm_shares_sum_to_one(digits):
    model = perturbed(build_model("ddgm", DDGMConfig(steps=20, schedule="cosine", loss="vlb", unet=TINY),
                                  DataSpec.of(digits)))
    curve = V.vlb_share(model, digits.images[:8], batch_size=5, seed=3)
    assert curve["model"] == "ddgm" and list(curve["t"]) == list(range(20)) and curve["n_images"] == 8
    assert curve["share"].sum() == pytest.approx(1.0)
    assert np.all(np.diff(curve["cumulative_share"]) >= -1e-9) and curve["cumulative_share"][-1] == pytest.approx(1.0)
    assert curve["fraction_of_steps"][-1] == 1.0 and np.all(curve["vb_bpd"][0] > curve["vb_bpd"][1:])
    assert curve["total_bpd"] == pytest.approx(curve["steps_bpd"] + curve["prior_bpd"], rel=1e-6)
    again = V.vlb_share(model, digits.images[:8], batch_size=5, seed=3)
    assert np.array_equal(again["vb_bpd"], curve["vb_bpd"])  # seeded noise


def test_daed_uses_its_ddgm_part_only(digits):
    model = perturbed(build_model("daed", DAEDConfig(steps=30, beta1=0.1, loss="vlb", unet=TINY, dae_unet=TINY),
                                  DataSpec.of(digits)))
    curve = V.vlb_share(model, digits.images[:4])
    assert curve["model"] == "daed" and curve["T"] == model.T_short
    assert list(curve["t"]) == list(range(1, model.T_short))
    assert curve["share"].sum() == pytest.approx(1.0)


def test_models_without_a_bound_are_refused(digits):
    with pytest.raises(ConfigError, match="variational bound"):
        V.vlb_terms(torch.nn.Linear(2, 2), digits.images[:2])


@pytest.fixture(scope="module")
def ddgm_run(tmp_path_factory):
    from genrep.experiments.run_config import run_config_from_dict
    from genrep.experiments.train import train_run

    unet = {"model_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [],
            "middle_attention": False, "dropout": 0.0}
    raw = {"model_name": "ddgm", "model": {"steps": 20, "schedule": "cosine", "loss": "vlb", "unet": unet},
           "data": {"name": "digits", "limit": 200, "validation_fraction": 0.0},
           "train": {"steps": 3, "batch_size": 16, "progress": False, "log_every": 1, "checkpoint_every": 0}}
    run_dir = tmp_path_factory.mktemp("vlb") / "run"
    train_run(run_config_from_dict(raw), run_dir)
    return run_dir


def test_cli_vlb_share(ddgm_run, tmp_path, capsys):
    out = tmp_path / "vlb"
    assert main(["analyze", "vlb-share", str(ddgm_run), "--out", str(out), "--n", "10", "--no-progress",
                 "--levels", "0.5,0.9,0.99"]) == 0
    printed = capsys.readouterr().out
    assert "50% of the bound reached at step t=" in printed and "99% of the bound" in printed
    with open(out / "vlb_share.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == V.CSV_COLUMNS and len(rows) == 20
    assert sum(float(r["share"]) for r in rows) == pytest.approx(1.0, abs=1e-6)
    assert float(rows[-1]["cumulative_share"]) == pytest.approx(1.0)
    assert (out / "vlb_share.png").stat().st_size > 0 and (out / "vlb_share.json").is_file()


@pytest.mark.parametrize("argv, fragment", [(["--levels", "0,2"], "--levels"), (["--n", "0"], "--n")])
def test_cli_vlb_share_errors(ddgm_run, tmp_path, capsys, argv, fragment):
    assert main(["analyze", "vlb-share", str(ddgm_run), "--out", str(tmp_path), *argv]) == 2
    assert fragment in capsys.readouterr().err
