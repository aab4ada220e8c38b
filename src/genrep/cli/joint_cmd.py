"""`genrep joint APPLICATION ...`: the applications of joint diffusion models (thesis ch. 6):
semi-supervised learning (Sec. 6.6.4) and domain adaptation (Sec. 6.6.5) as recipes that train
their runs, and, for a trained joint-ddgm run, visual counterfactual explanations (Sec. 6.6.6) and
conditional sampling analysed over the step size α (Fig. 6.6.1, 6.6.3)."""

from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    joint = commands.add_parser("joint", help="joint diffusion models: counterfactual explanations, conditional "
                                              "sampling over the step size α",
                                description="Applications of a trained joint diffusion model (a joint-ddgm run). "
                                            "Run `genrep joint APPLICATION --help`.")
    apps = joint.add_subparsers(dest="application", metavar="APPLICATION")
    apps.required = True
    _register_experiments(apps)

    cf = apps.add_parser(
        "counterfactual", help="visual counterfactual explanations (Sec. 6.6.6, Fig. 6.6.4)",
        description="Thesis Sec. 6.6.6 / Fig. 6.6.4: pick N images of a split (seeded, class-balanced where "
                    "possible), noise each to FRACTION of the forward diffusion (the step of the run's sampling "
                    "process closest to FRACTION·(T-1)), run conditional sampling by optimised representations "
                    "(Alg. 1) from there toward the target class and show original / noised / counterfactual / "
                    "difference. Writes OUT/counterfactuals.png and OUT/counterfactuals.json (per image: label, "
                    "target, predicted class and p(target) before and after; the share of images whose "
                    "prediction flipped to the target).")
    cf.add_argument("run", metavar="RUN", help="a trained joint-ddgm run folder")
    cf.add_argument("--out", required=True, metavar="DIR", help="output folder")
    cf.add_argument("--n", type=int, default=8, help="images (default 8)")
    cf.add_argument("--fraction", type=float, default=0.2,
                    help="share of the forward diffusion to noise to, in (0, 1] (default 0.2, the thesis' 20%%)")
    cf.add_argument("--alpha", type=float, default=None,
                    help="step size α of the optimised representations (default the run's model.sampling_alpha)")
    cf.add_argument("--targets", default="other", metavar="other|CLASS",
                    help="other (default): the other class for two classes, else (y+1) mod K; or one class id "
                         "for every image")
    cf.add_argument("--split", default="test", help="split to take the images from (default test)")
    cf.add_argument("--seed", type=int, default=0, help="seed of the images picked and of the noise")
    _step_option(cf)
    cf.set_defaults(handler=counterfactual_cmd)

    sm = apps.add_parser(
        "sample", help="conditional sampling over the step size α: precision / recall / FID and the "
                       "classifier's decisions per step (Fig. 6.6.1, 6.6.3)",
        description="Thesis Fig. 6.6.1 / 6.6.3: for each α, N class-balanced conditional samples (optimised "
                    "representations, Alg. 1; the same seeded noise for every α) against N images of the run's "
                    "test split, PRD precision / recall (×100) and FID on the data set's LeNet (cached, else a "
                    "quick 1-epoch LeNet trained now; Inception for RGB data) → OUT/alpha_sweep.png and .json; "
                    "and the mean p(target class) at every sampling step, per class, for N_PER_CLASS samples per "
                    "class with their final images → OUT/decisions.png and .json.")
    sm.add_argument("run", metavar="RUN", help="a trained joint-ddgm run folder")
    sm.add_argument("--out", required=True, metavar="DIR", help="output folder")
    sm.add_argument("--alphas", default="0,10,100,250,1000", metavar="A1,A2,...",
                    help="step sizes α >= 0 (default 0,10,100,250,1000; the thesis' sweet spot is 100-250)")
    sm.add_argument("--n", type=int, default=500, help="samples per α for precision / recall / FID (default 500)")
    sm.add_argument("--n-per-class", type=int, default=8, help="samples per class for the decisions (default 8)")
    sm.add_argument("--seed", type=int, default=0, help="seed of the samples and of the real subset")
    sm.add_argument("--no-progress", action="store_true")
    _step_option(sm)
    sm.set_defaults(handler=sample_cmd)


def _step_option(parser) -> None:
    from genrep.diffusion.guidance import STEPS

    parser.add_argument("--step", choices=tuple(STEPS), default=None,
                        help="sign of the representation update: ascend-ce (Z + α∇CE, reference code and Alg. 1) or "
                             "descend-ce (Z − α∇CE, the thesis prose); default: the run's model.sampling_step")


def _with_step(model, step: str | None):
    """The loaded model with `--step` as its sampling sign (a sampling choice, not a trained property)."""
    if step is not None:
        model.config.sampling_step = step
    return model


def _load_joint(run: str):
    """(model, run config) of a joint diffusion run; ConfigError naming the model otherwise."""
    from genrep.errors import ConfigError, InputError
    from genrep.experiments.joint.counterfactual import require_joint
    from genrep.experiments.train import load_run_config, load_trained_model

    cfg = load_run_config(run)
    model = load_trained_model(run)
    try:
        require_joint(model)
    except InputError as err:
        raise ConfigError(f"{run} trains {cfg.model_name!r}: {err}; give a joint-ddgm run") from None
    return model, cfg


def _data(cfg, split: str):
    from genrep.errors import ConfigError
    from genrep.experiments.train import load_data

    data = load_data(cfg, split)
    if data.labels is None:
        raise ConfigError(f"{data.name}[{split}] has no class labels: counterfactuals need labelled images")
    return data


def counterfactual_cmd(args) -> int:
    import torch

    from genrep.errors import ConfigError
    from genrep.experiments.joint.counterfactual import (counterfactuals, default_targets, pick_balanced,
                                                         plot_counterfactuals, summary)
    from genrep.runs import write_json
    from genrep.utils.files import output_dir

    if args.n < 1:
        raise ConfigError(f"--n (images) must be a positive integer, got {args.n}")
    if not 0 < args.fraction <= 1:
        raise ConfigError(f"--fraction (share of the forward diffusion to noise to) must be in (0, 1], "
                          f"got {args.fraction:g}")
    if args.alpha is not None and not args.alpha >= 0:
        raise ConfigError(f"--alpha (step size) must be a number >= 0, got {args.alpha:g}")
    target_class = None
    if args.targets != "other":
        try:
            target_class = int(args.targets)
        except ValueError:
            raise ConfigError(f"--targets must be 'other' or a class id, got {args.targets!r}") from None
    model, cfg = _load_joint(args.run)
    model = _with_step(model, args.step)
    K = int(model.head_classes)
    if target_class is not None and not 0 <= target_class < K:
        raise ConfigError(f"--targets: class ids must lie in [0, {K - 1}] (the head's classes), got {target_class}")
    data = _data(cfg, args.split)
    if args.n > len(data):
        raise ConfigError(f"--n must be between 1 and {len(data)} (the size of {data.name}[{args.split}]), "
                          f"got {args.n}")
    out = output_dir(args.out)
    index = pick_balanced(data.labels, args.n, args.seed)
    x, labels = data.images[index], data.labels[index]
    targets = default_targets(labels, K) if target_class is None else torch.full_like(labels, target_class)
    generator = torch.Generator(device=model.device).manual_seed(args.seed)
    result = counterfactuals(model, x, targets, fraction=args.fraction, alpha=args.alpha, generator=generator)
    names = data.class_names
    picture = plot_counterfactuals(result, out / "counterfactuals.png", class_names=names,
                                   value_range=tuple(model.value_range), labels=labels)
    numbers = summary(result, labels, class_names=names)
    write_json(out / "counterfactuals.json",
               {"run": str(args.run), "model_name": cfg.model_name, "dataset": data.name, "split": args.split,
                "seed": args.seed, "targets": args.targets, "indices": index.tolist(), **numbers})
    print(f"{len(labels)} counterfactuals from t = {numbers['timestep']} ({100 * args.fraction:g}% of the forward "
          f"diffusion), α = {numbers['alpha']:g}: {100 * numbers['flipped_share']:.0f}% flipped to the target, "
          f"mean p(target) {numbers['mean_p_target_before']:.3f} → {numbers['mean_p_target_after']:.3f}")
    print(f"wrote {picture} and {out / 'counterfactuals.json'}")
    return 0


def _parse_alphas(text: str) -> list[float]:
    import math

    from genrep.errors import ConfigError

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise ConfigError(f"--alphas must be numbers >= 0 (comma-separated step sizes), got {text!r}")
    return values


def sample_cmd(args) -> int:
    from genrep.errors import ConfigError
    from genrep.experiments.evaluate import choose_real
    from genrep.experiments.joint import sampling_analysis as sa
    from genrep.runs import write_json
    from genrep.utils.files import output_dir

    alphas = _parse_alphas(args.alphas)
    if args.n < 10:
        raise ConfigError(f"--n (samples per α) must be >= 10 (PRD clusters 20 points), got {args.n}")
    if args.n_per_class < 1:
        raise ConfigError(f"--n-per-class must be a positive integer, got {args.n_per_class}")
    progress = not args.no_progress
    model, cfg = _load_joint(args.run)
    model = _with_step(model, args.step)
    test = _data(cfg, "test")
    if args.n > len(test):
        raise ConfigError(f"--n must be between 10 and {len(test)} (the size of {test.name}[test]), got {args.n}")
    out = output_dir(args.out)
    extractor, note = sa.run_feature_extractor(cfg.data.name, int(model.image_shape[0]), progress=progress)
    real = choose_real(test, args.n, args.seed).images
    f_real = extractor.features(sa.match_extractor(real, extractor), progress=progress)
    name = Path(args.run).name
    rows = sa.alpha_sweep(model, f_real, extractor, alphas=alphas, n=args.n, seed=args.seed, progress=progress)
    sweep_png = sa.plot_alpha_sweep(rows, out / "alpha_sweep.png",
                                    title=f"{name} on {test.name}: {args.n} conditional samples per α, {note}")
    info = {"run": str(args.run), "model_name": cfg.model_name, "dataset": test.name, "seed": args.seed}
    write_json(out / "alpha_sweep.json", {**info, "n": args.n, "features": note, "rows": rows})
    decisions = sa.decisions_over_steps(model, alphas=alphas, n_per_class=args.n_per_class, seed=args.seed,
                                        progress=progress)
    decisions_png = sa.plot_decisions(decisions, out / "decisions.png", class_names=test.class_names,
                                      title=f"{name}: classifier decisions during conditional sampling")
    write_json(out / "decisions.json", {**info, **sa.decisions_summary(decisions)})
    print(f"{'alpha':>8} {'precision':>10} {'recall':>8} {'FID':>9} {'final p(target)':>16}")
    for row, run in zip(rows, decisions["runs"]):
        print(f"{row['alpha']:>8g} {row['precision']:>10.2f} {row['recall']:>8.2f} {row['fid']:>9.3f} "
              f"{float(run['final_p_target'].mean()):>16.3f}")
    print(f"wrote {sweep_png}, {decisions_png} and their .json")
    return 0


def _register_experiments(apps) -> None:
    semi = apps.add_parser(
        "semisup", help="semi-supervised learning with a share of labels (Sec. 6.6.4, Table 6.6.5)",
        description="For each labelled share: the UNet-encoder classifier on the labelled images alone, a head on a "
                    "frozen DDGM's features, and the joint model (diffusion loss on every image, CE through the "
                    "labelled buffer). Writes OUT/semisup.json and OUT/semisupervised.png; runs in OUT/seed*/.")
    semi.add_argument("--dataset", default=None, help="data set (default: the scale's, fashion_mnist at cpu)")
    semi.add_argument("--shares", default="0.01,0.05,0.1,1", metavar="S1,S2,...",
                      help="labelled shares in (0, 1] (default 0.01,0.05,0.1,1)")
    semi.add_argument("--unbalanced", action="store_true",
                      help="draw the labelled images at random over the whole set (the reference code) instead of "
                           "per class")
    adapt = apps.add_parser(
        "adapt", help="domain adaptation by diffusion-only fine-tuning (Sec. 6.6.5, Table 6.6.6)",
        description="Joint model on the labelled SOURCE, fine-tuned with the diffusion loss only on the unlabelled "
                    "TARGET (head unchanged), against a classifier trained on the source and one on the target. "
                    "Writes OUT/adapt.json; runs in OUT/seed*/.")
    adapt.add_argument("--source", required=True, help="labelled source data set (e.g. mnist)")
    adapt.add_argument("--target", required=True, help="unlabelled target data set with the same classes (e.g. digits)")
    adapt.add_argument("--mode", default="sequential", choices=("sequential", "simultaneous"),
                       help="sequential (thesis: source, then target) or simultaneous (reference: one run on both)")
    adapt.add_argument("--adapt-steps", type=int, default=None, help="fine-tuning steps (default: the scale's)")
    for parser in (semi, adapt):
        parser.add_argument("--scale", default="smoke", help="smoke | cpu | paper (genrep.experiments.joint.settings)")
        parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (default 1)")
        parser.add_argument("--out", required=True, metavar="DIR", help="output folder (finished runs are reused)")
        parser.add_argument("--no-progress", action="store_true")
    semi.set_defaults(handler=semisup_cmd)
    adapt.set_defaults(handler=adapt_cmd)


def semisup_cmd(args) -> int:
    from genrep.errors import ConfigError
    from genrep.experiments.joint.semisupervised import LABELS, check_shares, plot_semisupervised, run_semisupervised
    from genrep.experiments.reproduce.common import check_inputs, mean_std
    from genrep.runs import write_json

    try:
        shares = check_shares(float(v) for v in args.shares.split(","))
    except ValueError:
        raise ConfigError(f"--shares must be numbers in (0, 1] separated by commas, got {args.shares!r}") from None
    datasets = [(args.dataset, {})] if args.dataset else []
    out = check_inputs(scale=args.scale, seeds=args.seeds, out=args.out, datasets=datasets)
    result = run_semisupervised(out, scale=args.scale, seeds=args.seeds, dataset=args.dataset, shares=shares,
                                balanced=not args.unbalanced, progress=not args.no_progress)
    write_json(out / "semisup.json", {"scale": args.scale, "seeds": list(range(args.seeds)), **result})
    picture = plot_semisupervised(result, out / "semisupervised.png")
    for method, label in LABELS.items():
        cells = [f"{key}: {mean_std(v)[0]:.2f}" for key, v in result["values"][method].items()]
        print(f"{label:<26} " + "  ".join(cells))
    print(f"wrote {out / 'semisup.json'} and {picture}")
    return 0


def adapt_cmd(args) -> int:
    from genrep.experiments.joint.adaptation import LABELS, run_adaptation
    from genrep.experiments.reproduce.common import check_inputs, mean_std
    from genrep.runs import write_json

    if args.adapt_steps is not None and args.adapt_steps < 1:
        from genrep.errors import ConfigError

        raise ConfigError(f"--adapt-steps must be a positive integer, got {args.adapt_steps}")
    out = check_inputs(scale=args.scale, seeds=args.seeds, out=args.out,
                       datasets=[(args.source, {}), (args.target, {})])
    result = run_adaptation(out, scale=args.scale, seeds=args.seeds, source=args.source, target=args.target,
                            mode=args.mode, adapt_steps=args.adapt_steps, progress=not args.no_progress)
    write_json(out / "adapt.json", {"scale": args.scale, "seeds": list(range(args.seeds)), **result})
    for method, label in LABELS.items():
        print(f"{label:<36} {mean_std(result['values'][method])[0]:.2f} % on {args.target}[test]")
    print(f"wrote {out / 'adapt.json'}")
    return 0
