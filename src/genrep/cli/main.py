"""`genrep` command line: a thin layer over the Python API (parsing and printing only)."""

from __future__ import annotations

import argparse
import sys

from genrep import __version__
from genrep.errors import GenrepError


def build_parser() -> argparse.ArgumentParser:
    from genrep.cli import data_cmd, demo_cmd, evaluate_cmd, features_cmd, train_cmd
    from genrep.cli import simulate_cmd
    from genrep.cli import analyze_cmd
    from genrep.cli import reproduce_cmd
    from genrep.cli import continual_cmd

    parser = argparse.ArgumentParser(
        prog="genrep",
        description="Generative models and the data representations they learn.",
        epilog="Run `genrep COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"genrep {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    data_cmd.register(commands)
    train_cmd.register(commands)
    reproduce_cmd.register(commands)
    demo_cmd.register(commands)
    features_cmd.register(commands)
    evaluate_cmd.register(commands)
    simulate_cmd.register(commands)
    analyze_cmd.register(commands)
    continual_cmd.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except GenrepError as err:
        print(f"genrep: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genrep: interrupted (the last checkpoint is kept; continue with --resume)", file=sys.stderr)
        return 130
