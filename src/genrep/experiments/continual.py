"""`genrep continual METHOD --scenario NAME --scale S --seeds N`: one continual learner on one
scenario over several seeds, with the per-seed task × time matrices and a mean ± SEM summary.

The methods, their settings classes and their settings per scale are `genrep.continual.registry`'s specs
(`get_learner(METHOD)`); this module resolves a spec's settings at a scale and protocol and runs it.

Scales (`TRAIN_LIMIT`, `CLASSIFIER_BY_SCALE` and each spec's `scales`; `--set key=value` overrides any setting):
- `smoke`: 300 training images per task, the reference classifier schedule, tiny generators — seconds per
  run, for tests and CI (use `--scenario split-digits` for the fully offline 8×8 version);
- `cpu`: the full training split, the reference classifier schedule (15 epochs, batch 120, Adam
  2e-3: cheap on a CPU), GR's reference VAE budget, and BinPlay (its spec's `scales["cpu"]`) with a 4-filter
  autoencoder, 3 autoencoder and 15 decoder epochs per task instead of 20 and 200, and the task-t
  decoder warm-started from the autoencoder's decoder (lr 5e-3) instead of a fresh one, the new task
  half of its replay batches: with a fresh decoder, 5 epochs regenerate one blurred class per task
  (benchmarks/RESULTS.md);
- `paper`: the published settings (METHODS.md §4; `BinPlaySettings` defaults) with the reference's
  LeNetG base classifier for every method.

The base classifier is chosen in one place, `CLASSIFIER_BY_SCALE`, and is the same for every method of a
scale that has a `classifier` setting: "lenetg" (the BinPlay reference's LeNetG, 0.85 M parameters) at `paper`,
"lenet5" (ours, 108 k) at `smoke` and `cpu`, where LeNetG's ≈ 6× longer training steps would make a `cpu` run
several times longer (benchmarks/RESULTS.md, "LeNetG"); `--set classifier=lenetg` picks it at any scale.

Protocols (`--protocol`, `PROTOCOLS`, applied on top of the scale's settings and before `--set`):
- `shared` (default): Table 8.4.1's shared-classifier protocol above, the same for every method (the base
  classifier of the scale, 15 epochs of batch 120, Adam 2e-3 fresh every task, MSE on the softmax, all
  output units in the loss);
- `van-de-ven`: the protocol of van de Ven & Tolias (2019) as their code runs it (GMvandeVen/continual-learning,
  branch `preprints` a02db26, which produced the paper's split-MNIST figures): the "mlp" classifier
  784-400-400-K, 2000 iterations of batch 128 per task (full batches, reshuffled when a pass runs out),
  Adam 1e-3 kept across tasks (`reset_optimizer=False`, for the classifier and GR's generator alike),
  cross-entropy, class-IL "active classes" = the classes seen so far including the current task for new
  and replayed rows (`active_classes="seen"`); GR's VAE 784-400-400-z100 trained 2000 iterations of batch 128
  with Adam 1e-3; `gr-distill` with temperature T = 2 (× T²). At `smoke` the iterations drop to 100
  (`SMOKE_PROTOCOL`). Replay weighting (1/t for the new task) and replay targets (argmax or softmax(z/T) of the
  frozen previous solver over the previous tasks' classes) are genrep's GR in either protocol. A method takes
  the settings of the protocol's groups that its spec names (`LearnerSpec.groups`: "classifier" for finetune,
  er, joint, gr and gr-distill, "gr" for gr and gr-distill, "gr-distill" for gr-distill alone), and a protocol
  other than `shared` applies only to the methods with one of its groups (`protocol_methods`): for finetune /
  er / joint it is the same classifier schedule, not a reproduction of their code's baselines, and binplay
  refuses it (a ConfigError).
  Known differences from their code: genrep's MLP VAE (`models.networks.mlp`) uses LeakyReLU(0.2) where
  theirs uses ReLU, and a log σ² head with a bias; its loss is the negative ELBO per image, theirs per pixel
  (÷ 784: the same Adam steps up to Adam's ε); and the generator trains after the classifier on its own
  batches instead of in the same loop on the same batches (the same distribution of batches).

A run folder keeps `config.json` (method, scenario, scale, protocol and every learner setting but the seed); a
resumed run, or another seed added to the folder, must have the same ones (`check_run_config`), and
every seed's checkpoint stores its settings too (`run_scenario` refuses to resume with others).
`--set` values are converted to the settings field's type and checked by the settings dataclass
(`learner_settings`): a wrong type, a value out of range or an unknown key is a one-line ConfigError.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from genrep.continual import distributed
from genrep.continual.registry import get_learner, learner_names
from genrep.errors import CheckpointError, ConfigError, RunExistsError, one_line

SCALES = ("smoke", "cpu", "paper")

# the base classifier of every method with a `classifier` setting, per scale
CLASSIFIER_BY_SCALE = {"smoke": "lenet5", "cpu": "lenet5", "paper": "lenetg"}
TRAIN_LIMIT = {"smoke": 300, "cpu": None, "paper": None}
# generative learners (thesis ch.9): training images per task, and the evaluator's options per scale
# (`GenerativeEvaluator`: real images per task and as many samples; PRD runs). `cpu`: 2000 images per task of
# the published FC VAE with fewer epochs (the registry's `scales`), scored on up to 1000 test images per task
GENERATOR_TRAIN_LIMIT = {"smoke": 200, "cpu": 2000, "paper": None}
GENERATOR_EVALUATION: dict[str, dict[str, Any]] = {
    "smoke": {"max_samples": 200, "prd_runs": 2}, "cpu": {"max_samples": 1000}, "paper": {}}
# the FID features the thesis used per data set at `paper` (§9.4.2: LeNet for the simpler data sets, Inception
# for FashionMNIST, the data-set sequences and CelebA, REFERENCE_CODE.md §0.2); `smoke` and `cpu` use the cached
# LeNet of the data set where there is one ("auto")
PAPER_FEATURES = {"mnist": "lenet", "omniglot": "lenet"}
# training protocols (`--protocol`, see the module docstring): settings per learner group, the one place naming
# them; a method takes those of the groups its spec names (`LearnerSpec.groups`)
PROTOCOLS: dict[str, dict[str, dict[str, Any]]] = {
    "shared": {},
    "van-de-ven": {
        "classifier": {"classifier": "mlp", "iterations": 2000, "batch_size": 128, "lr": 1e-3, "loss": "ce",
                       "active_classes": "seen", "reset_optimizer": False},
        "gr": {"latent_dim": 100, "hidden": (400, 400), "gen_iters": 2000, "gen_batch_size": 128, "gen_lr": 1e-3},
        "gr-distill": {"distill_temperature": 2.0},
    },
}
# the protocol's budget at `smoke`, per learner group
SMOKE_PROTOCOL = {"van-de-ven": {"classifier": {"iterations": 100}, "gr": {"gen_iters": 100}}}
CONFIG = "config.json"  # the run folder's record of what defines the run


def check_choice(kind: str, value: str, choices) -> str:
    if value not in choices:
        raise ConfigError(f"unknown {kind} {value!r}; valid: {', '.join(choices)}")
    return value


def protocol_methods(protocol: str) -> tuple[str, ...]:
    """The methods that take `protocol`: all for one without groups (`shared`), else those whose spec names
    one of its groups."""
    groups = PROTOCOLS[protocol]
    return tuple(name for name in learner_names() if not groups or set(get_learner(name).groups) & set(groups))


def check_protocol(method: str, protocol: str) -> str:
    """`protocol` if it is a key of `PROTOCOLS` that `method` takes; ConfigError otherwise."""
    check_choice("protocol", protocol, PROTOCOLS)
    if method not in protocol_methods(protocol):
        raise ConfigError(f"--protocol {protocol} is for {', '.join(protocol_methods(protocol))}, not {method}; "
                          f"use --protocol shared")
    return protocol


def method_settings(method: str, scale: str, protocol: str = "shared") -> dict[str, Any]:
    """The settings overrides of `method` at `scale` under `protocol` (on top of its spec's `defaults`): the
    scale's base classifier (for a method with a `classifier` setting), the spec's `scales[scale]`, then the
    protocol's settings of the spec's groups (`PROTOCOLS`), then the protocol's `smoke` budget of those groups
    (`SMOKE_PROTOCOL`)."""
    spec = get_learner(method)
    check_choice("scale", scale, SCALES)
    check_protocol(method, protocol)
    has_classifier = "classifier" in {field.name for field in dataclasses.fields(spec.settings)}
    settings = {"classifier": CLASSIFIER_BY_SCALE[scale]} if has_classifier else {}
    settings.update(spec.scales.get(scale, {}))
    for presets in (PROTOCOLS[protocol], SMOKE_PROTOCOL.get(protocol, {}) if scale == "smoke" else {}):
        for group in spec.groups:
            settings.update(presets.get(group, {}))
    return settings


def settings_class(method: str) -> type:
    """The settings dataclass of `method`'s learner."""
    return get_learner(method).settings


def _shown(value: Any) -> str:
    """A --set value as the user typed it (strings unquoted)."""
    return value if isinstance(value, str) else json.dumps(value)


def _make_settings(method: str, base: dict[str, Any], overrides: dict[str, Any] | None, seed: int):
    """`settings_class(method)` with `base` (recipe values), then `overrides` (--set: unknown keys
    refused, values coerced to the field types), then `seed`; errors name the --set key and value."""
    from genrep.continual.learner import SettingError, coerce_setting

    cls = settings_class(method)
    overrides = dict(overrides or {})
    if "seed" in overrides:
        raise ConfigError("set seeds with --seeds, not --set seed=...")
    allowed = [f.name for f in dataclasses.fields(cls) if f.name != "seed"]
    for key in overrides:
        if key not in allowed:
            raise ConfigError(f"--set {key}={_shown(overrides[key])}: unknown setting of {method}; valid: "
                              f"{', '.join(allowed)}")
    coerced = {key: coerce_setting(cls, key, value) for key, value in overrides.items()}
    try:
        return cls(**{**get_learner(method).defaults, **base, **coerced, "seed": seed})
    except SettingError as err:
        if err.key in overrides:
            raise ConfigError(f"--set {err.key}={_shown(overrides[err.key])}: must be {err.allowed}") from None
        raise


def learner_settings(method: str, scale: str = "smoke", overrides: dict[str, Any] | None = None, *,
                     seed: int = 0, protocol: str = "shared"):
    """The settings dataclass a `run_method` learner gets: the learner's defaults, `method_settings(method,
    scale, protocol)`, `overrides` (the `--set` values, converted to the field types and checked), and `seed`."""
    return _make_settings(method, method_settings(method, scale, protocol), overrides, seed)


def learner_from_settings(method: str, settings):
    """A fresh learner of `method` with the settings dataclass `settings`."""
    return get_learner(method).factory(settings)


def build_learner(method: str, *, seed: int, overrides: dict[str, Any] | None = None):
    """A fresh learner of `method` with `overrides` (settings field → value, checked as `--set` values)
    on the learner's defaults, and `seed`."""
    return learner_from_settings(method, _make_settings(method, {}, overrides, seed))


def parse_overrides(pairs: list[str] | None, *, parse: bool = True) -> dict[str, Any]:
    """`key=value` strings → dict; values parsed as JSON where possible (numbers, true/false, lists), or
    kept as the typed strings with `parse=False` (the CLI: `learner_settings` converts them to the
    field types and its errors quote them as typed)."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set needs key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        if not parse:
            out[key.strip()] = raw
            continue
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def mean_sem(values: list[float]) -> tuple[float, float]:
    """(mean, standard error of the mean; 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def seed_list(seeds: int | str | list[int]) -> list[int]:
    """`--seeds`: a count N (seeds 0 … N−1) or a comma-separated list of seeds ("1,2", e.g. to run the
    seeds of one cell in parallel processes into the same folder; "2," is seed 2 alone)."""
    if isinstance(seeds, str):
        try:
            seeds = [int(part) for part in seeds.split(",") if part.strip()] if "," in seeds else int(seeds)
        except ValueError:
            raise ConfigError(f"--seeds takes a count or a comma-separated list of seeds, got {seeds!r}") from None
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {seeds}")
        return list(range(seeds))
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds list must hold distinct seeds >= 0, got {seeds}")
    return list(seeds)


def train_limit(method: str, scale: str) -> int | None:
    """Training images per task of `method` at `scale` (`TRAIN_LIMIT`, `GENERATOR_TRAIN_LIMIT` for generators)."""
    return (GENERATOR_TRAIN_LIMIT if get_learner(method).kind == "generator" else TRAIN_LIMIT)[scale]


def evaluation_options(method: str, scale: str) -> dict[str, Any]:
    """The `GenerativeEvaluator` options of a generative `method` at `scale` ({} for classifiers)."""
    if get_learner(method).kind != "generator":
        return {}
    return {"features": "auto" if scale != "paper" else "thesis", **GENERATOR_EVALUATION[scale]}


def generative_evaluator(options: dict[str, Any], scenario, seed: int):
    """The evaluator of a generative run: `options` (`evaluation_options`), features "thesis" resolved per the
    scenario's data set (`PAPER_FEATURES`, Inception otherwise)."""
    from genrep.continual.generative_eval import GenerativeEvaluator

    options = dict(options)
    if options.get("features") == "thesis":
        names = {task.test.name.lower() for task in scenario}
        options["features"] = PAPER_FEATURES.get(names.pop(), "inception") if len(names) == 1 else "inception"
    return GenerativeEvaluator(seed=seed, **options)


def check_scenario_options(scenario: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` if the builder of `scenario` takes them (`--scenario-option`, e.g. alpha=100 for a Dirichlet
    split); a one-line ConfigError naming the valid ones otherwise. seed and limit are the recipe's."""
    import inspect

    from genrep.continual.scenarios import SCENARIOS

    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}; valid names: {', '.join(SCENARIOS)}")
    builder, fixed = SCENARIOS[scenario]
    valid = [p for p in inspect.signature(builder).parameters
             if p not in ("dataset", "datasets", "seed", "limit", *fixed)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"--scenario-option {unknown[0]}: {scenario} takes {', '.join(valid) or 'no options'}")
    return dict(options)


def run_record(method: str, scenario: str, scale: str, settings, protocol: str = "shared",
               scenario_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What defines a run folder (config.json): method, scenario (and its `--scenario-option`s), scale, its
    training-set limit, the protocol, the evaluation options of a generative method, and every learner setting
    but the seed (`settings`: the settings dataclass)."""
    from genrep.continual.learner import settings_dict

    fields = {k: v for k, v in settings_dict(settings).items() if k != "seed"}
    record = {"method": method, "scenario": scenario, "scale": scale, "train_limit": train_limit(method, scale),
              "protocol": protocol, "settings": fields}
    if scenario_options:
        record["scenario_options"] = dict(scenario_options)
    processes = distributed.world()[1]
    if processes > 1:  # data parallel changes the result (genrep.continual.distributed): a resume must match
        record["processes"] = processes
    evaluation = evaluation_options(method, scale)
    return {**record, "evaluation": evaluation} if evaluation else record


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in record.items() if k != "settings"}, **record.get("settings", {})}


def _restoring_flags(stored: dict[str, Any], keys: list[str]) -> str:
    """The command-line options that restore the stored values of `keys`."""
    flags = []
    for key in keys:
        value = stored.get(key)
        if key == "method":
            flags.append(f"the method {value}")
        elif key in ("scenario", "scale", "protocol"):
            flags.append(f"--{key} {value}")
        elif key == "processes":
            flags.append(f"--devices {value or 1}")
        elif key == "scenario_options":
            flags += [f"--scenario-option {k}={_shown(v)}" for k, v in (value or {}).items()]
        elif key != "train_limit" and key in stored:
            flags.append(f"--set {key}={_shown(value)}")
    return " ".join(flags)


def check_run_config(out: str | Path, record: dict[str, Any], *, resume: bool) -> None:
    """Compare `record` (`run_record`) with out/config.json, if there is one: any difference (but the
    runner's `RESUMABLE_SETTINGS`) raises ConfigError on `resume`, and RunExistsError otherwise (adding seeds
    to a folder needs the same settings), naming each differing key as "key (stored → new)"."""
    from genrep.continual.learner import with_added_settings
    from genrep.continual.runner import RESUMABLE_SETTINGS

    path = Path(out) / CONFIG
    if not path.is_file():
        return
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} is unreadable ({one_line(err)}); fix or delete it, or pass --overwrite") \
            from None
    new, unset = _flat(record), "<unset>"
    old = with_added_settings(_flat(stored), new)
    run_keys = ("method", "scenario", "scenario_options", "scale", "protocol", "train_limit")
    keys = [*run_keys, *sorted((old.keys() | new.keys()) - set(run_keys))]
    differing = [k for k in keys if k not in RESUMABLE_SETTINGS and old.get(k, unset) != new.get(k, unset)]
    if not differing:
        return
    if "method" in differing:  # another learner: its settings differ by nature
        differing = ["method"]
    elif "protocol" in differing:  # another protocol: its settings differ by nature
        differing = [k for k in differing if k in ("scenario", "scale", "protocol")]
    elif "scale" in differing:  # the scale sets the training-set limit
        differing = [k for k in differing if k != "train_limit"]
    changes = "; ".join(f"{k} ({old.get(k, unset)!r} → {new.get(k, unset)!r})" for k in differing)
    restore = _restoring_flags(old, differing)
    hint = f" ({restore})" if restore else ""
    if resume:
        raise ConfigError(f"cannot resume {out}: the settings differ in {changes}; resume with the stored "
                          f"values{hint} or start a new run (another --out, or --overwrite)")
    raise RunExistsError(f"{out} holds a continual run with other settings: {changes}; use another --out, "
                         f"--overwrite to replace it, or the stored values{hint}")


def check_resumable(out: str | Path) -> None:
    """`--resume` needs a run to continue: `out` must exist and hold config.json or a seed's checkpoint."""
    out = Path(out)
    if not out.is_dir():
        raise CheckpointError(f"cannot resume: {out} does not exist; drop --resume to start a new run there")
    if not (out / CONFIG).is_file() and not any(out.glob("seed*/checkpoint.pt")):
        raise CheckpointError(f"cannot resume: {out} holds no continual run (no {CONFIG}, no seed*/checkpoint.pt); "
                              "drop --resume to start a new run there")


def run_method(method: str, scenario: str, *, scale: str = "smoke", seeds: int | str | list[int] = 1,
               out: str | Path, overrides: dict[str, Any] | None = None, resume: bool = False, overwrite: bool = False,
               progress: bool = True, log=print, protocol: str = "shared",
               scenario_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run `method` on `scenario` (built with `scenario_options`, `check_scenario_options`) for
    `seed_list(seeds)` into out/seed{s} (each a `run_scenario` folder: checkpoint, results.json, heatmap.png, curves.png, and the spec's `pictures`, e.g. replay.png
    for generative replay) and write out/config.json (`run_record`) and out/summary.json with the average of
    the spec's `metric` after the last task (mean ± SEM over seeds: `average_accuracy_percent` for accuracy,
    else `average_<metric>`), forgetting, memory and wall time. Memory is in MiB (2^20 bytes), the unit of
    Table 8.4.2, of what the learner keeps to replay (`ContinualLearner.memory_bytes`), taken from its final
    state. Finished seeds are reused with `resume`
    (a seed without a checkpoint starts; the CLI first checks `check_resumable`); settings that differ
    from the folder's config.json are refused (`check_run_config`). Per seed, `wall_time_s` is the
    training time of all tasks and `run_s` the time in `run_scenario`, both summed over resumed segments.
    `protocol`: a key of `PROTOCOLS` (module docstring), recorded in config.json and every checkpoint."""
    from genrep.continual.runner import check_out_dir, run_scenario
    from genrep.continual.scenarios import build_scenario
    from genrep.experiments.train import out_of_memory_as_error
    from genrep.runs import write_json

    spec = get_learner(method)
    check_choice("scale", scale, SCALES)
    seeds = seed_list(seeds)
    base = learner_settings(method, scale, overrides, protocol=protocol)  # checks every --set value before any work
    settings = {**method_settings(method, scale, protocol),
                **{k: getattr(base, k) for k in (overrides or {})}}
    scenario_options = check_scenario_options(scenario, scenario_options or {})
    record = run_record(method, scenario, scale, base, protocol, scenario_options)
    out = Path(out)
    if resume and overwrite:
        raise ConfigError("--overwrite and --resume exclude each other")
    if not overwrite:
        check_run_config(out, record, resume=resume)
        if not resume:
            for seed in seeds:  # refuse before config.json is written
                check_out_dir(out / f"seed{seed}", resume=False, overwrite=False)
    new_folders = [p for p in (out, *(out / f"seed{seed}" for seed in seeds)) if not p.exists()]
    distributed.barrier()  # every rank has checked the folder before rank 0 writes to it
    main_rank = distributed.is_main()
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
        if overwrite or not (out / CONFIG).is_file():
            write_json(out / CONFIG, record)
    run_config = {k: v for k, v in record.items() if k != "settings"}
    per_seed = []
    for seed in seeds:
        try:
            with out_of_memory_as_error(f"running {method} on {scenario} (seed {seed})",
                                        _memory_fix(method, scale, base, protocol)):
                scenario_obj = build_scenario(scenario, seed=seed, limit=train_limit(method, scale),
                                              **scenario_options)
                learner = spec.factory(dataclasses.replace(base, seed=seed))
                evaluation = ({"evaluate": generative_evaluator(record["evaluation"], scenario_obj, seed)}
                              if spec.kind == "generator" else {})
                result = run_scenario(learner, scenario_obj, out / f"seed{seed}", resume=resume, overwrite=overwrite,
                                      progress=progress, log=log, run_config=run_config, **evaluation)
                if spec.pictures is not None and main_rank:
                    spec.pictures(learner, scenario_obj, out / f"seed{seed}")
        except BaseException:
            if main_rank:
                discard_unstarted(new_folders)
            raise
        metric = result.main_metric if spec.kind == "generator" else spec.metric  # fid, or wasserstein
        summary = result.summary[metric]
        generative = {"backward_transfer": summary["backward_transfer"],
                      "averages": {m: s["average"] for m, s in result.summary.items()}} if evaluation else {}
        per_seed.append({"seed": seed, f"average_{metric}": summary["average"],
                         "forgetting": summary["forgetting"], **generative,
                         # from the learner (final state, also when a finished run is reused), so that a run
                         # stored before the memory convention of Table 8.4.2 changed reports the current one
                         "memory_mb": learner.memory_bytes() / 2**20, "wall_time_s": sum(result.wall_times),
                         "run_s": round(result.run_time_s, 1),
                         "final_row": [float(v) for v in result.matrices[metric][-1]]})
    if metric == "accuracy":  # in percent
        key, average = "average_accuracy_percent", mean_sem([100 * r["average_accuracy"] for r in per_seed])
    else:
        key, average = f"average_{metric}", mean_sem([r[f"average_{metric}"] for r in per_seed])
    every_metric = {}
    if spec.kind == "generator":  # every metric's average after the last task (FID, precision, recall)
        average_of = {m: mean_sem([r["averages"][m] for r in per_seed]) for m in per_seed[0]["averages"]}
        every_metric = {"metric": metric, "averages": {m: {"mean": v[0], "sem": v[1]} for m, v in average_of.items()}}
    options = {"scenario_options": scenario_options} if scenario_options else {}
    summary = {"method": method, "scenario": scenario, **options, "scale": scale, "protocol": protocol, "seeds": seeds,
               "settings": settings, **every_metric, key: {"mean": average[0], "sem": average[1]},
               "memory_mb": max(r["memory_mb"] for r in per_seed),
               "wall_time_s": {"mean": sum(r["wall_time_s"] for r in per_seed) / len(seeds),
                               "max": max(r["wall_time_s"] for r in per_seed)},
               "per_seed": per_seed}
    if main_rank:
        write_json(out / "summary.json", summary)
    return summary


def discard_unstarted(new_folders: list[Path]) -> None:
    """After a failed run: remove the folders this command created (out first, then seed folders)
    that hold no continual checkpoint, so the corrected command can start again without
    --overwrite. A folder with a checkpoint in it, or one that existed before, is kept."""
    import shutil

    from genrep.continual.runner import CHECKPOINT

    for folder in new_folders:
        if folder.is_dir() and not any(folder.rglob(CHECKPOINT)):
            shutil.rmtree(folder, ignore_errors=True)


def _memory_fix(method: str, scale: str, settings, protocol: str = "shared") -> str:
    """What to lower when `method` ran out of memory: the numeric settings above the recipe's values
    at `scale` (largest ratio first), as "--set latent_dim=100000000 (smoke recipe 100)"."""
    recipe = {**dataclasses.asdict(type(settings)()), **method_settings(method, scale, protocol)}

    def size(value):
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
            return max(value)
        return None

    grown = []
    for field in dataclasses.fields(settings):
        new, old = size(getattr(settings, field.name)), size(recipe.get(field.name))
        if field.name != "seed" and new is not None and old is not None and new > old:
            grown.append((new / old if old else math.inf,
                          f"--set {field.name}={_shown(getattr(settings, field.name))} ({scale} recipe {old})"))
    grown.sort(key=lambda item: -item[0])
    if grown:
        return "lower " + " / ".join(text for _, text in grown)
    return "lower batch_size or the model sizes with --set, or use a smaller --scale"


def describe(summary: dict[str, Any]) -> str:
    """One line: method, scenario, the average of its metric(s) (mean ± SEM), memory, wall time."""
    metric = summary.get("metric", get_learner(summary["method"]).metric)
    if metric == "accuracy":
        acc = summary["average_accuracy_percent"]
        average = f"average accuracy {acc['mean']:.1f} ± {acc['sem']:.1f} % (SEM)"
    else:
        values = summary.get("averages") or {metric: summary[f"average_{metric}"]}
        average = "average " + ", ".join(f"{m} {v['mean']:.3g} ± {v['sem']:.2g}" for m, v in values.items()) + " (SEM)"
    protocol = summary.get("protocol", "shared")
    shown = "" if protocol == "shared" else f", protocol {protocol}"
    return (f"{summary['method']} on {summary['scenario']} ({summary['scale']}{shown}, "
            f"{len(summary['seeds'])} seed(s)): {average}, memory {summary['memory_mb']:.2f} MB, "
            f"{summary['wall_time_s']['mean']:.0f} s per run")


def settings_help() -> str:
    """The settings fields of every method (methods sharing a settings class together), for `--help`."""
    by_class: dict[type, list[str]] = {}
    for name in learner_names():
        by_class.setdefault(get_learner(name).settings, []).append(name)
    return "; ".join(f"{' / '.join(names)}: {', '.join(f.name for f in dataclasses.fields(cls) if f.name != 'seed')}"
                     for cls, names in by_class.items())
