"""Data layer: `load_dataset(name, split=...)` over one registry of offline/downloadable sources."""

from genrep.data.dataset import BatchIterator, ImageDataset
from genrep.data.registry import dataset_names, get_source, load_dataset, register_source

__all__ = ["BatchIterator", "ImageDataset", "dataset_names", "get_source", "load_dataset", "register_source"]
