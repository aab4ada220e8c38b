"""`genrep continual` recipe, CLI and the table-8.4.1 reproduction on the offline 8×8 digits."""

from __future__ import annotations

import json

import pytest

from genrep.cli.main import main
from genrep.continual.registry import learner_names
from genrep.errors import ConfigError
from genrep.experiments import continual as recipe
from genrep.experiments.reproduce import get_recipe

FAST = {"epochs": 3}


def test_mean_sem_known_values():
    assert recipe.mean_sem([2.0]) == (2.0, 0.0)
    mean, sem = recipe.mean_sem([1.0, 2.0, 3.0])
    assert mean == 2.0 and sem == pytest.approx(1.0 / 3 ** 0.5)


def test_parse_overrides_types_and_errors():
    assert recipe.parse_overrides(["epochs=3", "loss=ce", "width=2.5", "straight_through=false"]) == {
        "epochs": 3, "loss": "ce", "width": 2.5, "straight_through": False}
    with pytest.raises(ConfigError, match="key=value"):
        recipe.parse_overrides(["epochs"])


def test_seed_list_takes_a_count_or_a_list():
    assert recipe.seed_list(3) == recipe.seed_list("3") == [0, 1, 2]
    assert recipe.seed_list("1,2") == [1, 2] and recipe.seed_list("2,") == [2] and recipe.seed_list([4]) == [4]
    for bad in (0, "0", "a,b", "1,1", [-1]):
        with pytest.raises(ConfigError, match="--seeds"):
            recipe.seed_list(bad)


def test_method_settings_by_scale():
    assert recipe.method_settings("binplay", "paper") == {"classifier": "lenetg"}  # else the reference defaults
    from genrep.continual.binplay import BinPlaySettings

    for scale in recipe.SCALES:  # every scale's overrides are valid settings
        BinPlaySettings(**recipe.method_settings("binplay", scale))
    assert recipe.method_settings("binplay", "cpu")["decoder_init"] == "autoencoder"
    assert recipe.method_settings("gr", "smoke")["gen_iters"] == 100
    with pytest.raises(ConfigError, match="unknown method"):
        recipe.method_settings("ewc", "cpu")
    with pytest.raises(ConfigError, match="unknown scale"):
        recipe.method_settings("gr", "huge")


@pytest.mark.parametrize("scale, classifier", [("smoke", "lenet5"), ("cpu", "lenet5"), ("paper", "lenetg")])
def test_every_method_of_a_scale_uses_the_same_classifier(scale, classifier):
    """Table 8.4.1 compares what the methods replay: one base classifier for all (LeNetG at paper scale)."""
    for method in learner_names("classifier"):
        assert recipe.method_settings(method, scale)["classifier"] == classifier
        assert recipe.learner_settings(method, scale).classifier == classifier
        learner = recipe.learner_from_settings(method, recipe.learner_settings(method, scale))
        assert learner.settings.classifier == classifier
    assert recipe.learner_settings("er", "cpu", {"classifier": "lenetg"}).classifier == "lenetg"
    with pytest.raises(ConfigError, match=r"--set classifier=resnet: must be one of lenet5, lenetg, mlp$"):
        recipe.learner_settings("gr", scale, {"classifier": "resnet"})


def test_runs_stored_before_the_classifier_and_temperature_settings_still_match(tmp_path):
    from genrep.continual.learner import settings_differences

    record = recipe.run_record("gr-distill", "split-digits", "cpu", recipe.learner_settings("gr-distill", "cpu"))
    legacy = {**record, "settings": {k: v for k, v in record["settings"].items()
                                     if k not in ("classifier", "distill_temperature")}}
    (tmp_path / recipe.CONFIG).write_text(json.dumps(legacy))
    recipe.check_run_config(tmp_path, record, resume=True)  # no difference: LeNet-5 and T = 1 then
    assert settings_differences(legacy["settings"], record["settings"]) == []
    paper = recipe.run_record("gr-distill", "split-digits", "cpu",
                              recipe.learner_settings("gr-distill", "cpu", {"classifier": "lenetg"}))
    with pytest.raises(ConfigError, match="classifier \\('lenet5' → 'lenetg'\\)"):
        recipe.check_run_config(tmp_path, paper, resume=True)
    assert settings_differences(legacy["settings"], {**record["settings"], "distill_temperature": 2.0}) == [
        "distill_temperature (1.0 → 2.0)"]


def test_gr_distill_temperature_from_the_command_line():
    assert recipe.learner_settings("gr-distill", "cpu", {"distill_temperature": "2"}).distill_temperature == 2.0
    with pytest.raises(ConfigError, match="--set distill_temperature=0: must be a number > 0"):
        recipe.learner_settings("gr-distill", "cpu", {"distill_temperature": "0"})
    with pytest.raises(ConfigError, match="distill_temperature=2: must be 1 unless distill is true"):
        recipe.learner_settings("gr", "cpu", {"distill_temperature": "2"})


def test_unknown_setting_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        recipe.run_method("finetune", "split-digits", scale="smoke", out=tmp_path, overrides={"no_such_key": 1},
                          progress=False, log=None)


def test_run_method_two_seeds_summary_and_reuse(tmp_path):
    summary = recipe.run_method("finetune", "split-digits", scale="smoke", seeds=2, out=tmp_path, overrides=FAST,
                                progress=False, log=None)
    assert summary["seeds"] == [0, 1] and len(summary["per_seed"]) == 2
    for row in summary["per_seed"]:
        assert 0.0 <= row["average_accuracy"] <= 1.0
        assert len(row["final_row"]) == 5
        # fine-tuning forgets: the last task dominates the final row
        assert row["final_row"][-1] == max(row["final_row"])
        assert (tmp_path / f"seed{row['seed']}" / "results.json").is_file()
    stored = json.loads((tmp_path / "summary.json").read_text())
    assert stored["average_accuracy_percent"] == summary["average_accuracy_percent"]
    again = recipe.run_method("finetune", "split-digits", scale="smoke", seeds=2, out=tmp_path, overrides=FAST,
                              resume=True, progress=False, log=None)
    assert again["per_seed"][0]["final_row"] == summary["per_seed"][0]["final_row"]


def test_cli_continual_runs_and_prints(tmp_path, capsys):
    code = main(["continual", "er", "--scenario", "split-digits", "--scale", "smoke", "--out", str(tmp_path),
                 "--set", "epochs=3", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "er on split-digits" in out and "average accuracy" in out
    assert (tmp_path / "seed0" / "heatmap.png").is_file()


def test_table_8_4_1_recipe_prints_published(tmp_path):
    module = get_recipe("table-8.4.1")
    result = module.run(scale="smoke", seeds=1, out=tmp_path, progress=False, log=lambda line: None,
                        methods=("finetune", "er"), scenarios=("split-digits",))
    assert "fine-tuning (lower bound)" in result["markdown"]
    assert "ER (100 samples)" in result["markdown"]
    assert (tmp_path / "results.md").is_file()
    er = result["cells"]["er"]["split-digits"]
    assert len(er["accuracy"]) == 1
    assert er["memory_mb"] == 100 * (64 * 4 + 8) / 2**20  # the full 100-sample buffer of 8×8 float32 digits
    assert result["cells"]["finetune"]["split-digits"]["memory_mb"] == 0  # keeps nothing to replay
    assert "keeps to replay" in result["markdown"] and "not the classifier" in result["markdown"]
    assert "--protocol shared" in result["markdown"] and "--protocol van-de-ven" in result["markdown"]


@pytest.mark.parametrize("method, overrides", [
    ("gr", {"epochs": 1, "gen_iters": 10}),
    ("binplay", {"ae_epochs": 2, "warmup_epochs": 1, "decoder_epochs": 1, "classifier_epochs": 1, "width": 4,
                 "n_bits": 32}),
])
def test_generative_learners_write_a_replay_picture(tmp_path, method, overrides):
    from PIL import Image

    recipe.run_method(method, "split-digits", scale="smoke", out=tmp_path, overrides=overrides, progress=False,
                      log=None)
    picture = Image.open(tmp_path / "seed0" / "replay.png")
    # 5 rows (tasks) of 10 upscaled 8×8 samples
    assert picture.size[0] > picture.size[1] > 0


def test_non_generative_learner_has_no_replay_picture(tmp_path):
    recipe.run_method("finetune", "split-digits", scale="smoke", out=tmp_path, overrides=FAST, progress=False,
                      log=None)
    assert not (tmp_path / "seed0" / "replay.png").exists()
