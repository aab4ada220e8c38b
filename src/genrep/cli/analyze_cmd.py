"""`genrep analyze ANALYSIS ...`: pictures about trained models (latent spaces; more to come)."""

from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    analyze = commands.add_parser("analyze", help="analyses of trained runs (latent)",
                                  description="Analyses of trained runs. Run `genrep analyze ANALYSIS --help`.")
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
