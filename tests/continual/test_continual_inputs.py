"""`genrep continual` against a new user's mistakes (issue 13 §5): `--resume` with changed settings or
without a run, `--set` values of the wrong type / out of range / unknown, and the wall time of a
resumed run. All on the offline 8×8 `split-digits` scenario at `smoke` scale (seconds per run)."""

from __future__ import annotations

import json
import time

import pytest

from genrep.cli.main import main
from genrep.continual.baselines import ERSettings, ExperienceReplay, FineTune, GRSettings
from genrep.continual.binplay import BinPlaySettings
from genrep.continual.learner import SettingError
from genrep.continual.runner import run_scenario
from genrep.continual.scenarios import build_scenario
from genrep.errors import CheckpointError, ConfigError, GenrepError, RunExistsError
from genrep.experiments import continual as recipe

SCENARIO = "split-digits"


def run(out, method="finetune", *, overrides=None, **kwargs):
    overrides = {"epochs": 1} if overrides is None else overrides
    return recipe.run_method(method, SCENARIO, scale="smoke", out=out, overrides=overrides,
                             progress=False, log=None, **kwargs)


def cli(capsys, *args):
    """Exit code and stderr of `genrep continual ...`."""
    code = main(["continual", *args, "--no-progress"])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished finetune run with epochs=1 (tests that use it must not change it)."""
    out = tmp_path_factory.mktemp("finished")
    run(out)
    return out


def interrupt_at(monkeypatch, task_index: int, sleep: float = 0.0):
    """Make FineTune raise in learn() on `task_index` (after sleeping `sleep` s in every earlier task)."""
    original = FineTune._learn

    def learn(self, task, generator):
        if task.index == task_index:
            raise RuntimeError("simulated interruption")
        time.sleep(sleep)
        original(self, task, generator)

    monkeypatch.setattr(FineTune, "_learn", learn)


# -- 1. --resume refuses changed settings and a folder without a run --------------------------------------------


def test_resume_with_changed_settings_is_refused_and_leaves_the_run_as_it_was(tmp_path, monkeypatch):
    interrupt_at(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="simulated interruption"):
        run(tmp_path, overrides={"epochs": 2})
    monkeypatch.undo()
    config = (tmp_path / "config.json").read_text()
    assert json.loads(config)["settings"]["epochs"] == 2

    with pytest.raises(ConfigError, match=r"cannot resume .*epochs \(2 → 1\); lr \(0.002 → 0.5\).*"
                                          r"--set epochs=2 --set lr=0.002"):
        run(tmp_path, overrides={"epochs": 1, "lr": 0.5}, resume=True)
    with pytest.raises(ConfigError, match=r"epochs \(2 → 15\)"):  # the default is a change too
        run(tmp_path, overrides={}, resume=True)
    # nothing of the refused segments was written: no mixed run
    assert (tmp_path / "config.json").read_text() == config
    assert json.loads((tmp_path / "seed0" / "results.json").read_text())["tasks_finished"] == 2
    assert not (tmp_path / "summary.json").exists()

    summary = run(tmp_path, overrides={"epochs": 2, "progress": False}, resume=True)  # the same settings resume
    assert len(summary["per_seed"][0]["final_row"]) == 5  # the settings shown: the scale's classifier + --set
    assert summary["settings"] == {"classifier": "lenet5", "epochs": 2, "progress": False}


def test_cli_resume_with_changed_settings_names_each_key(finished, capsys):
    code, err = cli(capsys, "finetune", "--scenario", SCENARIO, "--out", str(finished), "--resume",
                    "--set", "epochs=40", "--set", "lr=0.5")
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"genrep: error: cannot resume {finished}: the settings differ in epochs (1 → 40); "
                          "lr (0.002 → 0.5); resume with the stored values (--set epochs=1 --set lr=0.002)")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["finetune", "--scale", "cpu"], r"scale \('smoke' → 'cpu'\).*\(--scale smoke\)"),
    (["er"], r"method \('finetune' → 'er'\)"),
    (["finetune", "--scenario", "split-mnist"], r"scenario \('split-digits' → 'split-mnist'\)"),
])
def test_resume_with_another_scale_method_or_scenario_is_refused(finished, args, message):
    method, *rest = args
    scale = rest[1] if rest[:1] == ["--scale"] else "smoke"
    scenario = rest[1] if rest[:1] == ["--scenario"] else SCENARIO
    with pytest.raises(ConfigError, match=message):
        recipe.run_method(method, scenario, scale=scale, out=finished, overrides={"epochs": 1}, resume=True,
                          progress=False, log=None)


def test_resume_may_change_progress_only(finished):
    before = (finished / "config.json").read_text()
    summary = run(finished, overrides={"epochs": 1, "progress": True}, resume=True)
    assert len(summary["per_seed"]) == 1 and (finished / "config.json").read_text() == before


def test_adding_a_seed_with_other_settings_is_refused(finished):
    with pytest.raises(RunExistsError, match=r"other settings: epochs \(1 → 3\)"):
        run(finished, overrides={"epochs": 3}, seeds="1,")
    assert not (finished / "seed1").exists()


def test_runner_refuses_a_checkpoint_with_other_learner_settings(finished):
    scenario = build_scenario(SCENARIO, seed=0, limit=recipe.TRAIN_LIMIT["smoke"])
    with pytest.raises(ConfigError, match=r"checkpoint.pt: the settings differ in epochs \(1 → 2\)"):
        run_scenario(FineTune(epochs=2), scenario, finished / "seed0", resume=True, progress=False, log=None,
                     run_config={"method": "finetune", "scenario": SCENARIO, "scale": "smoke", "train_limit": 300})
    with pytest.raises(ConfigError, match=r"train_limit \(300 → None\)"):  # what the learner does not know
        run_scenario(FineTune(epochs=1), scenario, finished / "seed0", resume=True, progress=False, log=None,
                     run_config={"method": "finetune", "scenario": SCENARIO, "scale": "smoke", "train_limit": None})
    stored = json.loads((finished / "seed0" / "results.json").read_text())
    assert stored["settings"]["epochs"] == 1 and stored["run_config"]["scale"] == "smoke"


def test_cli_resume_of_a_missing_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "no-such-run"
    code, err = cli(capsys, "finetune", "--scenario", SCENARIO, "--out", str(out), "--resume")
    assert code == 2
    assert err == f"genrep: error: cannot resume: {out} does not exist; drop --resume to start a new run there\n"
    assert not out.exists()


def test_cli_resume_of_a_folder_without_a_run_is_refused(tmp_path, capsys):
    code, err = cli(capsys, "finetune", "--scenario", SCENARIO, "--out", str(tmp_path), "--resume")
    assert code == 2 and f"cannot resume: {tmp_path} holds no continual run" in err and "drop --resume" in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CheckpointError, match="does not exist"):
        recipe.check_resumable(tmp_path / "missing")


# -- 2. --set values are coerced to the field types and checked ------------------------------------------------


@pytest.mark.parametrize("method, pair, allowed", [
    ("er", "buffer_size=1.5", "an integer >= 1"),
    ("er", "buffer_size=abc", "an integer >= 1"),
    ("er", "buffer_size=0", "an integer >= 1"),
    ("er", "replay_batch_size=0", "an integer >= 1 or none"),
    ("finetune", "epochs=0", "an integer >= 1"),
    ("finetune", "epochs=true", "an integer >= 1"),
    ("finetune", "batch_size=1", "an integer >= 2"),
    ("finetune", "width=2.5", "an integer >= 1"),
    ("finetune", "lr=0", "a number > 0"),
    ("finetune", "lr=-1e-3", "a number > 0"),
    ("finetune", "lr=nan", "a number > 0"),
    ("finetune", "loss=hinge", "one of mse-softmax, ce"),
    ("finetune", "progress=maybe", "true or false"),
    ("finetune", "device=gpu", "a torch device"),
    ("joint", "from_scratch=2", "true or false"),
    ("gr", "gen_iters=0", "an integer >= 1"),
    ("gr", "gen_lr=inf", "a number > 0"),
    ("gr", "latent_dim=-1", "an integer >= 1"),
    ("gr", "hidden=0,64", "a list of integers >= 1"),
    ("gr-distill", "gen_batch_size=0", "an integer >= 1"),
    ("binplay", "n_bits=8", "an integer >= 16"),
    ("binplay", "task_bits=100", "an integer in [1, 62]"),
    ("binplay", "decoder_new_fraction=1.5", "a number in (0, 1] or none"),
    ("binplay", "decoder_lr_decay=1.5", "a number in (0, 1]"),
    ("binplay", "assignment_weight=-1", "a number >= 0"),
    ("binplay", "ae_epochs=-1", "an integer >= 0"),
    ("binplay", "classifier_batch_size=1", "an integer >= 2"),
    ("binplay", "decoder_init=random", "one of fresh, previous, autoencoder"),
    ("binplay", "replay_per_task=0", "an integer >= 1 or none"),
    ("binplay", "warmup_epochs=50", "an integer <= ae_epochs (10)"),
])
def test_bad_set_values_name_the_key_the_value_and_what_is_allowed(method, pair, allowed):
    for parse in (False, True):  # as the CLI passes them (the typed text), and JSON-parsed
        with pytest.raises(ConfigError) as info:
            recipe.learner_settings(method, "smoke", recipe.parse_overrides([pair], parse=parse))
        message = str(info.value)
        if parse:  # the value as JSON read it (e.g. -0.001 for -1e-3)
            assert message.startswith(f"--set {pair.split('=')[0]}=") and f": must be {allowed}" in message
        else:
            assert message.startswith(f"--set {pair}: must be {allowed}")


def test_cli_bad_set_value_is_one_line_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    for pair, allowed in (("buffer_size=1.5", "an integer >= 1"), ("buffer_size=abc", "an integer >= 1"),
                          ("epochs=0", "an integer >= 1")):
        code, err = cli(capsys, "er", "--scenario", SCENARIO, "--out", str(out), "--set", pair)
        assert (code, err) == (2, f"genrep: error: --set {pair}: must be {allowed}\n")
    code, err = cli(capsys, "er", "--scenario", SCENARIO, "--out", str(out), "--resume", "--set", "epochs=0")
    assert (code, err) == (2, "genrep: error: --set epochs=0: must be an integer >= 1\n")
    assert not out.exists()


def test_unknown_set_key_names_the_allowed_keys(capsys, tmp_path):
    with pytest.raises(ConfigError, match=r"--set buffer_size=3: unknown setting of finetune; valid: classifier, "
                                          r"epochs, batch_size, lr, loss, width, iterations, active_classes, "
                                          r"reset_optimizer, device, progress$"):
        recipe.learner_settings("finetune", "smoke", {"buffer_size": 3})
    code, err = cli(capsys, "binplay", "--scenario", SCENARIO, "--out", str(tmp_path / "x"), "--set", "epoch=3")
    assert code == 2 and "--set epoch=3: unknown setting of binplay; valid: n_bits, task_bits" in err
    with pytest.raises(ConfigError, match="--seeds"):
        recipe.learner_settings("er", "smoke", {"seed": 1})


def test_set_values_are_coerced_to_the_field_types():
    for parse in (False, True):
        er = recipe.learner_settings("er", "smoke", recipe.parse_overrides(
            ["buffer_size=50", "replay_batch_size=none", "lr=1e-3", "epochs=2.0", "progress=yes", "width=1"],
            parse=parse))
        assert (er.buffer_size, er.replay_batch_size, er.lr, er.epochs, er.progress) == (50, None, 1e-3, 2, True)
        assert type(er.epochs) is int and type(er.lr) is float
        gr = recipe.learner_settings("gr", "smoke", recipe.parse_overrides(["hidden=[64, 32]", "gen_lr=1"],
                                                                           parse=parse))
        assert gr.hidden == (64, 32) and gr.gen_lr == 1.0 and type(gr.gen_lr) is float and gr.gen_iters == 100
        binplay = recipe.learner_settings("binplay", "cpu", recipe.parse_overrides(
            ["straight_through=false", "decoder_new_fraction=null", "decoder_init=previous"], parse=parse))
        assert (binplay.straight_through, binplay.decoder_new_fraction, binplay.decoder_init) == (False, None,
                                                                                                 "previous")
        assert binplay.width == 4  # the cpu scale's value, under the --set ones
    assert recipe.learner_settings("gr", "smoke", {"hidden": "64,32"}).hidden == (64, 32)
    assert recipe.learner_settings("gr", "smoke", {"hidden": 64}).hidden == (64,)
    assert recipe.learner_settings("gr-distill", "smoke", {}).distill


def test_python_api_settings_are_checked_in_post_init():
    cases = [(lambda: ERSettings(buffer_size=1.5), "buffer_size", "need buffer_size >= 1 (an integer), got 1.5"),
             (lambda: ExperienceReplay(buffer_size=0), "buffer_size", "need buffer_size >= 1"),
             (lambda: FineTune(epochs=0), "epochs", "need epochs >= 1 (an integer), got 0"),
             (lambda: GRSettings(gen_lr=0.0), "gen_lr", "need gen_lr > 0 (a number), got 0.0"),
             (lambda: GRSettings(hidden=(64, 0)), "hidden", "hidden must be a list of integers >= 1"),
             (lambda: BinPlaySettings(decoder_lr_decay=2.0), "decoder_lr_decay", "need decoder_lr_decay in (0, 1]"),
             (lambda: BinPlaySettings(soft_targets="yes"), "soft_targets", "soft_targets must be true or false")]
    for make, key, message in cases:
        with pytest.raises(SettingError) as info:
            make()
        assert info.value.key == key and message in str(info.value) and isinstance(info.value, GenrepError)
    assert GRSettings(hidden=[8, 4]).hidden == (8, 4) and ERSettings(lr=1).lr == 1.0


# -- 3. the wall time of a resumed run adds up its segments --------------------------------------------------


def test_run_time_in_summary_adds_up_the_resumed_segments(tmp_path, monkeypatch):
    interrupt_at(monkeypatch, 2, sleep=1.0)  # the first segment: 2 tasks of more than a second each
    with pytest.raises(RuntimeError, match="simulated interruption"):
        run(tmp_path)
    monkeypatch.undo()
    first = json.loads((tmp_path / "seed0" / "results.json").read_text())["run_time_s"]
    assert first >= 2.0

    summary = run(tmp_path, resume=True)
    row = summary["per_seed"][0]
    results = json.loads((tmp_path / "seed0" / "results.json").read_text())
    assert row["wall_time_s"] >= 2.0 and row["wall_time_s"] == pytest.approx(sum(results["wall_times"]))
    assert row["run_s"] == round(results["run_time_s"], 1)
    assert results["run_time_s"] >= first + sum(results["wall_times"][2:]) + sum(results["eval_times"][2:])
    assert row["run_s"] >= round(first, 1)

    again = run(tmp_path, resume=True)  # a finished run: nothing is added
    assert again["per_seed"][0]["run_s"] == row["run_s"]
    assert json.loads((tmp_path / "summary.json").read_text())["per_seed"][0]["run_s"] == row["run_s"]
