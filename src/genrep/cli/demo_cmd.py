"""`genrep demo`: the main job on the embedded digits data."""

from __future__ import annotations


def register(commands) -> None:
    demo = commands.add_parser("demo", help="e2e Sinkhorn autoencoder vs VAE (plain and conditional) on the embedded digits data (≈2 min)")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--steps", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--overwrite", action="store_true")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(handler=demo_cmd)


def demo_cmd(args) -> int:
    from genrep.experiments.demo import format_table, run_demo

    again = "" if args.out == "runs/demo" else f" --out {args.out}"
    args.preempt_hint = f"the demo cannot resume: start again with `genrep demo{again} --overwrite`"

    try:
        result = run_demo(args.out, steps=args.steps, seed=args.seed, overwrite=args.overwrite,
                          progress=not args.no_progress)
    except KeyboardInterrupt:  # the demo cannot resume: it starts again into the same folder
        args.interrupt_hint = f"{args.out} is incomplete; start again with `genrep demo{again} --overwrite`"
        raise
    print()
    print(format_table(result["models"]))
    print(f"\ndigit classifier test accuracy {result['classifier_test_accuracy']:.3f};"
          f" run folder {args.out} (report: {args.out}/report.md)")
    return 0
