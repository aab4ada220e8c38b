"""`genrep train MODEL` and `genrep sample RUN`."""

from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    from genrep.experiments.sharded_sampling import DEFAULT_SHARD_SIZE
    from genrep.models import model_names

    train = commands.add_parser(
        "train", help="train a model into a run folder",
        description="Train a model. Models: " + ", ".join(model_names()) + ". "
        "Precedence: defaults < --config YAML < the flags below < --set.")
    train.add_argument("model", help="model name (" + ", ".join(model_names()) + ")")
    train.add_argument("--dataset", default=None, help="data set name (see `genrep data list`)")
    train.add_argument("--data-path", default=None, help="local file/folder for sources that take one")
    train.add_argument("--config", default=None, help="YAML file with model/data/train sections")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set model.latent_dim=32 (repeatable)")
    train.add_argument("--steps", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--lr", type=float, default=None)
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--devices", type=int, default=None, help="processes/GPUs (DDP when > 1)")
    train.add_argument("--num-nodes", type=int, default=None)
    train.add_argument("--accelerator", default=None, help="cpu (default), cuda or auto")
    train.add_argument("--precision", default=None, help="32-true (default), bf16-mixed, 16-mixed")
    train.add_argument("--out", default=None, help="run folder (default runs/MODEL_DATASET)")
    mode = train.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    mode.add_argument("--resume", nargs="?", const="yes", choices=("yes", "auto"), default=None,
                      help="continue the run in --out from its last checkpoint; --resume auto: continue it if it has "
                           "a checkpoint, else start it (the line for a job script that may be requeued)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    train.set_defaults(handler=train_cmd)

    sample = commands.add_parser(
        "sample", help="draw samples from a trained run: a PNG grid, or many images in shards over processes",
        description="With -o FILE.png (default RUN/samples/sample.png): one PNG grid (and --npz). With --out DIR "
                    "(no .png suffix): a sharded, resumable job over --devices processes, torchrun or srun; the same "
                    "(seed, index) always gives the same image whatever the number of processes (docs/distributed.md)")
    sample.add_argument("run", help="run folder")
    sample.add_argument("-n", type=int, default=64)
    sample.add_argument("-o", "--out", default=None,
                        help="PNG path (default RUN/samples/sample.png), or a folder for sharded sampling")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--labels", default=None, help="comma-separated class labels for a conditional model (grid)")
    sample.add_argument("--npz", default=None, help="also save the grid's samples as an .npz (key 'images')")
    sample.add_argument("--shard-size", type=int, default=None,
                        help=f"images per shard and model.sample call (sharded; default {DEFAULT_SHARD_SIZE})")
    sample.add_argument("--format", default="npz", choices=("npz", "png"),
                        help="shard format: npz (uint8 images, default) or png (a folder of PNGs per shard)")
    sample.add_argument("--devices", type=int, default=None,
                        help="processes on this node (sharded; default 1, or torchrun's / srun's)")
    sample.add_argument("--num-nodes", type=int, default=None)
    sample.add_argument("--accelerator", default="cpu", help="cpu (default), cuda or auto")
    sample.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE",
                        help="a sampling setting of the model, e.g. --set model.sampler=ddim "
                             "--set model.sample_steps=50 (repeatable)")
    sample.add_argument("--no-progress", action="store_true")
    sample.set_defaults(handler=sample_cmd)


def _cli_overrides(args) -> dict:
    from genrep.config import merge, parse_overrides
    from genrep.training.fabric import launcher_devices

    if args.devices is None and args.num_nodes is None and launcher_devices() is not None:
        args.devices, args.num_nodes = launcher_devices()  # under torchrun / srun: the launcher's processes
    flags = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
             "devices": args.devices, "num_nodes": args.num_nodes, "accelerator": args.accelerator,
             "precision": args.precision}
    over: dict = {"train": {k: v for k, v in flags.items() if v is not None}}
    if args.no_progress:
        over["train"]["progress"] = False
    if args.dataset:
        over["data"] = {"name": args.dataset}
    if args.data_path:
        over.setdefault("data", {})["path"] = args.data_path
    return merge(over, parse_overrides(args.set))


def train_cmd(args) -> int:
    from genrep.experiments.run_config import resolve_run_config
    from genrep.experiments.train import train_run

    cfg = resolve_run_config(args.model, config_file=args.config, overrides=_cli_overrides(args))
    if args.print_config:
        import yaml

        from genrep.config import to_dict

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    out = Path(args.out or f"runs/{cfg.model_name}_{cfg.data.name}")
    resume, overwrite = resume_mode(args.resume, out, overwrite=args.overwrite)
    try:
        summary = train_run(cfg, out, overwrite=overwrite, resume=resume)
    except KeyboardInterrupt:
        args.interrupt_hint = interrupt_hint(args, out)  # printed by genrep.cli.main
        raise
    if summary:
        width = max(map(len, summary))
        for key, value in summary.items():
            print(f"{key:<{width}}  {value:.4g}" if isinstance(value, float) else f"{key:<{width}}  {value}")
        print(f"run folder: {out} (report: {out / 'report.md'})")
    return 0


def resume_mode(resume: str | None, out: Path, *, overwrite: bool) -> tuple[bool, bool]:
    """(resume, overwrite) for `train_run` from --resume [yes|auto] and --overwrite: "auto" resumes a
    run folder that holds a checkpoint, restarts one that holds none (a run stopped before its first
    checkpoint) and starts a new run otherwise."""
    if resume != "auto":
        return resume == "yes", overwrite
    if (out / "checkpoints" / "last.ckpt").is_file():
        return True, False
    return False, (out / "config.yaml").is_file()


def interrupt_hint(args, out: Path) -> str:
    """What to do after Ctrl-C stopped `genrep train`: resume from the checkpoint, or (none was
    written, so `train_run` removed what it wrote) run the same command again."""
    if (out / "checkpoints" / "last.ckpt").is_file():
        again = "the same command" if args.resume else "the same command and --resume"
        return f"the last checkpoint is kept in {out / 'checkpoints' / 'last.ckpt'}; continue with {again}"
    return "no checkpoint was written yet, so there is nothing to resume; run the same command again"


def sample_cmd(args) -> int:
    import torch

    from genrep.errors import InputError
    from genrep.experiments.train import (load_data, load_run_config, load_trained_model, out_of_memory_as_error,
                                          sample_conditions, sample_in_batches)
    from genrep.utils.files import output_file, write_npz
    from genrep.utils.images import save_grid

    if args.n < 1:
        raise InputError(f"-n must be >= 1, got {args.n}")
    if args.out is not None and Path(args.out).suffix.lower() != ".png":
        return sharded_sample_cmd(args)
    for flag, given in (("--devices", args.devices not in (None, 1)), ("--num-nodes", args.num_nodes not in (None, 1)),
                        ("--shard-size", args.shard_size is not None), ("--set", bool(args.set))):
        if given:
            raise InputError(f"{flag} is for sharded sampling: pass --out DIR (a folder), not a .png grid")
    labels = None
    if args.labels:
        try:
            labels = [int(v) for v in args.labels.split(",")]
        except ValueError:
            raise InputError(f"--labels must be comma-separated integers, got {args.labels!r}") from None
    for path in filter(None, (args.out, args.npz)):
        output_file(path)  # before sampling: parent folders made, a file in the way fails in seconds
    model = load_trained_model(args.run)
    condition = getattr(model, "condition", None)
    needs_vectors = condition is not None and condition.num_classes is None
    if labels is not None:
        _check_labels(args, model, labels, needs_vectors)
        cond = torch.tensor(labels * (args.n // len(labels) + 1))[: args.n]
    else:  # models conditioned on vectors (e.g. particle attributes) take those of the test split
        cond = sample_conditions(model, load_data(load_run_config(args.run), "test"), args.n) if needs_vectors \
            else None
    torch.manual_seed(args.seed)
    out = Path(args.out or Path(args.run) / "samples" / "sample.png")
    with out_of_memory_as_error(f"sampling {args.n} images", "lower -n or sample in several calls", InputError):
        images = sample_in_batches(model, args.n, cond)
        save_grid(images, out, value_range=model.value_range)
    print(f"wrote {out} ({args.n} samples, range {model.value_range})")
    if args.npz:
        write_npz(args.npz, images=images.numpy())  # parents created; OSError -> OutputError
        print(f"wrote {args.npz}")
    return 0


def sharded_sample_cmd(args) -> int:
    """`genrep sample RUN -n N --out DIR`: the sharded job of genrep.experiments.sharded_sampling."""
    from genrep.config import parse_overrides
    from genrep.errors import InputError
    from genrep.experiments.sharded_sampling import DEFAULT_SHARD_SIZE, ShardPlan, sample_shards
    from genrep.training.fabric import cli_devices, launch_processes
    from genrep.training.preemption import preemptible

    if args.labels or args.npz:
        raise InputError("--labels and --npz are for a PNG grid (-o FILE.png); sharded sampling balances the labels "
                         "itself and writes npz shards")
    plan = ShardPlan(args.n, DEFAULT_SHARD_SIZE if args.shard_size is None else args.shard_size)  # checks both
    overrides = parse_overrides(args.set)
    if set(overrides) - {"model"}:
        raise InputError(f"--set takes model.KEY=VALUE sampling settings, got {', '.join(args.set)}")
    devices, num_nodes = cli_devices(args.devices, args.num_nodes)
    fabric = launch_processes(accelerator=args.accelerator, devices=devices, num_nodes=num_nodes)
    args.interrupt_hint = "the finished shards are kept; run the same command again to complete the job"
    with preemptible():
        result = sample_shards(args.run, args.out, plan, seed=args.seed, fmt=args.format,
                               model_overrides=overrides.get("model", {}), fabric=fabric,
                               progress=not args.no_progress, log=None)
    if fabric.is_global_zero:
        manifest = result["manifest"]
        print(f"wrote {args.out}: {manifest['n']} images in {manifest['num_shards']} shards ({result['written']} drawn"
              f" now by {fabric.world_size} process(es), {result['skipped']} already on disk); evaluate with genrep "
              f"evaluate --real DATASET --fake {args.out}")
    return 0


def _check_labels(args, model, labels: list[int], needs_vectors: bool) -> None:
    """--labels fits the run's model: one conditioned on class labels, each in [0, classes)."""
    from genrep.errors import InputError
    from genrep.experiments.train import load_run_config

    name = load_run_config(args.run).model_name
    if needs_vectors:
        raise InputError(f"--labels needs a model conditioned on class labels; {args.run}'s {name} takes "
                         f"{model.condition.dim}-d condition vectors (sample it without --labels, which takes the "
                         f"test split's conditions, or with genrep simulate {args.run} --particles FILE)")
    if not getattr(model, "conditional", False):
        raise InputError(f"--labels is only for conditional models; {args.run}'s {name} is unconditional")
    condition = getattr(model, "condition", None)
    classes = condition.num_classes if condition is not None else getattr(model, "num_classes", None)
    if classes is not None and not all(0 <= v < classes for v in labels):
        raise InputError(f"--labels must lie in [0, {classes - 1}] (the run's {classes} classes), got {args.labels!r}")
