"""End-to-end checks of the command line (in-process, tiny budgets)."""

import json

import pytest
import torch
from PIL import Image

from genrep.cli.main import main

FAST = ["--steps", "30", "--no-progress", "--set", "train.log_every=10", "--set", "train.checkpoint_every=10"]


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


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "vae"
    assert main(["train", "vae", "--dataset", "digits", "--out", str(out), *FAST]) == 0
    return out


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("data", "train", "sample", "demo"):
        assert command in out


def test_data_list_has_one_line_per_dataset(capsys):
    from genrep.data import dataset_names

    code, out, _ = run_cli(capsys, "data", "list")
    assert code == 0
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == dataset_names()
    assert any(line.startswith("digits") and "embedded" in line for line in lines)


def test_data_info_and_preview(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "data", "info", "digits")
    assert code == 0 and "1500 images 1×8×8" in out and "297 images" in out
    code, out, _ = run_cli(capsys, "data", "preview", "digits", "-n", "16", "-o", str(tmp_path / "p.png"))
    assert code == 0
    assert Image.open(tmp_path / "p.png").size[0] > 32


def test_train_writes_a_complete_run_folder(trained_run):
    for name in ("config.yaml", "data_spec.json", "checkpoints/last.ckpt", "model.safetensors", "metrics.jsonl",
                 "summary.json", "report.md", "samples/last.png", "loss.png"):
        assert (trained_run / name).is_file(), name
    assert any((trained_run / "tensorboard").iterdir())
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["steps"] == 30 and summary["model"] == "vae"
    assert "samples/last.png" in (trained_run / "report.md").read_text()


def test_sample_from_run(capsys, trained_run, tmp_path):
    code, out, _ = run_cli(capsys, "sample", str(trained_run), "-n", "16", "-o", str(tmp_path / "g.png"),
                           "--npz", str(tmp_path / "s.npz"))
    assert code == 0 and (tmp_path / "g.png").is_file()
    import numpy as np

    images = np.load(tmp_path / "s.npz")["images"]
    assert images.shape == (16, 1, 8, 8) and images.min() >= 0 and images.max() <= 1


def test_existing_run_folder_is_refused(capsys, trained_run):
    code, _, err = run_cli(capsys, "train", "vae", "--dataset", "digits", "--out", str(trained_run), *FAST)
    assert_one_line_error(code, err, "exists", "--overwrite", "--resume")


def test_resume_with_incompatible_config_is_refused(capsys, trained_run):
    code, _, err = run_cli(capsys, "train", "vae", "--dataset", "digits", "--out", str(trained_run), "--resume",
                           "--set", "model.latent_dim=3", *FAST)
    assert_one_line_error(code, err, "model.latent_dim")


def test_resume_from_corrupted_checkpoint_is_refused(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "vae", "--dataset", "digits", "--out", str(out), *FAST]) == 0
    ckpt = out / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    code, _, err = run_cli(capsys, "train", "vae", "--dataset", "digits", "--out", str(out), "--resume",
                           "--steps", "40", "--no-progress", "--set", "train.log_every=10",
                           "--set", "train.checkpoint_every=10")
    assert_one_line_error(code, err, "last.ckpt")


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["train", "vae", "--dataset", "nope"], ["unknown dataset 'nope'", "digits"]),
        (["train", "gan9", "--dataset", "digits"], ["unknown model 'gan9'", "vae"]),
        (["train", "vae", "--set", "model.latnt_dim=3"], ["model.latnt_dim", "model.latent_dim"]),
        (["train", "vae", "--set", "train.steps=many"], ["train.steps", "int"]),
        (["train", "vae", "--set", "train.optimizer=adagrad"], ["optimizer"]),
        (["data", "info", "nope"], ["unknown dataset"]),
        (["sample", "/nonexistent/run"], ["config.yaml"]),
    ],
)
def test_bad_input_gives_one_line_error(capsys, tmp_path, argv, fragments):
    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "r"), "--no-progress"]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, *fragments)


def test_config_file_round_trip(capsys, trained_run, tmp_path):
    code, _, _ = run_cli(capsys, "train", "vae", "--config", str(trained_run / "config.yaml"),
                         "--out", str(tmp_path / "again"), "--no-progress")
    assert code == 0
    assert (tmp_path / "again" / "config.yaml").read_text() == (trained_run / "config.yaml").read_text()


def test_demo_runs_end_to_end(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "demo", "--steps", "40", "--out", str(tmp_path / "demo"), "--no-progress")
    assert code == 0
    assert "| vae |" in out and "| cvae |" in out
    for name in ("summary.json", "report.md", "vae_samples.png", "cvae_samples.png", "vae/model.safetensors"):
        assert (tmp_path / "demo" / name).is_file(), name


def test_print_config_shows_resolved_values(capsys):
    import yaml

    code, out, _ = run_cli(capsys, "train", "cvae", "--dataset", "digits", "--lr", "0.01",
                           "--set", "model.hidden=[32]", "--print-config")
    assert code == 0
    cfg = yaml.safe_load(out)
    assert cfg["model_name"] == "cvae" and cfg["train"]["lr"] == 0.01 and cfg["model"]["hidden"] == [32]


def test_conditional_calorimeter_model_samples_with_particle_conditions(capsys, tmp_path):
    out = tmp_path / "calo"
    code, _, err = run_cli(capsys, "train", "cvae", "--dataset", "calorimeter", "--out", str(out), *FAST,
                           "--set", "data.limit=512", "--set", "model.arch=conv", "--set", "model.channels=[8,16]",
                           "--set", "model.hidden=[32]", "--set", "model.likelihood=gaussian")
    assert code == 0, err
    from genrep.experiments.train import load_trained_model

    model = load_trained_model(out)
    assert model.condition.num_classes is None and model.condition.dim == 9
    assert not torch.allclose(model.condition.mean, torch.zeros(9)), "condition statistics must be restored"
    code, _, err = run_cli(capsys, "sample", str(out), "-n", "4", "--npz", str(tmp_path / "s.npz"))
    assert code == 0, err
    import numpy as np

    assert np.load(tmp_path / "s.npz")["images"].shape == (4, 1, 44, 44)
