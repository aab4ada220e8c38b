"""`genrep reproduce TABLE --scale smoke|cpu|paper`: rerun a thesis table, print ours beside published."""

from __future__ import annotations


def register(commands) -> None:
    p = commands.add_parser(
        "reproduce", help="rerun a published thesis table at a chosen scale",
        description="Train and evaluate every cell of a thesis table and print our values (mean ± std over "
                    "seeds; ± SEM for table-8.4.1, as published) beside the published ones. Finished runs in "
                    "--out are reused.")
    p.add_argument("table", help="e.g. table-4.3.1 (`genrep reproduce list` shows all)")
    p.add_argument("--scale", default="smoke", help="smoke (CI, minutes), cpu (2 cores, < 1 h), paper (published)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (default 1)")
    p.add_argument("--out", default=None, help="folder (default runs/reproduce/TABLE-SCALE; the ch. 6 tables share"
                   " runs/reproduce/joint-diffusion-SCALE)")
    p.add_argument("--calorimeter-path", default=None, help="table-4.3.1: real ZDC .npz files instead of the"
                   " synthetic simulator")
    p.add_argument("--celeba-path", default=None, help="table-4.4.1: folder with the official CelebA files")
    p.add_argument("--dry-run", action="store_true", help="print every cell's resolved settings (JSON) and exit:"
                   " nothing is trained or written")
    p.add_argument("--no-train", action="store_true", help="the ch. 9 tables: write the table from the runs that "
                   "have finished (cells without a finished seed show —), training nothing")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=reproduce_cmd)


def reproduce_cmd(args) -> int:
    import inspect

    from genrep.errors import ConfigError
    from genrep.experiments.reproduce import get_recipe, recipes

    if args.table == "list":
        for name, module in sorted(recipes().items()):
            print(f"{name:<14} {module.TITLE}  (scales: {', '.join(module.SCALES)})")
        return 0
    recipe = get_recipe(args.table)
    args.preempt_hint = ("run the same command again: the finished cells are reused and the stopped one resumes "
                         "from its checkpoint")
    if args.dry_run:
        return print_plan(recipe, args.table, args.scale)
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    # tables that share their training runs (the joint diffusion ones) share one default folder
    out = args.out or f"runs/reproduce/{getattr(recipe, 'SHARED_RUNS', args.table)}-{args.scale}"
    options = {k: v for k, v in (("calorimeter_path", args.calorimeter_path), ("celeba_path", args.celeba_path)) if v}
    if args.no_train:
        options["train"] = False
    accepted = inspect.signature(recipe.run).parameters
    for key in options:
        if key not in accepted:
            flag = "no-train" if key == "train" else key.replace("_", "-")
            raise ConfigError(f"--{flag} does not apply to {args.table}")
    try:  # the recipe checks every input (scale, paths, --out, data sources) before it trains anything
        result = recipe.run(scale=args.scale, seeds=args.seeds, out=out, progress=not args.no_progress, **options)
    except KeyboardInterrupt:
        args.interrupt_hint = f"the finished runs in {out} are kept; run the same command again to continue"
        raise
    print()
    print(f"{recipe.TITLE} — scale {args.scale}, seeds {result['seeds']}")
    print(result["markdown"])
    files = result.get("files", [f"{out}/results.json", f"{out}/results.md"])
    print(f"\nresults: {', '.join(map(str, files))}")
    return 0


def print_plan(recipe, table: str, scale: str) -> int:
    """`--dry-run`: the recipe's `plan(scale)` as JSON on stdout."""
    import json

    from genrep.errors import ConfigError
    from genrep.experiments.reproduce import recipes

    if not hasattr(recipe, "plan"):
        having = ", ".join(sorted(name for name, module in recipes().items() if hasattr(module, "plan")))
        raise ConfigError(f"--dry-run: {table} has no settings plan; tables with one: {having}")
    print(json.dumps(recipe.plan(scale), indent=1, ensure_ascii=False))
    return 0
