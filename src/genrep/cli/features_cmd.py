"""`genrep features train|list`: the metric feature extractors and their weights."""

from __future__ import annotations


def register(commands) -> None:
    parser = commands.add_parser("features", help="train and list the feature extractors used by the metrics")
    sub = parser.add_subparsers(dest="features_command", metavar="ACTION")
    sub.required = True
    train = sub.add_parser("train", help="train the LeNet feature extractor on a gray 10-class data set")
    train.add_argument("--dataset", required=True, help="data set name (see `genrep data list`), e.g. mnist")
    train.add_argument("--epochs", type=int, default=None,
                       help="epochs (default: at least 10 epochs and 1,500 steps)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(handler=train_cmd)
    sub.add_parser("list", help="the extractors and which weights are available").set_defaults(handler=list_cmd)


def train_cmd(args) -> int:
    import time

    from genrep.metrics.features.lenet import weights_path
    from genrep.metrics.features.training import train_lenet

    started = time.perf_counter()
    _, accuracy = train_lenet(args.dataset, epochs=args.epochs, seed=args.seed, progress=not args.no_progress)
    print(f"LeNet on {args.dataset}: test accuracy {accuracy:.4f} in {time.perf_counter() - started:.0f} s;"
          f" weights {weights_path(args.dataset)}")
    return 0


def list_cmd(args) -> int:
    from genrep.metrics.features.registry import extractor_status

    for name, status in extractor_status():
        print(f"{name:<20}  {status}")
    return 0
