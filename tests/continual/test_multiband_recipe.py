"""`genrep continual multiband|gr-vae|ewc-vae|...` end to end on the offline 8×8 digits (a LeNet trained here)."""

import json

import numpy as np
import pytest

from genrep.cli.main import main
from genrep.errors import CheckpointError, ConfigError
from genrep.experiments import continual as recipe


@pytest.fixture(scope="module")
def digits_lenet(tmp_path_factory):
    """$GENREP_DATA with a LeNet for digits (seconds), so that FID has features offline."""
    from genrep.metrics.features.training import train_lenet

    root = tmp_path_factory.mktemp("genrep-data")
    patch = pytest.MonkeyPatch()
    patch.setenv("GENREP_DATA", str(root))
    train_lenet("digits", epochs=2, progress=False)
    yield root
    patch.undo()


@pytest.mark.parametrize("method", ["multiband", "gr-vae", "ewc-vae", "si-vae", "separate-vae", "joint-vae"])
def test_a_generative_method_runs_and_writes_its_matrices(method, digits_lenet, tmp_path, monkeypatch):
    monkeypatch.setenv("GENREP_DATA", str(digits_lenet))
    out = tmp_path / method
    summary = recipe.run_method(method, "split-digits", scale="smoke", out=out, progress=False, log=None)
    assert summary["metric"] == "fid" and set(summary["averages"]) == {"fid", "precision", "recall"}
    results = json.loads((out / "seed0" / "results.json").read_text())
    fid = np.array(results["matrices"]["fid"], dtype=float)
    assert fid.shape == (5, 5)
    upper = np.triu(np.ones((5, 5), dtype=bool), 1)
    assert np.isnan(fid[upper]).all() and np.isfinite(fid[~upper]).all()  # NaN exactly where a task was unseen
    for picture in ("heatmap.png", "curves.png", "replay.png", "samples/after_task05.png"):
        assert (out / "seed0" / picture).is_file()
    assert (out / "seed0" / "latent_z.png").is_file() == (method in ("multiband", "gr-vae"))
    record = json.loads((out / "config.json").read_text())
    assert record["train_limit"] == recipe.GENERATOR_TRAIN_LIMIT["smoke"] and record["evaluation"]["max_samples"]


def test_fid_without_a_feature_extractor_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREP_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("GENREP_INCEPTION", str(tmp_path / "missing.pt"))
    from genrep.metrics.features import inception

    monkeypatch.setattr(inception, "package_weights", lambda: None)
    with pytest.raises((ConfigError, CheckpointError), match="genrep features train --dataset digits"):
        recipe.run_method("multiband", "split-digits", scale="smoke", out=tmp_path / "run", progress=False, log=None)
    assert not (tmp_path / "run").exists()  # a failed command leaves no half-made run folder


def test_resuming_with_a_changed_scenario_is_refused(digits_lenet, tmp_path, monkeypatch):
    monkeypatch.setenv("GENREP_DATA", str(digits_lenet))
    recipe.run_method("gr-vae", "split-digits", scale="smoke", out=tmp_path / "run", progress=False, log=None)
    with pytest.raises(ConfigError, match="scenario"):
        recipe.run_method("gr-vae", "split-mnist", scale="smoke", out=tmp_path / "run", resume=True, progress=False,
                          log=None)


def test_cli_runs_multiband_and_prints_its_metrics(digits_lenet, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENREP_DATA", str(digits_lenet))
    assert main(["continual", "multiband", "--scenario", "split-digits", "--out", str(tmp_path / "cli"),
                 "--set", "forgetting_threshold=0.5", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "average fid" in out and "precision" in out and "seed 0: fid" in out


@pytest.mark.parametrize("pair, message", [("forgetting_threshold=1.5", "forgetting_threshold"),
                                           ("bits=0", "bits"), ("code_bits=2", "code_bits")])
def test_bad_settings_are_one_line_errors(pair, message, digits_lenet, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENREP_DATA", str(digits_lenet))
    code = main(["continual", "multiband", "--scenario", "split-digits", "--out", str(tmp_path / "bad"),
                 "--set", pair, "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_chapter_9_tables_run_at_smoke_and_share_their_cells(digits_lenet, tmp_path, monkeypatch):
    from genrep.experiments.reproduce import get_recipe

    monkeypatch.setenv("GENREP_DATA", str(digits_lenet))
    out = tmp_path / "multiband-smoke"
    first = get_recipe("table-9.4.1").run(scale="smoke", out=out, progress=False, log=lambda line: None)
    assert "| Multiband VAE |" in first["markdown"] and "[24]" not in first["markdown"]  # no published digits value
    assert set(first["cells"]) == {f"{row}|split-digits" for row in ("si-vae", "ewc-vae", "gr-vae", "multiband")}
    made = {p.name for p in out.iterdir() if p.is_dir()}
    ablation = get_recipe("table-9.4.4").run(scale="smoke", out=out, progress=False, log=lambda line: None,
                                              rows=("gr", "forgetting"))
    assert {p.name for p in out.iterdir() if p.is_dir()} == made  # rows 1 and 5 reuse Table 9.4.1's cells
    assert "[254]" in ablation["markdown"] and "[41]" in ablation["markdown"]
    assert (out / "table-9.4.1.md").is_file() and (out / "table-9.4.4.json").is_file()


def test_table_9_4_1_places_published_values_in_their_columns():
    from genrep.experiments.reproduce import table_9_4_1

    values = {"fid": [30.0, 32.0], "precision": [90.0, 92.0], "recall": [95.0, 97.0]}
    table = table_9_4_1.results_table({("multiband", "dirichlet-mnist"): {"values": values}}, ("dirichlet-mnist",), 2)
    assert "| Multiband VAE | 31.00 ± 1.00 [41] | 91.00 ± 1.00 [92] | 96.00 ± 1.00 [96] |" in table
    wass = table_9_4_1.results_table({("gr-vae", "calorimeter-energy"): {"values": {"wasserstein": [10.0]}}},
                                     ("calorimeter-energy",), 1)
    assert "| Generative replay | 10.00 [11.1] |" in wass


def test_table_9_4_1_transfer_against_separate_models_and_the_fig_9_4_2_picture(tmp_path):
    from genrep.experiments.reproduce import table_9_4_1

    nan = float("nan")
    matrices = {  # Wasserstein, lower is better: multiband's first scores beat the separate models', then improve
        "multiband": [[4.0, nan, nan], [3.0, 5.0, nan], [2.0, 4.0, 3.0]],
        "gr-vae": [[4.0, nan, nan], [6.0, 8.0, nan], [9.0, 9.0, 7.0]],
        "separate-vae": [[4.0, nan, nan], [4.0, 6.0, nan], [4.0, 6.0, 5.0]],
    }
    cells = table_9_4_1.table_cells("cpu", ("calorimeter-energy",))
    for (row, _), c in cells.items():
        if row in matrices:
            folder = tmp_path / c.key / "seed0"
            folder.mkdir(parents=True)
            (folder / "results.json").write_text(json.dumps({
                "main_metric": "wasserstein", "matrices": {"wasserstein": matrices[row]}, "tasks_finished": 3,
                "tasks": [{}, {}, {}]}))
    cells = {key: c for key, c in cells.items() if key[0] in matrices}
    transfer = table_9_4_1.transfer_rows(tmp_path, cells, 1)
    # forward: mean over j ≥ 1 of separate[j, j] − R[j, j]; backward: mean over j < T−1 of R[j, j] − R[T−1, j]
    assert transfer["multiband|calorimeter-energy"]["forward_transfer"] == [pytest.approx((1 + 2) / 2)]
    assert transfer["multiband|calorimeter-energy"]["backward_transfer"] == [pytest.approx((2 + 1) / 2)]
    assert transfer["gr-vae|calorimeter-energy"]["forward_transfer"] == [pytest.approx((-2 - 2) / 2)]
    assert transfer["gr-vae|calorimeter-energy"]["backward_transfer"] == [pytest.approx((-5 - 1) / 2)]
    assert "separate-vae|calorimeter-energy" not in transfer
    assert table_9_4_1.transfer_figure(tmp_path, cells) == tmp_path / table_9_4_1.FIGURE
    assert (tmp_path / table_9_4_1.FIGURE).stat().st_size > 10_000


def test_no_train_writes_the_table_from_finished_runs_only(digits_lenet, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENREP_DATA", str(digits_lenet))
    out = tmp_path / "tables"
    assert main(["reproduce", "table-9.4.4", "--scale", "smoke", "--out", str(out), "--no-train",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| Generative replay | — [254] | — | — |" in printed and not any(p.is_dir() for p in out.iterdir())
    assert main(["reproduce", "table-8.4.1", "--scale", "smoke", "--out", str(tmp_path / "x"), "--no-train"]) != 0
    assert "--no-train does not apply to table-8.4.1" in capsys.readouterr().err


def test_scenario_options_reach_the_builder_and_a_changed_one_is_refused_on_resume(digits_lenet, tmp_path,
                                                                                    monkeypatch, capsys):
    monkeypatch.setenv("GENREP_DATA", str(digits_lenet))
    out = tmp_path / "run"
    summary = recipe.run_method("gr-vae", "split-digits", scale="smoke", out=out, progress=False, log=None,
                                scenario_options={"n_tasks": 2})
    assert len(summary["per_seed"][0]["final_row"]) == 2 and summary["scenario_options"] == {"n_tasks": 2}
    with pytest.raises(ConfigError, match=r"scenario_options .*--scenario-option n_tasks=2"):
        recipe.run_method("gr-vae", "split-digits", scale="smoke", out=out, resume=True, progress=False, log=None,
                          scenario_options={"n_tasks": 5})
    with pytest.raises(ConfigError, match="--scenario-option alpha: split-digits takes"):
        recipe.run_method("gr-vae", "split-digits", scale="smoke", out=tmp_path / "other",
                          scenario_options={"alpha": 1})
    assert main(["continual", "gr-vae", "--scenario", "split-digits", "--scenario-option", "n_tasks=2", "--out",
                 str(out), "--resume", "--no-progress"]) == 0
