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
