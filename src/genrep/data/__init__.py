"""Data layer: `load_dataset(name, split=...)` over one registry of offline/downloadable sources."""

from genrep.data.dataset import BatchIterator, ImageDataset
from genrep.data.spec import DataSpec
from genrep.data.registry import dataset_names, get_source, load_dataset, register_source

__all__ = ["BatchIterator", "DataSpec", "ImageDataset", "dataset_names", "get_source", "load_dataset", "register_source"]
