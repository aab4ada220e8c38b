"""Error types. Every error a user can cause is a `GenrepError` whose message is one line that
names the problem and the fix; the CLI prints it without a traceback and exits with status 2."""


class GenrepError(Exception):
    """Base class of all user-facing errors."""


class DataError(GenrepError):
    """A data set is unknown, corrupted, truncated, or has values/shapes we cannot use."""


class SourceMissingError(DataError):
    """An offline data source is not installed (the message holds the install command)."""


class ConfigError(GenrepError):
    """An unknown or ill-typed configuration key, or an incompatible configuration."""


class CheckpointError(GenrepError):
    """A checkpoint is missing, truncated, corrupted, or does not match the model."""


class InputError(GenrepError):
    """A tensor passed to a model or metric has the wrong shape, dtype or value range."""


class TrainingDivergedError(GenrepError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class RunExistsError(GenrepError):
    """The run folder exists and neither --overwrite nor --resume was given."""


class UnsafeFileError(CheckpointError, DataError):
    """A file (checkpoint, weights, feature network, .npz/.npy array) holds pickled Python objects
    beyond tensors, numbers and strings (classes, functions: code that unpickling would import and
    run). genrep refuses to load it for safety; it is both a CheckpointError and a DataError, so
    callers that catch either kind of unreadable file catch this one too."""


class OutputError(GenrepError, OSError):
    """An output file or folder cannot be written (read-only file system, disk full, no permission,
    a parent that is a file, ...); the message is "cannot write PATH: reason". Also an OSError, so
    code that catches the file system's errors catches it too."""


class GenrepWarning(UserWarning):
    """A result was computed but may be meaningless (e.g. inputs outside the range a model was built
    for); the CLI prints it as "genrep: warning: ..."."""


def one_line(err: BaseException, limit: int = 300) -> str:
    """`err` as "Type: message" on one line, whitespace collapsed, cut to `limit` characters."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:limit]}" if text else type(err).__name__
