"""`genrep evaluate` end to end on digits: LeNet features trained here, a tiny VAE run, npz files."""

import json

import numpy as np
import pytest
import torch

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


# ---------------------------------------------------------------- --inception-resize / --prd-clustering (issue 14)
@pytest.fixture()
def digit_npz(tmp_path):
    train = load_dataset("digits", "train")
    np.savez(tmp_path / "fake.npz", images=(train.images[:60].numpy() * 255).round().astype(np.uint8))
    return tmp_path / "fake.npz"


@pytest.fixture()
def cheap_inception(monkeypatch):
    """`get_extractor` replaced by one returning an FIDInception whose trunk is a cheap pooling of
    its preprocessed input (the input mapping is the real one); records the options it got."""
    from genrep import metrics
    from genrep.metrics.features.inception import FIDInception

    class Pooled(FIDInception):
        def trunk(self, images, *, spatial):
            return torch.nn.functional.adaptive_avg_pool2d(self.preprocess(images), 2).flatten(1), None

    calls = []

    def get_extractor(name, **options):
        calls.append((name, options))
        return Pooled(resize=options.get("resize", "tf1"))

    monkeypatch.setattr(metrics, "get_extractor", get_extractor)
    return calls


def test_evaluate_names_the_inception_resize_and_prd_clustering(capsys, tmp_path, digit_npz, cheap_inception):
    results = {}
    for resize in ("tf1", "torch", None):
        flags = ["--inception-resize", resize] if resize else []
        code, out, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", str(digit_npz), "--features",
                                 "inception", "--metrics", "fid,prd", "--n", "60", "--no-progress",
                                 "-o", str(tmp_path / f"{resize}.json"), *flags)
        assert code == 0, err
        results[resize] = json.loads((tmp_path / f"{resize}.json").read_text())
        assert ["inception_resize", resize or "tf1"] in [line.split() for line in out.splitlines()]
    assert [options["resize"] for _, options in cheap_inception] == ["tf1", "torch", "tf1"]
    assert results["torch"]["inception_resize"] == "torch" and results[None]["inception_resize"] == "tf1"
    assert results["tf1"] == results[None]  # tf1 stays the default
    assert results["tf1"]["fid"] != results["torch"]["fid"]  # the mapping reaches the features
    assert results["tf1"]["prd_clustering"] == "minibatch"
    code, _, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", str(digit_npz), "--features", "inception",
                           "--metrics", "prd", "--n", "60", "--prd-clustering", "lloyd", "-o",
                           str(tmp_path / "lloyd.json"), "--no-progress")
    assert code == 0, err
    assert json.loads((tmp_path / "lloyd.json").read_text())["prd_clustering"] == "lloyd"


def test_evaluate_without_inception_has_no_resize_field(capsys, tmp_path, digit_npz, lenet_home):
    code, _, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", str(digit_npz), "--metrics", "fid",
                           "--n", "60", "--inception-resize", "torch", "-o", str(tmp_path / "r.json"), "--no-progress")
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["features"] == "lenet[digits]" and "inception_resize" not in result and "prd_clustering" not in result


@pytest.mark.parametrize("flag, value, valid", [("--inception-resize", "bilinear", "tf1, torch"),
                                                 ("--prd-clustering", "kmeans", "minibatch, lloyd")])
def test_bad_inception_resize_or_prd_clustering_is_a_one_line_error(capsys, digit_npz, flag, value, valid):
    from conftest import assert_one_line_error

    code, _, err = run_cli(capsys, "evaluate", "--real", "digits", "--fake", str(digit_npz), "--features",
                           "inception", "--no-progress", "-o", str(digit_npz.with_suffix(".json")), flag, value)
    assert_one_line_error(code, err, flag, valid, repr(value))


def test_reproduce_recipes_compute_inception_fid_with_pytorch_fid_preprocessing(tmp_path, monkeypatch,
                                                                                 cheap_inception):
    """Table 5.7.1 (paper scale) and Table 4.4.1 use resize="torch", as the authors' reference, and
    their results say so."""
    import dataclasses

    from test_reproduce import write_small_celeba

    from genrep.experiments.reproduce import table_4_4_1, table_5_7_1

    extractor, note = table_5_7_1.feature_extractor("paper", progress=False)
    assert cheap_inception[-1] == ("inception", {"resize": "torch"}) and extractor.resize == "torch"
    assert "pytorch-fid preprocessing" in note
    write_small_celeba(tmp_path / "celeba")
    scale = dataclasses.replace(table_4_4_1.SCALES["smoke"], steps=2, batch_size=8, train_limit=None, n_eval=8)
    monkeypatch.setitem(table_4_4_1.SCALES, "smoke", scale)
    result = table_4_4_1.run(scale="smoke", out=tmp_path / "out", celeba_path=str(tmp_path / "celeba"),
                             progress=False, log=lambda _: None)
    assert {options["resize"] for _, options in cheap_inception[1:]} == {"torch"} and len(cheap_inception) == 4
    assert result["inception_resize"] == "torch"
    assert json.loads((tmp_path / "out" / "results.json").read_text())["inception_resize"] == "torch"
    assert "Inception preprocessing `torch` (pytorch-fid's" in (tmp_path / "out" / "results.md").read_text()
