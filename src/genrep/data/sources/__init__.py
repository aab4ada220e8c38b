"""Built-in data sources; importing this package registers them."""

from genrep.data.sources import digits  # noqa: F401
