"""`genrep reproduce`: recipe configs for every scale, the table end to end at a micro scale, reuse."""

import dataclasses
import json

import pytest
import torch

from genrep.cli.main import main
from genrep.data.spec import DataSpec
from genrep.experiments.reproduce import common, table_4_3_1
from genrep.experiments.run_config import run_config_from_dict
from genrep.models import build_model


@pytest.mark.parametrize("scale", table_4_3_1.SCALES)
@pytest.mark.parametrize("dataset, images", [("mnist", (1, 28, 28)), ("calorimeter", (1, 44, 44))])
def test_every_cell_builds_a_model(scale, dataset, images):
    spec = DataSpec(dataset, images, (0.0, 1.0), num_classes=10 if dataset == "mnist" else None,
                    cond_dim=None if dataset == "mnist" else 9)
    for model in table_4_3_1.MODELS:
        cfg = run_config_from_dict(table_4_3_1.run_config(model, dataset, scale, seed=1))
        assert cfg.train.seed == 1 and cfg.data.name == dataset
        cond = None if dataset == "mnist" else torch.zeros(2, 9)
        assert build_model(cfg.model_name, cfg.model, spec).eval().sample(2, cond).shape[1:] == images


def test_reference_sinkhorn_row_and_per_model_budgets():
    ours = table_4_3_1.run_config("ce2e-sae", "mnist", "cpu", seed=0)
    reference = table_4_3_1.run_config("ce2e-sae-reference", "mnist", "cpu", seed=0)
    assert reference["model_name"] == ours["model_name"] == "ce2e-sae"
    assert reference["model"] == {**ours["model"], "sinkhorn_preset": "reference"}
    assert run_config_from_dict(ours).model.sinkhorn_preset == "thesis"
    cpu = table_4_3_1.SCALES["cpu"]
    assert reference["train"]["steps"] == ours["train"]["steps"] == cpu.steps
    for dataset in ("mnist", "calorimeter"):  # the e2e SAE's wall time: more steps for the faster VAE/WAE
        for baseline in ("cvae", "cwae", "cdcgan"):
            config = table_4_3_1.run_config(baseline, dataset, "cpu", seed=0)
            assert config["train"]["steps"] == cpu.steps_by_model[dataset][baseline]
            assert config["train"]["checkpoint_every"] == config["train"]["steps"] // 4
        assert cpu.steps_of("cvae", dataset) > cpu.steps > cpu.steps_of("cdcgan", dataset)
    assert table_4_3_1.SCALES["smoke"].steps_of("cvae", "mnist") == table_4_3_1.SCALES["smoke"].steps


def test_mean_std_and_cells():
    assert common.mean_std([1.0, 3.0]) == (2.0, pytest.approx(2**0.5))
    assert common.mean_std([None]) is None and common.mean_std([5.0]) == (5.0, 0.0)
    assert common.format_cell((2.0, 0.5), 4.11, 3) == "2.00 ± 0.50 [4.11]"
    assert common.format_cell((2.0, 0.0), None, 1) == "2.00" and common.format_cell(None, 1.0, 1) == "— [1]"


@pytest.fixture
def micro_scale(monkeypatch):
    """A scale of a few steps on small subsets, and a LeNet-shaped random feature net (no training)."""
    from genrep.metrics.features import LeNet

    scale = dataclasses.replace(table_4_3_1.SCALES["smoke"], steps=3, batch_size=20, gan_channels=4,
                                train_limit={"mnist": 100, "calorimeter": 100},
                                n_eval={"mnist": 60, "calorimeter": 60})
    monkeypatch.setitem(table_4_3_1.SCALES, "smoke", scale)
    monkeypatch.setattr(table_4_3_1, "lenet_for_mnist", lambda scale, progress: (LeNet().eval(), "random"))


@pytest.mark.needs_source("mnist")
def test_table_end_to_end_and_reuse(micro_scale, tmp_path, capsys):
    assert main(["reproduce", "table-4.3.1", "--scale", "smoke", "--out", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for label in ("cond VAE", "cond WAE (MMD)", "cond e2e SAE (ours)", "cond e2e SAE, reference Sinkhorn",
                  "cond DCGAN", "original data"):
        assert label in printed
    assert "[4.11]" in printed and "[13.5]" in printed
    results = json.loads((tmp_path / "results.json").read_text())
    for model in table_4_3_1.MODELS:
        assert set(results["values"][model]) == {"fid", "sinkhorn", "mae", "mae_sd", "hep_w_raw", "hep_w_log"}
    assert (tmp_path / "latent_mnist_pca.png").is_file()
    original = results["values"]["original"]
    assert original["mae"][0] > 0 and original["fid"][0] >= 0
    stamp = (tmp_path / "seed0" / "mnist" / "cvae" / "model.safetensors").stat().st_mtime_ns
    assert main(["reproduce", "table-4.3.1", "--scale", "smoke", "--out", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "seed0" / "mnist" / "cvae" / "model.safetensors").stat().st_mtime_ns == stamp  # reused


def test_reproduce_cli_errors(capsys):
    assert main(["reproduce", "table-9.9.9"]) == 2
    assert "unknown table" in capsys.readouterr().err
    assert main(["reproduce", "table-4.3.1", "--scale", "huge"]) == 2
    assert "--scale must be one of smoke, cpu, paper" in capsys.readouterr().err
    assert main(["reproduce", "list"]) == 0
    assert "table-4.3.1" in capsys.readouterr().out



def write_small_celeba(root, n_train=24, n_test=8):
    """The official CelebA layout with random 178×218 faces: img_align_celeba/, partition, attributes."""
    import numpy as np
    from PIL import Image

    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    partition, attributes = [], [str(n_train + n_test), "Smiling Male"]
    for i in range(n_train + n_test):
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(root / "img_align_celeba" / name)
        partition.append(f"{name} {0 if i < n_train else 2}")
        attributes.append(f"{name} 1 -1")
    (root / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    (root / "list_attr_celeba.txt").write_text("\n".join(attributes) + "\n")


def test_celeba_table_end_to_end_on_a_small_local_copy(tmp_path, monkeypatch):
    from genrep.experiments.reproduce import table_4_4_1
    from genrep.metrics import wrap_module

    write_small_celeba(tmp_path / "celeba")
    scale = dataclasses.replace(table_4_4_1.SCALES["smoke"], steps=2, batch_size=8, train_limit=None, n_eval=8)
    monkeypatch.setitem(table_4_4_1.SCALES, "smoke", scale)
    torch.manual_seed(0)
    features = wrap_module(torch.nn.Sequential(torch.nn.AvgPool2d(8), torch.nn.Flatten()), "pool8", 3 * 8 * 8)
    result = table_4_4_1.run(scale="smoke", out=tmp_path / "out", celeba_path=str(tmp_path / "celeba"),
                             progress=False, log=lambda _: None, features=features)
    assert set(result["values"]) == {"vae", "wae", "e2e-sae"}
    assert all(v[0] > 0 for v in result["values"].values())
    assert "[54.5]" in result["markdown"] and "SWAE" in result["markdown"]
    assert (tmp_path / "out" / "results.md").is_file()


@pytest.mark.parametrize("table", ["table-4.3.1", "table-4.4.1", "table-5.7.1", "table-8.4.1"])
def test_dry_run_prints_the_resolved_settings_and_writes_nothing(table, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", table, "--scale", "paper", "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["table"] == table and plan["scale"] == "paper"
    assert list(tmp_path.iterdir()) == []  # no run folder
    if table == "table-4.3.1":  # the resolved config carries the defaults, e.g. the Sinkhorn preset per row
        cells = plan["cells"]
        assert cells["ce2e-sae/mnist"]["model"]["sinkhorn_preset"] == "thesis"
        assert cells["ce2e-sae-reference/mnist"]["model"]["sinkhorn_preset"] == "reference"
        assert cells["cvae/mnist"]["train"]["steps"] == table_4_3_1.SCALES["paper"].steps_of("cvae", "mnist")
    if table == "table-8.4.1":  # one classifier for every method at paper scale
        assert {s["classifier"] for s in plan["methods"].values()} == {"lenetg"}
