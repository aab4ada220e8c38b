"""`genrep evaluate` end to end on digits: LeNet features trained here, a tiny VAE run, npz files."""

import json

import numpy as np
import pytest

from genrep.cli.main import main
from genrep.data import load_dataset


@pytest.fixture(scope="module")
def lenet_home(tmp_path_factory):
    """GENREP_DATA with LeNet weights for digits (trained once for the module)."""
    home = tmp_path_factory.mktemp("genrep_data")
    mp = pytest.MonkeyPatch()
    mp.setenv("GENREP_DATA", str(home))
    assert main(["features", "train", "--dataset", "digits", "--epochs", "3"]) == 0
    yield home
    mp.undo()


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, lenet_home):
    out = tmp_path_factory.mktemp("runs") / "vae"
    assert main(["train", "vae", "--dataset", "digits", "--out", str(out), "--steps", "200", "--no-progress"]) == 0
    return out


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_run_folder_writes_json(capsys, vae_run):
    code, out, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", str(vae_run),
                             "--metrics", "fid,kid,prd,ipr,sinkhorn", "--no-progress")
    assert code == 0, err
    result = json.loads((vae_run / "eval_digits.json").read_text())
    assert result["n"] == 297 and result["real"] == "digits:test"
    for key in ("fid", "kid", "prd_precision", "prd_recall", "precision", "recall", "sinkhorn"):
        assert key in result and np.isfinite(result[key]), key
    assert result["fid"] > 0 and 0 <= result["prd_precision"] <= 1 and 0 <= result["recall"] <= 1


def test_real_against_real_scores_better_than_a_barely_trained_model(capsys, tmp_path, vae_run, lenet_home):
    train = load_dataset("digits", "train")
    np.savez(tmp_path / "real.npz", images=(train.images[:297].numpy() * 255).round().astype(np.uint8))
    code, _, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", str(tmp_path / "real.npz"),
                           "--metrics", "fid,ipr", "-o", str(tmp_path / "r.json"), "--no-progress")
    assert code == 0, err
    real_vs_real = json.loads((tmp_path / "r.json").read_text())
    model = json.loads((vae_run / "eval_digits.json").read_text()) if (vae_run / "eval_digits.json").exists() else None
    if model is None:
        run_cli(capsys, "evaluate", "--real", "digits", "--fake", str(vae_run), "--metrics", "fid,ipr",
                "--no-progress")
        model = json.loads((vae_run / "eval_digits.json").read_text())
    assert real_vs_real["fid"] < model["fid"]
    assert real_vs_real["precision"] > 0.6 and real_vs_real["recall"] > 0.6


def test_pinned_protocol_is_reproducible(capsys, tmp_path, vae_run):
    values = []
    for i in range(2):
        run_cli(capsys, "evaluate", "--real", "digits", "--fake", str(vae_run), "--metrics", "fid",
                "-o", str(tmp_path / f"{i}.json"), "--no-progress")
        values.append(json.loads((tmp_path / f"{i}.json").read_text())["fid"])
    assert values[0] == values[1]


@pytest.mark.parametrize("images, fragment", [
    (np.random.default_rng(0).uniform(-1, 1, (297, 1, 8, 8)).astype(np.float32), "[0, 1]"),
    (np.zeros((297, 1, 28, 28), np.uint8), "28×28"),
    (np.zeros((10, 1, 8, 8), np.uint8), "--n 10"),
])
def test_bad_fake_images_give_one_line_errors(capsys, tmp_path, lenet_home, images, fragment):
    np.savez(tmp_path / "bad.npz", images=images)
    code, _, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", str(tmp_path / "bad.npz"),
                           "--no-progress")
    assert code == 2 and "Traceback" not in err and fragment in err, err


@pytest.mark.parametrize("argv, fragment", [
    (["--metrics", "fid,fidd"], "unknown metric fidd"),
    (["--metrics", "channels"], "44×44"),
    (["--n", "100000"], "--n must be between 2 and 297"),
])
def test_bad_options(capsys, vae_run, argv, fragment):
    code, _, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", str(vae_run), "--no-progress", *argv)
    assert code == 2 and fragment in err, err


def test_missing_lenet_weights_name_the_command(capsys, tmp_path, monkeypatch, vae_run):
    monkeypatch.setenv("GENREP_DATA", str(tmp_path / "empty"))
    code, _, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", str(vae_run), "--no-progress")
    assert code == 2 and "genrep features train --dataset digits" in err, err


def test_inception_score_alone_uses_the_lenet_classifier_head(capsys, tmp_path, lenet_home):
    """IS needs only generated images; with LeNet it is the score of its 10-way digit classifier."""
    train = load_dataset("digits", "train")
    scores = {}
    for name, images in (("real", train.images[:297]), ("constant", train.images[:1].expand(297, -1, -1, -1))):
        np.savez(tmp_path / f"{name}.npz", images=(images.numpy() * 255).round().astype(np.uint8))
        code, _, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", str(tmp_path / f"{name}.npz"),
                               "--metrics", "is", "-o", str(tmp_path / f"{name}.json"), "--no-progress")
        assert code == 0, err
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())["is"]
    assert scores["constant"] == pytest.approx(1.0, abs=1e-6)  # one image repeated: p(y|x) = p(y)
    assert scores["real"] > 3  # ten balanced classes recognised confidently (at most 10)
