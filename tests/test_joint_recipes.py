"""The joint diffusion experiments (thesis ch. 6): partially labelled data, domain adaptation by
diffusion-only fine-tuning, and every reproduce recipe at smoke scale."""

from __future__ import annotations

import json

import pytest
import torch

from genrep.cli.main import main
from genrep.data import load_dataset
from genrep.data.labels import append_unlabelled, labelled_indices, mask_labels
from genrep.errors import ConfigError, DataError
from genrep.experiments.joint.settings import run_config
from genrep.experiments.run_config import run_config_from_dict
from genrep.experiments.train import load_data


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train")


def test_balanced_share_keeps_the_share_of_every_class(digits):
    keep = labelled_indices(digits.labels, 0.1, seed=3)
    for c in range(10):
        n_c = int((digits.labels == c).sum())
        assert int((digits.labels[keep] == c).sum()) == round(0.1 * n_c)
    assert torch.equal(keep, labelled_indices(digits.labels, 0.1, seed=3))  # seeded
    assert not torch.equal(keep, labelled_indices(digits.labels, 0.1, seed=4))
    assert len(labelled_indices(digits.labels, 0.1, balanced=False)) == int(0.1 * len(digits))
    assert len(labelled_indices(digits.labels, 0.0001)) == 10  # at least one image per class


def test_mask_labels_marks_the_rest_unlabelled(digits):
    masked = mask_labels(digits, 0.05, seed=0)
    keep = labelled_indices(digits.labels, 0.05, seed=0)
    assert len(masked) == len(digits)
    assert torch.equal(masked.labels[keep], digits.labels[keep])
    rest = torch.ones(len(digits), dtype=torch.bool)
    rest[keep] = False
    assert bool((masked.labels[rest] == -1).all())
    dropped = mask_labels(digits, 0.05, seed=0, drop_unlabelled=True)
    assert torch.equal(dropped.images, digits.images[keep]) and bool((dropped.labels >= 0).all())


@pytest.mark.parametrize("share", [0, -0.1, 1.5, True])
def test_labelled_share_outside_0_1_is_refused(digits, share):
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        labelled_indices(digits.labels, share)


def test_append_unlabelled(digits):
    extra = digits.subset(slice(0, 7))
    mixed = append_unlabelled(digits, extra)
    assert len(mixed) == len(digits) + 7 and bool((mixed.labels[-7:] == -1).all())
    assert torch.equal(mixed.labels[: len(digits)], digits.labels)
    with pytest.raises(DataError, match="image_size"):
        append_unlabelled(digits, load_dataset("digits", "train", image_size=4))


def test_run_config_masks_the_train_split_only():
    full = load_data(run_config_from_dict(run_config("joint", "smoke", 0)), "train")
    cfg = run_config_from_dict(run_config("joint", "smoke", 0, data={"labelled_share": 0.1}))
    train, test = load_data(cfg, "train"), load_data(cfg, "test")
    keep = labelled_indices(full.labels, 0.1, seed=cfg.train.seed)
    assert torch.equal((train.labels >= 0).nonzero().flatten(), keep)
    assert bool((test.labels >= 0).all())


def test_buffer_larger_than_the_labelled_data_is_refused(tmp_path):
    raw = run_config("joint", "smoke", 0, classifier={"buffer_size": 500}, data={"labelled_share": 0.05})
    from genrep.experiments.train import train_run

    with pytest.raises(ConfigError, match="buffer_size"):
        train_run(run_config_from_dict(raw), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing half-made


def _weights(run_dir):
    import safetensors.torch

    return safetensors.torch.load_file(run_dir / "model.safetensors")


def test_domain_adaptation_fine_tune_leaves_the_head_unchanged(tmp_path):
    from genrep.experiments.joint.cells import train_cell

    source, _ = train_cell(tmp_path, "joint", "smoke", 0, train={"steps": 8})
    adapted, summary = train_cell(tmp_path, "joint", "smoke", 0, tag="adapt", classifier={"train": False},
                                  data={"labelled_share": 0.5, "drop_unlabelled": True},
                                  train={"steps": 8, "init_from": str(source), "weight_decay": 0.1})
    before, after = _weights(source), _weights(adapted)
    head = [k for k in before if k.startswith("head.")]
    assert head and all(torch.equal(before[k], after[k]) for k in head)  # weights and BN statistics
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("unet."))
    assert "test_accuracy" in summary
    with pytest.raises(ConfigError, match="init_from"):
        train_cell(tmp_path, "joint", "smoke", 0, tag="bad", train={"steps": 2, "init_from": str(tmp_path / "no")})


def test_domain_adaptation_pairs_must_share_classes_and_differ(tmp_path):
    from genrep.experiments.joint.adaptation import run_adaptation

    with pytest.raises(ConfigError, match="both digits"):
        run_adaptation(tmp_path, scale="smoke", seeds=1, source="digits", target="digits")
    with pytest.raises(ConfigError, match="one class set"):
        run_adaptation(tmp_path, scale="smoke", seeds=1, source="digits", target="calorimeter")
    with pytest.raises(ConfigError, match="mode"):
        run_adaptation(tmp_path, scale="smoke", seeds=1, source="digits", target="mnist", mode="both")


@pytest.mark.parametrize("table", ["table-6.6.1", "table-6.6.2", "table-6.6.5", "table-6.6.6"])
def test_dry_run_prints_the_settings(table, capsys, tmp_path):
    assert main(["reproduce", table, "--scale", "paper", "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["table"] == table
    runs = plan["runs"]
    joint = next(v for k, v in runs.items() if k.startswith("joint"))
    assert joint["model"]["classifier"]["loss_weight"] == "reference"  # every published command
    # the published runs (REFERENCE_CODE.md §3.4): FashionMNIST, or CIFAR-10 for the semi-supervised table
    expected = (500_000, 128, 1000, 256) if table == "table-6.6.5" else (100_000, 64, 500, 128)
    assert (joint["train"]["steps"], joint["model"]["unet"]["model_channels"], joint["model"]["steps"],
            joint["train"]["batch_size"]) == expected


@pytest.fixture(scope="module")
def smoke_tables(tmp_path_factory):
    """Every ch. 6 table at smoke scale into one folder (they share their runs)."""
    out = tmp_path_factory.mktemp("joint-smoke")
    results = {}
    for table in ("table-6.6.1", "table-6.6.2", "table-6.6.5", "table-6.6.6"):
        assert main(["reproduce", table, "--scale", "smoke", "--out", str(out), "--no-progress"]) == 0
        results[table] = json.loads((out / f"{table}.json").read_text())
    return out, results


def test_table_6_6_1_smoke(smoke_tables):
    out, results = smoke_tables
    values = results["table-6.6.1"]["values"]
    assert set(values) == {"classifier", "pretrained-ddgm", "joint"}
    assert all(0 <= v[0] <= 100 for row in values.values() for v in row.values())
    summary = json.loads((out / "seed0" / "joint" / "summary.json").read_text())
    assert values["joint"]["digits"] == [100 * summary["test_accuracy"]]
    assert (out / "seed0" / "joint" / "confusion_matrix.png").is_file()


def test_table_6_6_2_smoke(smoke_tables):
    _, results = smoke_tables
    values = results["table-6.6.2"]["values"]
    assert set(values) == {"ddgm", "ddgm-guidance", "joint", "joint-conditional", "joint-conditional-descend"}
    for row in values.values():
        assert row["fid"][0] >= 0 and 0 <= row["precision"][0] <= 100 and 0 <= row["recall"][0] <= 100


def test_table_6_6_5_smoke_reuses_the_full_label_runs(smoke_tables):
    out, results = smoke_tables
    r = results["table-6.6.5"]
    assert r["shares"] == [0.1, 1.0] and (out / "semisupervised.png").is_file()
    assert r["values"]["joint"]["1"] == results["table-6.6.1"]["values"]["joint"]["digits"]
    config = json.loads(json.dumps(__import__("yaml").safe_load(
        (out / "seed0" / "joint-share0.1" / "config.yaml").read_text())))
    assert config["model"]["classifier"]["buffer_size"] == 32 and config["data"]["labelled_share"] == 0.1
    clf = __import__("yaml").safe_load((out / "seed0" / "classifier-share0.1" / "config.yaml").read_text())
    assert clf["data"]["drop_unlabelled"] is True


def test_table_6_6_6_smoke(smoke_tables):
    out, results = smoke_tables
    cell = results["table-6.6.6"]["cells"]["mnist->digits"]
    assert set(cell["values"]) == {"classifier", "joint", "target-classifier"}
    adapted = __import__("yaml").safe_load((out / "seed0" / "joint-da8-adapt-from-mnist" / "config.yaml").read_text())
    assert adapted["model"]["classifier"]["train"] is False and adapted["train"]["init_from"].endswith("joint-mnist-da8")


def test_table_6_6_6_scores_the_source_classifier_on_the_target(smoke_tables):
    from genrep.experiments.classifier_report import accuracy
    from genrep.experiments.joint.evaluation import load_run, run_data

    out, results = smoke_tables
    cell = results["table-6.6.6"]["cells"]["mnist->digits"]
    classifier = load_run(out / "seed0" / "classifier-mnist-da8")
    target_test = run_data("smoke", "test", dataset="digits", image_size=8)
    assert cell["values"]["classifier"] == [100 * accuracy(classifier, target_test)]
    summary = json.loads((out / "seed0" / "joint-da8-adapt-from-mnist" / "summary.json").read_text())
    assert cell["values"]["joint"] == [100 * summary["test_accuracy"]]  # the adapted run is tested on digits
