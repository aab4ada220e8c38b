"""`genrep evaluate`: metrics between a real split and generated images."""

from __future__ import annotations

import sys
from pathlib import Path


def register(commands) -> None:
    from genrep.experiments.evaluate import ALL_METRICS

    p = commands.add_parser(
        "evaluate", help="FID, precision/recall, KID, IS, sFID, Sinkhorn, calorimeter channels",
        description="Compare generated images with a real split under the protocol of docs/evaluation.md.")
    p.add_argument("--real", required=True, help="DATASET[:split] (split defaults to test)")
    p.add_argument("--fake", required=True, help="run folder, samples .npz (key 'images') or a folder of images")
    p.add_argument("--metrics", default="fid,prd,ipr", help=f"comma-separated, from: {', '.join(ALL_METRICS)}")
    p.add_argument("--features", default="lenet", help="lenet (trained per dataset), inception, or a .pt file")
    p.add_argument("--inception-resize", default="tf1", metavar="tf1|torch",
                   help="Inception input mapping: tf1 (the TF FID graph's resize and range, default) or torch "
                        "(pytorch-fid's interpolate + 2x-1, what the authors' reference code used)")
    p.add_argument("--prd-clustering", default="minibatch", metavar="minibatch|lloyd",
                   help="PRD k-means: minibatch (MiniBatchKMeans, the published protocol, default) or lloyd")
    p.add_argument("--n", type=int, default=None, help="images per set (default: the real split, at most 10000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", default=None, help="JSON path (default RUN/eval_DATASET.json or eval.json)")
    p.add_argument("--devices", type=int, default=None,
                   help="processes on this node, each extracting the features of its share of the images "
                        "(default 1, or torchrun's / srun's); --fake must then be an .npz, a folder of images or "
                        "a shard folder of genrep sample RUN --out DIR")
    p.add_argument("--num-nodes", type=int, default=None)
    p.add_argument("--accelerator", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=evaluate_cmd)


def evaluate_cmd(args) -> int:
    """Validate (identically on every rank), launch the processes when more than one (or a
    non-CPU accelerator) is asked for, evaluate on every rank; global rank 0 prints and writes."""
    from genrep.errors import ConfigError, OutputError
    from genrep.experiments.evaluate import evaluate, is_run_folder, parse_metrics, parse_real, run_folder_refusal
    from genrep.runs import write_json
    from genrep.training.fabric import cli_devices, launch_processes
    from genrep.utils.files import output_file

    metrics = parse_metrics(args.metrics)
    devices, num_nodes = cli_devices(args.devices, args.num_nodes)
    if devices * num_nodes > 1 and is_run_folder(args.fake):  # before launching: no process is left waiting
        processes = f"--devices {devices}" + (f" --num-nodes {num_nodes}" if num_nodes != 1 else "")
        raise ConfigError(run_folder_refusal(args.fake, args.real, processes, args.n))
    fake = Path(args.fake)
    default = fake / f"eval_{parse_real(args.real)[0]}.json" if is_run_folder(fake) else Path("eval.json")
    out = output_file(args.out if args.out else default)  # before computing: parents made, a bad path fails fast
    fabric = None  # one CPU process: no Fabric
    if (devices, num_nodes, args.accelerator) != (1, 1, "cpu"):
        fabric = launch_processes(accelerator=args.accelerator, devices=devices, num_nodes=num_nodes)
    result = evaluate(args.real, args.fake, metrics=metrics, features=args.features,
                      n=args.n, seed=args.seed, progress=not args.no_progress,
                      inception_resize=args.inception_resize, prd_clustering=args.prd_clustering, fabric=fabric)
    if fabric is not None and not fabric.is_global_zero:
        return 0
    width = max(map(len, result))
    for key, value in result.items():  # the table first: if writing fails below, the numbers are on screen
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    sys.stdout.flush()
    try:
        write_json(out, result)
    except OutputError as err:
        raise OutputError(f"{err} (the metrics are printed above)") from None
    print(f"wrote {out}")
    return 0
