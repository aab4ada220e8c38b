"""`genrep` command line: a thin layer over the Python API (parsing and printing only)."""

from __future__ import annotations

import argparse
import errno
import os
import sys
import warnings

from genrep import __version__
from genrep.errors import ConfigError, GenrepError, GenrepWarning
from genrep.training.preemption import PREEMPTED_EXIT_CODE, Preempted


def build_parser() -> argparse.ArgumentParser:
    from genrep.cli import data_cmd, demo_cmd, evaluate_cmd, features_cmd, train_cmd
    from genrep.cli import simulate_cmd
    from genrep.cli import analyze_cmd
    from genrep.cli import reproduce_cmd
    from genrep.cli import continual_cmd
    from genrep.cli import joint_cmd

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
    joint_cmd.register(commands)
    return parser


def _one_line_warnings(previous):
    """A `warnings.showwarning` printing genrep's own warnings as one line "genrep: warning: ..."
    and passing the others to `previous`."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, GenrepWarning):
            print(f"genrep: warning: {message}", file=sys.stderr if file is None else file)
        else:
            previous(message, category, filename, lineno, file, line)
    return show


def _os_error_message(err: OSError) -> str:
    """A last resort for an OSError no write site turned into an OutputError: one line that names
    the file and the reason."""
    from genrep.utils.files import os_reason

    if err.filename is None:
        return f"{err.strerror or err}"
    filename = os.fsdecode(err.filename)
    verb = "write" if err.errno in _WRITE_ERRNOS else "access"
    return f"cannot {verb} {filename}: {os_reason(err, filename)}"


_WRITE_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _refuse_unknown_top_level_flags(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """`genrep --bogus-flag` (no command after it): argparse would only say that COMMAND is
    required; name the flag the user typed instead (exit 2, usage line first, like argparse)."""
    if not argv or not all(a.startswith("-") and a != "-" for a in argv):
        return  # a command follows: argparse reports unknown flags itself
    known = {option for action in parser._actions for option in action.option_strings}
    unknown = [a for a in argv if a.split("=", 1)[0] not in known]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")


# path arguments (dest -> what the user typed) that an empty string must not silently turn into a
# default: `--out ''` would otherwise write to the default folder
_PATH_ARGUMENTS = {"out": "--out", "npz": "--npz", "config": "--config", "data_path": "--data-path",
                   "path": "--path", "particles": "--particles", "run": "RUN"}


def _refuse_empty_paths(args: argparse.Namespace) -> None:
    for dest, name in _PATH_ARGUMENTS.items():
        value = getattr(args, dest, None)
        if isinstance(value, str) and not value.strip():
            raise ConfigError(f"{name} must not be empty (got {value!r}): give a path")


def _prefix() -> str:
    """"genrep", or "genrep (rank N)" on the ranks other than 0 of a multi-process run, whose messages
    would otherwise repeat rank 0's without saying where they come from."""
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    return "genrep" if rank == 0 else f"genrep (rank {rank})"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    _refuse_unknown_top_level_flags(parser, argv)
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warnings(warnings.showwarning)
        try:
            _refuse_empty_paths(args)
            return int(args.handler(args) or 0)
        except Preempted as err:  # SIGTERM / SIGUSR1: the checkpoint is written, the run can go on
            hint = getattr(args, "preempt_hint", None)  # a command that continues otherwise than with --resume
            print(f"{_prefix()}: {err if hint is None else err.with_hint(hint)}", file=sys.stderr)
            return PREEMPTED_EXIT_CODE
        except GenrepError as err:
            print(f"{_prefix()}: error: {err}", file=sys.stderr)
            return 2
        except OSError as err:  # read-only file system, disk full, ... where no write site caught it
            print(f"{_prefix()}: error: {_os_error_message(err)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            # what to do next depends on the command: a handler that knows sets args.interrupt_hint;
            # otherwise only commands that have --resume suggest it
            hint = getattr(args, "interrupt_hint", None)
            if hint is None and hasattr(args, "resume"):
                hint = "what finished is kept; continue with the same command and --resume"
            print("genrep: interrupted" + (f" ({hint})" if hint else ""), file=sys.stderr)
            return 130
