"""`genrep data list|info|preview`."""

from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    parser = commands.add_parser("data", help="list, describe and preview data sets")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    sub.add_parser("list", help="one data set per line with its source/status").set_defaults(handler=list_cmd)
    info = sub.add_parser("info", help="shapes, ranges, classes and split sizes of a data set")
    _add_source_args(info)
    info.set_defaults(handler=info_cmd)
    preview = sub.add_parser("preview", help="write a PNG grid of images")
    _add_source_args(preview)
    preview.add_argument("--split", default="train")
    preview.add_argument("-n", type=int, default=64, help="number of images (default 64)")
    preview.add_argument("-o", "--out", default=None, help="PNG path (default NAME_preview.png)")
    preview.set_defaults(handler=preview_cmd)


def _add_source_args(parser) -> None:
    parser.add_argument("name")
    parser.add_argument("--path", default=None, help="local file/folder for sources that take one")


def _options(args) -> dict:
    return {"path": args.path} if args.path else {}


def list_cmd(args) -> int:
    from genrep.data import dataset_names, get_source

    names = dataset_names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {get_source(name).status()}")
    return 0


def info_cmd(args) -> int:
    from genrep.data import get_source, load_dataset

    source = get_source(args.name)
    print(f"{args.name}: {source.description}")
    print(f"source: {source.status()}")
    for split in source.splits:
        print("  " + load_dataset(args.name, split, **_options(args)).describe())
    return 0


def preview_cmd(args) -> int:
    import torch

    from genrep.data import load_dataset
    from genrep.errors import InputError
    from genrep.utils.images import save_grid

    if args.n < 1:
        raise InputError(f"-n (number of images to preview) must be >= 1, got {args.n}")
    data = load_dataset(args.name, args.split, **_options(args))
    n = min(args.n, len(data))
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:n]
    out = Path(args.out or f"{args.name}_preview.png")
    save_grid(data.images[index], out, value_range=data.value_range)
    print(f"wrote {out} ({n} images from {data.describe()})")
    return 0
