"""genrep: generative models and the data representations they learn."""

__version__ = "0.1.0"
