"""`genrep continual METHOD --scenario NAME --scale S --seeds N`: run a continual learner."""

from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    from genrep.continual.scenarios import scenario_names
    from genrep.continual.registry import get_learner, learner_names
    from genrep.experiments.continual import PROTOCOLS, SCALES, protocol_methods, settings_help

    p = commands.add_parser(
        "continual", help="run a continual-learning method on a scenario (task × time matrix)",
        description="Train METHOD on the tasks of a scenario in order, evaluate every task after every task, and "
                    "write per seed OUT/seedS/{results.json, heatmap.png, curves.png, checkpoint.pt} and "
                    "OUT/summary.json (the average of the method's metric after the last task, accuracy for "
                    "classifiers, mean ± SEM over seeds).",
        epilog=f"settings for --set: {settings_help()}")
    vdv = ", ".join(protocol_methods("van-de-ven"))
    methods = "; ".join(get_learner(name).help_line() for name in learner_names()).replace("%", "%%")
    p.add_argument("method", choices=learner_names(), help=f"{methods} (genrep.continual.registry)")
    p.add_argument("--scenario", default="split-mnist",
                   help=f"one of {', '.join(scenario_names())} (default split-mnist; split-digits is the offline "
                        "8×8 one)")
    p.add_argument("--scale", default="smoke", choices=SCALES,
                   help="smoke (300 images per task, seconds), cpu (full data, 2 cores), paper (published settings)")
    p.add_argument("--protocol", default="shared", choices=tuple(PROTOCOLS),
                   help="shared (default): Table 8.4.1's shared-classifier protocol (the scale's LeNet, 15 epochs of "
                        "batch 120, fresh Adam 2e-3 every task, MSE on the softmax, all output units); van-de-ven: "
                        "van de Ven & Tolias' (2019) code's protocol (MLP 784-400-400-10, 2000 iterations of batch "
                        "128 per task, one Adam 1e-3 kept across tasks, cross-entropy over the classes seen so far, "
                        "VAE 784-400-400-z100 for 2000 iterations, T = 2 for gr-distill; 100 iterations at smoke), "
                        f"for {vdv}; applied after --scale and before --set (genrep.experiments.continual.PROTOCOLS)")
    p.add_argument("--scenario-option", dest="scenario_options", action="append", metavar="KEY=VALUE",
                   help="an option of the scenario's builder, e.g. alpha=100 or n_tasks=20 (repeatable; stored in "
                        "OUT/config.json, so a resumed run must use the same)")
    p.add_argument("--seeds", default="1", help="N: seeds 0..N-1 (default 1); or a list such as 1,2 or 2, (to run "
                   "one folder's seeds in parallel processes; then --seeds N --resume writes the summary of all)")
    p.add_argument("--out", default=None, help="folder (default runs/continual/METHOD-SCENARIO-SCALE)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="override a learner setting, e.g. --set epochs=5 --set buffer_size=500 (repeatable)")
    p.add_argument("--resume", nargs="?", const="yes", choices=("yes", "auto"), default=None,
                   help="continue an interrupted run in --out after its last finished task, with the same method, "
                        "scenario, scale and --set values (stored in OUT/config.json); --resume auto: continue it if "
                        "OUT/config.json exists, else start it (for job scripts that may be requeued)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run")
    p.add_argument("--devices", type=int, default=None,
                   help="processes on this node (default 1, or torchrun's / srun's): data parallel over the "
                        "batches of the classifier or the VAEs (genrep.continual.distributed)")
    p.add_argument("--num-nodes", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=continual_cmd)


def continual_cmd(args) -> int:
    from genrep.continual.distributed import is_main
    from genrep.continual.registry import get_learner
    from genrep.experiments.continual import check_resumable, describe, learner_settings, parse_overrides, run_method
    from genrep.training.fabric import cli_devices, launch_processes
    from genrep.training.preemption import preemptible

    suffix = "" if args.protocol == "shared" else f"-{args.protocol}"
    out = args.out or f"runs/continual/{args.method}-{args.scenario}-{args.scale}{suffix}"
    overrides = parse_overrides(args.overrides, parse=False)
    # a bad --protocol or --set fails before the folder is looked at
    settings = learner_settings(args.method, args.scale, overrides, protocol=args.protocol)
    resume = args.resume == "yes" or (args.resume == "auto" and (Path(out) / "config.json").is_file())
    if resume:
        check_resumable(out)
    devices, num_nodes = cli_devices(args.devices, args.num_nodes)
    if devices * num_nodes > 1:
        launch_processes(accelerator="cuda" if str(settings.device).startswith("cuda") else "cpu", devices=devices,
                         num_nodes=num_nodes)
    with preemptible():
        summary = run_method(args.method, args.scenario, scale=args.scale, seeds=args.seeds, out=out,
                             overrides=overrides, resume=resume, overwrite=args.overwrite,
                             progress=not args.no_progress, protocol=args.protocol,
                             scenario_options=parse_overrides(args.scenario_options))
    if not is_main():
        return 0
    print(describe(summary))
    metric = summary.get("metric", get_learner(args.method).metric)
    for row in summary["per_seed"]:
        if metric == "accuracy":
            final = " ".join(f"{100 * v:.1f}" for v in row["final_row"])
            average = f"{100 * row['average_accuracy']:.1f} %"
        else:
            final = " ".join(f"{v:.2f}" for v in row["final_row"])
            average = f"{metric} {row[f'average_{metric}']:.2f}"
        print(f"  seed {row['seed']}: {average} (per task after the last: {final}), "
              f"train {row['wall_time_s']:.0f} s, total {row['run_s']:.0f} s")
    print(f"results: {out}/summary.json and {out}/seed*/")
    return 0
