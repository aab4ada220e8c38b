"""`genrep analyze ANALYSIS ...`: pictures about trained models and the diffusion process (latent spaces,
log-SNR of the forward diffusion, reconstruction error per step, share of the VLB per step, the
two-stage DAED switching experiment, linear probes of diffusion features per timestep)."""

from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    analyze = commands.add_parser("analyze", help="analyses: latent spaces, diffusion log-SNR, reconstruction and "
                                                  "VLB share per step, two-stage switching, feature probes",
                                  description="Analyses of trained runs and of the diffusion process. "
                                              "Run `genrep analyze ANALYSIS --help`.")
    analyses = analyze.add_subparsers(dest="analysis", metavar="ANALYSIS")
    analyses.required = True

    latent = analyses.add_parser(
        "latent", help="scatter plots of latent codes, one panel per run, coloured by class",
        description="Encode a data split with each run's encoder (the posterior mean for VAEs), project the "
                    "codes to 2-D with PCA or t-SNE, and draw the runs side by side, coloured by class.")
    latent.add_argument("runs", nargs="+", metavar="RUN", help="run folders of models with an encoder")
    latent.add_argument("--dataset", default=None, help="data set to encode (default: each run's own)")
    latent.add_argument("--split", default="test", help="split to encode (default test)")
    latent.add_argument("--method", choices=("pca", "tsne"), default="pca")
    latent.add_argument("--n", type=int, default=2000, help="images to encode (a seeded random subset)")
    latent.add_argument("--seed", type=int, default=0, help="seed of the subset and the projection")
    latent.add_argument("-o", "--out", default=None,
                        help="PNG path (default RUN/latent_METHOD.png; required for several runs)")
    latent.set_defaults(handler=latent_cmd)
    _register_snr(analyses)
    _register_reconstruction(analyses)
    _register_vlb_share(analyses)
    _register_switching(analyses)
    _register_probe(analyses)


def latent_cmd(args) -> int:
    from genrep.errors import InputError
    from genrep.experiments.latent_pictures import compare_latents

    if args.out is None and len(args.runs) > 1:
        raise InputError("several runs go into one picture: name it with -o OUT.png")
    out = Path(args.out) if args.out else Path(args.runs[0]) / f"latent_{args.method}.png"
    compare_latents(args.runs, out, dataset=args.dataset, split=args.split, method=args.method, n=args.n,
                    seed=args.seed)
    print(f"wrote {out}")
    return 0


def _register_snr(analyses) -> None:
    snr = analyses.add_parser(
        "snr", help="log-SNR of the forward diffusion averaged over a data set, and its per-step change",
        description="Thesis Eq. 5.2 / Fig. 5.5.1: SNR(x0, t) = ᾱ_t·mean(x0²)/(1 − ᾱ_t) per image (pixels in "
                    "[-1, 1]), its natural log averaged over the images of a data split, and the discrete "
                    "derivative Δ log-SNR per step. Writes OUT/snr.csv and OUT/snr.png and prints "
                    "'log-SNR < 0 after P% of steps' (one line per schedule).")
    snr.add_argument("--dataset", required=True, help="data set name (see `genrep data list`), e.g. mnist")
    snr.add_argument("--schedule", default="linear", metavar="linear|cosine|both",
                     help="noise schedule(s) (default linear)")
    snr.add_argument("--steps", type=int, default=1000, metavar="T",
                     help="number of diffusion steps T, 2 to 100,000 (default 1000)")
    snr.add_argument("--out", required=True, metavar="DIR", help="output folder for snr.csv and snr.png")
    snr.add_argument("--split", default="test", help="split to average over (default test)")
    snr.add_argument("--n", type=int, default=None, help="average over a seeded subset of N images (default all)")
    snr.add_argument("--seed", type=int, default=0, help="seed of the subset")
    snr.add_argument("--average", default="log", choices=("log", "snr"),
                     help="log: mean over images of log SNR (default, the thesis band); snr: log of the mean SNR")
    snr.set_defaults(handler=snr_cmd)


def snr_cmd(args) -> int:
    from genrep.analysis.snr import snr_analysis

    snr_analysis(args.dataset, args.schedule, args.steps, args.out, split=args.split, n=args.n, seed=args.seed,
                 average=args.average)
    return 0


def _register_reconstruction(analyses) -> None:
    rec = analyses.add_parser(
        "reconstruction", help="MAE and MS-SSIM of x0 against x_t ~ q(x_t|x0) reversed, per step",
        description="Thesis Fig. 5.5.2 / 5.7.1: noise each image to x_t ~ q(x_t|x0) for a grid of steps t, "
                    "reverse x_t to x̂0 and report the MAE (pixels in [-1, 1]) and MS-SSIM against x0 "
                    "(mean and 95%% confidence interval), one curve per evaluated data set. Reversal: a "
                    "trained DDGM (--run, ancestral sampling from t), the exact denoiser of a Gaussian fitted "
                    "to --dataset (--method gaussian), or no denoiser at all, x̂0 = clip(x_t/√ᾱ_t) "
                    "(--method noise, the default without --run). Cross-data-set: the model (or Gaussian) "
                    "is trained on --dataset and evaluated on it and on each --eval-dataset. Writes "
                    "OUT/reconstruction.csv and OUT/reconstruction.png.")
    rec.add_argument("--dataset", default=None,
                     help="training data set A (the Gaussian's data; with --run: default the run's own)")
    rec.add_argument("--eval-dataset", nargs="+", default=[], metavar="OTHER",
                     help="further data set(s) B to evaluate on (trained on A, evaluated on B)")
    rec.add_argument("--run", default=None, metavar="RUN", help="a trained DDGM run folder (uses its diffusion)")
    rec.add_argument("--method", default=None, metavar="noise|gaussian",
                     help="without --run: noise (default; no denoiser) or gaussian (exact Gaussian denoiser)")
    rec.add_argument("--schedule", default=None, metavar="linear|cosine",
                     help="noise schedule without --run (default linear)")
    rec.add_argument("--steps", type=int, default=None, metavar="T",
                     help="diffusion steps T without --run, 2 to 100,000 (default 1000)")
    rec.add_argument("--out", required=True, metavar="DIR", help="output folder")
    rec.add_argument("--t-values", type=int, nargs="+", default=None, metavar="T_IDX",
                     help="0-based steps t to evaluate (default: --points steps over the first --max-fraction)")
    rec.add_argument("--max-fraction", type=float, default=0.2, help="default grid: up to this fraction of T (0.2)")
    rec.add_argument("--points", type=int, default=11, help="default grid: number of steps (11)")
    rec.add_argument("--reverse", default="ancestral", choices=("ancestral", "x0"),
                     help="with a model: ancestral sampling from t down to 0 (default) or one-shot x̂0 at t")
    rec.add_argument("--n", type=int, default=500, help="images per evaluated data set (seeded subset, default 500)")
    rec.add_argument("--n-fit", type=int, default=10000, help="--method gaussian: training images to fit (10000)")
    rec.add_argument("--split", default="test", help="split to evaluate on (default test)")
    rec.add_argument("--image-size", type=int, default=None,
                     help="without --run: resize all sets to this side (e.g. 16 for 8×8 digits, so MS-SSIM fits)")
    rec.add_argument("--batch-size", type=int, default=250)
    rec.add_argument("--seed", type=int, default=0, help="seed of the subsets and of the noise")
    rec.set_defaults(handler=reconstruction_cmd)


def reconstruction_cmd(args) -> int:
    from genrep.analysis import reconstruction as rec
    from genrep.errors import ConfigError

    if args.n < 1 or args.batch_size < 1:
        raise ConfigError("--n and --batch-size must be positive")
    if args.n_fit < 1:
        raise ConfigError(f"--n-fit (training images to fit the Gaussian) must be >= 1, got {args.n_fit}")
    if args.run is not None:
        if args.method is not None or args.schedule is not None or args.steps is not None:
            raise ConfigError("--run uses the run's own trained diffusion: drop --method/--schedule/--steps")
        if args.image_size is not None:
            raise ConfigError("--run prepares data like the run's training data: drop --image-size")
        eval_sets, labels, diffusion, eps_model, last_step, label = _run_eval_sets(args)
        method = f"trained DDGM {Path(args.run).name}, {args.reverse} reverse"
        title = f"Reconstruction of x0 from x_t (trained on {label})"
    else:
        from genrep.analysis.snr import check_steps
        from genrep.diffusion import GaussianDiffusion, get_betas

        if args.dataset is None:
            raise ConfigError("name the data set with --dataset NAME (or give a trained DDGM with --run RUN)")
        method_name = args.method or "noise"
        if method_name not in rec.METHODS:
            raise ConfigError(f"unknown --method {method_name!r}; choose one of {', '.join(rec.METHODS)} "
                              "(or pass a trained DDGM with --run)")
        schedule = args.schedule or "linear"
        if schedule not in ("linear", "cosine"):
            raise ConfigError(f"unknown noise schedule {schedule!r}; choose linear or cosine")
        steps = check_steps(1000 if args.steps is None else args.steps)
        diffusion = GaussianDiffusion(get_betas(schedule, steps))
        labels, last_step = None, None
        eval_sets = rec.load_eval_sets(args.dataset, args.eval_dataset, split=args.split, n=args.n, seed=args.seed,
                                       image_size=args.image_size)
        title = f"Reconstruction of x0 from x_t (fitted on {args.dataset})"
        if method_name == "gaussian":
            side = next(iter(eval_sets.values())).shape[-1]
            eps_model = rec.fit_gaussian(args.dataset, n_fit=args.n_fit, seed=args.seed, image_size=side) \
                .eps_model(diffusion)
            method = f"Gaussian denoiser fitted to {args.dataset}[train], {args.reverse} reverse"
        else:
            eps_model = None
            method = "no denoiser: x̂0 = clip(x_t/√ᾱ_t)"
            title = "Reconstruction of x0 from x_t"
        method += f", {schedule} schedule T={steps}"
    T = diffusion.num_timesteps
    t_values = (rec.check_t_values(args.t_values, T) if args.t_values is not None
                else rec.default_t_values(T, max_fraction=args.max_fraction, points=args.points))
    rec.reconstruction_analysis(eval_sets, diffusion, t_values, args.out, eps_model=eps_model, reverse=args.reverse,
                                last_step=last_step, labels=labels, seed=args.seed, batch_size=args.batch_size,
                                title=title, method=method)
    return 0


def _run_eval_sets(args):
    """(eval sets in [-1, 1], their labels (class-conditional models only, else None), diffusion,
    ε-model, last step, training label) of a trained DDGM/DAED run: the run's data set (or --dataset)
    and each --eval-dataset, prepared like the run's training data."""
    from genrep.analysis.reconstruction import ddgm_parts, to_model_range
    from genrep.data.transforms import random_subset
    from genrep.errors import ConfigError
    from genrep.experiments.latent_pictures import load_run_and_data

    model, data, _ = load_run_and_data(args.run, args.dataset, args.split)
    diffusion, eps_model, last_step = ddgm_parts(model)
    num_classes = getattr(model, "num_classes", None) if getattr(model, "conditional", False) else None
    label = data.name
    eval_sets, labels = {}, {} if num_classes else None
    for name in [label, *args.eval_dataset]:
        if name in eval_sets:
            continue
        other = data if name == label else load_run_and_data(args.run, name, args.split)[1]
        if tuple(other.image_shape) != tuple(data.image_shape):
            raise ConfigError(f"{name} images are {'×'.join(map(str, other.image_shape))} but the run was trained on "
                              f"{'×'.join(map(str, data.image_shape))}; evaluate on data of the same shape")
        other = random_subset(other, args.n, seed=args.seed)
        eval_sets[name] = to_model_range(other.images, other.value_range)
        if num_classes:
            y = getattr(other, "labels", None)
            if y is None or int(y.max()) >= num_classes:
                raise ConfigError(f"the run is class-conditional ({num_classes} classes) but {name} has no labels "
                                  "in that range; evaluate an unconditional DDGM on it")
            labels[name] = y
    return eval_sets, labels, diffusion, eps_model, last_step, label


def _register_vlb_share(analyses) -> None:
    vlb = analyses.add_parser(
        "vlb-share", help="share of the variational bound per diffusion step of a trained DDGM/DAED (Fig. 5.9.8)",
        description="Thesis ch. 5.9.4 / Fig. 5.9.8: every term L_t of the variational bound (Eq. 2.9; t = 0 the "
                    "decoder NLL) of a trained DDGM run, in bits/dim, averaged over N images of a split, its share "
                    "of the sum over the steps (the training objective; the prior L_T is reported apart) and the "
                    "cumulative share against the fraction of steps. A DAED run: its DDGM part (steps 1..T'-1; "
                    "the DAE step has no likelihood term). Costs T model calls per batch. Writes "
                    "OUT/vlb_share.csv, OUT/vlb_share.png, OUT/vlb_share.json and prints where the shares in "
                    "--levels are reached.")
    vlb.add_argument("run", metavar="RUN", help="a trained ddgm, cddgm or daed run folder")
    vlb.add_argument("--out", required=True, metavar="DIR", help="output folder")
    vlb.add_argument("--n", type=int, default=100, help="images to average over (a seeded subset, default 100)")
    vlb.add_argument("--split", default="test", help="split of the data set (default test)")
    vlb.add_argument("--dataset", default=None, help="data set (default the run's own)")
    vlb.add_argument("--skip-first", type=int, default=0, metavar="K",
                     help="leave out the first K step terms (1: a DDGM without its decoder step, Fig. 5.9.8b)")
    vlb.add_argument("--levels", default="0.5,0.9", help="cumulative shares to report (default 0.5,0.9)")
    vlb.add_argument("--batch-size", type=int, default=100)
    vlb.add_argument("--seed", type=int, default=0, help="seed of the subset and of the noise")
    vlb.add_argument("--no-progress", action="store_true")
    vlb.set_defaults(handler=vlb_share_cmd)


def vlb_share_cmd(args) -> int:
    from genrep.analysis.vlb_share import vlb_share_report
    from genrep.data.transforms import random_subset
    from genrep.errors import ConfigError
    from genrep.experiments.latent_pictures import load_run_and_data

    if args.n < 1 or args.batch_size < 1:
        raise ConfigError("--n and --batch-size must be positive")
    try:
        levels = [float(v) for v in args.levels.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--levels must be comma-separated shares in (0, 1], got {args.levels!r}") from None
    if not levels or not all(0.0 < v <= 1.0 for v in levels):
        raise ConfigError(f"--levels must be comma-separated shares in (0, 1], got {args.levels!r}")
    model, data, cfg = load_run_and_data(args.run, args.dataset, args.split)
    if not (callable(getattr(model, "nll_bits_per_dim", None)) or callable(getattr(model, "diffusion_bits_per_dim",
                                                                                     None))):
        raise ConfigError(f"{args.run} trains {cfg.model_name!r}, which has no variational bound per step; "
                          "give a ddgm, cddgm or daed run")
    data = random_subset(data, args.n, seed=args.seed)
    labels = data.labels if getattr(model, "conditional", False) else None
    loss = getattr(model.config, "loss", "?")
    title = (f"Share of the VLB per step: {Path(args.run).name} ({cfg.model_name}, {loss} loss) on "
             f"{data.name}[{args.split}], {len(data)} images")
    vlb_share_report(model, data.images, args.out, labels=labels, skip_first=args.skip_first, levels=levels,
                     seed=args.seed, batch_size=args.batch_size, title=title, progress=not args.no_progress,
                     info={"run": str(args.run), "model_name": cfg.model_name, "loss": loss, "dataset": data.name,
                           "split": args.split})
    return 0


def _register_switching(analyses) -> None:
    sw = analyses.add_parser(
        "switching", help="two-stage DAED: FID when a DAE replaces a trained DDGM's first steps (Fig. 5.7.2)",
        description="Thesis ch. 5.7.2 / Fig. 5.7.2-5.7.3: for each switching point, given as the log-SNR of "
                    "Eq. 5.2 at that step (mapped to the nearest step of the DDGM's schedule), train a denoising "
                    "autoencoder from x_k to x_0 (the DDGM's UNet settings unless --dae-channels), generate with "
                    "the DDGM down to step k and the DAE after it, and compute FID against the test split; the "
                    "plain DDGM's FID (full reverse process, same starting noise) is the reference line. Writes "
                    "OUT/switching.csv, OUT/switching.png, OUT/switching_samples.png, OUT/switching.json and "
                    "the trained DAEs in OUT/daes/ (reused by later calls).")
    sw.add_argument("run", metavar="DDGM_RUN", help="a trained (unconditional) ddgm run folder")
    sw.add_argument("--dataset", default=None, help="data set for the DAEs (train split) and FID (test split); "
                    "default the run's own")
    sw.add_argument("--out", required=True, metavar="DIR", help="output folder")
    sw.add_argument("--switch-log-snr", default="6,4,2,0,-2", metavar="V1,V2,...",
                    help="log-SNR values at the switch (default 6,4,2,0,-2; the thesis finds ~4 = 10%% of steps)")
    sw.add_argument("--dae-steps", type=int, default=1000, metavar="K", help="training steps per DAE (default 1000)")
    sw.add_argument("--batch-size", type=int, default=64, help="DAE batch size (default 64)")
    sw.add_argument("--lr", type=float, default=5e-4, help="DAE AdamW learning rate (default 5e-4)")
    sw.add_argument("--dae-channels", type=int, default=None, metavar="C",
                    help="base channels of the DAE's UNet (default: the DDGM's UNet settings unchanged)")
    sw.add_argument("--n", type=int, default=1000, help="generated and real images per FID (default 1000)")
    sw.add_argument("--features", default="lenet",
                    help="lenet (the data set's cached LeNet; gray 28×28/8×8), inception, or a TorchScript file")
    sw.add_argument("--seed", type=int, default=0)
    sw.add_argument("--dae-mode", default="thesis", choices=("thesis", "reference"),
                    help="thesis: an x0-predicting DAE trained at level k (default); reference: the authors' "
                         "script, an eps DAE trained at noise 1 - alpha_bar_k after the DDGM's t = 0 step")
    sw.add_argument("--no-progress", action="store_true")
    sw.set_defaults(handler=switching_cmd)


def switching_cmd(args) -> int:
    import dataclasses

    from genrep.experiments.switching import SwitchingSettings, parse_log_snrs, switching_analysis

    if args.dae_channels is not None and args.dae_channels < 1:
        from genrep.errors import ConfigError

        raise ConfigError(f"--dae-channels (base channels of the DAE's UNet) must be >= 1, got {args.dae_channels}")
    log_snrs = parse_log_snrs(args.switch_log_snr)
    settings = SwitchingSettings(dae_steps=args.dae_steps, batch_size=args.batch_size, lr=args.lr, n=args.n,
                                 seed=args.seed, dae_mode=args.dae_mode)
    if args.dae_channels is not None:
        from genrep.errors import ConfigError
        from genrep.experiments.train import load_run_config

        cfg = load_run_config(args.run)
        if cfg.model_name != "ddgm":
            raise ConfigError(f"{args.run} trains {cfg.model_name!r}: the two-stage experiment needs a ddgm run")
        settings.dae_unet = dataclasses.replace(cfg.model.unet, model_channels=args.dae_channels)
    result = switching_analysis(args.run, args.out, dataset=args.dataset, log_snrs=log_snrs, features=args.features,
                                settings=settings, progress=not args.no_progress)
    print(f"{'log-SNR':>8} {'step':>6} {'% steps':>8} {'FID':>9}")
    print(f"{'DDGM':>8} {'-':>6} {'-':>8} {result['ddgm_fid']:>9.3f}")
    for row in result["rows"]:
        print(f"{row['log_snr']:>8.2f} {row['t']:>6d} {100 * row['fraction_of_steps']:>8.1f} {row['fid']:>9.3f}")
    return 0


def _register_probe(analyses) -> None:
    pr = analyses.add_parser(
        "probe", help="logistic-regression probes of a diffusion model's pooled UNet features per timestep "
                      "(Fig. 6.4.2b)",
        description="Thesis Sec. 6.4.2 / Fig. 6.4.2b: noise the run's training and test images to x_t at each of "
                    "--num-timesteps evenly spaced steps t (0-based; t = 0 is the first, slightly noised step), "
                    "take the pooled UNet representation z_t (every skip tensor and the middle block averaged "
                    "over H×W), standardise it and fit scikit-learn logistic regressions on the training split: "
                    "one per class (one-vs-rest) plus a multinomial one for labelled data, one per attribute for "
                    "binary attributes (CelebA). Reports the test AUC per class/attribute, its mean, and the "
                    "accuracy. Writes OUT/probe.json and OUT/probe.png and prints t → accuracy / mean AUC.")
    pr.add_argument("run", metavar="RUN", help="a trained unconditional ddgm or daed run folder")
    pr.add_argument("--out", required=True, metavar="DIR", help="output folder")
    pr.add_argument("--timesteps", default=None, metavar="T1,T2,...",
                    help="0-based steps to probe, each in [0, T) (default: --num-timesteps evenly spaced ones)")
    pr.add_argument("--num-timesteps", type=int, default=10, metavar="N",
                    help="evenly spaced steps from 0 to T-1 (default 10, as in the thesis)")
    pr.add_argument("--max-train", type=int, default=10000, metavar="N",
                    help="training images for the regressions (a seeded subset, default 10000)")
    pr.add_argument("--max-test", type=int, default=5000, metavar="N",
                    help="test images to score them on (a seeded subset, default 5000)")
    pr.add_argument("--dataset", default=None, help="data set (default the run's own)")
    pr.add_argument("--attributes", default=None, metavar="NAME,...",
                    help="classes/attributes to label in the plot (default: up to 10, those changing most over t)")
    pr.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regressions (1.0)")
    pr.add_argument("--max-iter", type=int, default=1000, help="lbfgs iterations per regression (1000)")
    pr.add_argument("--batch-size", type=int, default=256, help="images per UNet call (256)")
    pr.add_argument("--seed", type=int, default=0, help="seed of the subsets and of the noise")
    pr.add_argument("--no-progress", action="store_true")
    pr.set_defaults(handler=probe_cmd)


def probe_cmd(args) -> int:
    from genrep.analysis.probe import probe_parts, probe_report, probe_timesteps
    from genrep.errors import ConfigError, InputError
    from genrep.experiments.train import load_data, load_run_config, load_trained_model

    for key in ("num_timesteps", "max_train", "max_test", "batch_size", "max_iter"):
        if getattr(args, key) < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be a positive integer, got {getattr(args, key)}")
    timesteps = None
    if args.timesteps is not None:
        try:
            timesteps = [int(v) for v in args.timesteps.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--timesteps must be comma-separated integer steps, got {args.timesteps!r}") from None
        if not timesteps:
            raise ConfigError(f"--timesteps must be comma-separated integer steps, got {args.timesteps!r}")
    attributes = None if args.attributes is None else [a.strip() for a in args.attributes.split(",") if a.strip()]
    cfg = load_run_config(args.run)
    model = load_trained_model(args.run)
    try:
        probe_parts(model)
    except InputError as err:
        raise ConfigError(f"{args.run} trains {cfg.model_name!r}: {err}") from None
    T = int(model.diffusion.num_timesteps)
    if timesteps is not None:
        bad = [t for t in timesteps if not 0 <= t < T]
        if bad:
            raise InputError(f"--timesteps: probing timesteps must lie in [0, T) = [0, {T}) for this run, got {bad}")
    else:
        timesteps = probe_timesteps(T, args.num_timesteps)
    if args.dataset is not None and args.dataset != cfg.data.name:
        import dataclasses

        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, name=args.dataset, path=None))
    train, test = load_data(cfg, "train"), load_data(cfg, "test")
    title = (f"Linear probes of {Path(args.run).name} ({cfg.model_name}, T={T}) on {train.name}: "
             f"pooled UNet features z_t")
    probe_report(model, train, test, args.out, attributes=attributes, title=title,
                 info={"run": str(args.run), "model_name": cfg.model_name, "dataset": train.name},
                 timesteps=timesteps, max_train=args.max_train, max_test=args.max_test, seed=args.seed, C=args.C,
                 max_iter=args.max_iter, batch_size=args.batch_size, progress=not args.no_progress)
    return 0
