"""Feature extractors for the metrics: LeNet (trained per dataset), FID Inception, or any nn.Module.

Every extractor takes images N×C×H×W in [0, 1] (checked: [-1, 1] input fails) and returns N×dim
float features; `features(images, batch_size=50)` extracts in batches without gradients.
"""

from genrep.metrics.features.base import FeatureExtractor, WrappedModule, wrap_module
from genrep.metrics.features.inception import FIDInception, load_inception
from genrep.metrics.features.lenet import LeNet, load_lenet
from genrep.metrics.features.registry import get_extractor
from genrep.metrics.features.training import train_lenet

__all__ = ["FIDInception", "FeatureExtractor", "LeNet", "WrappedModule", "get_extractor", "load_inception",
           "load_lenet", "train_lenet", "wrap_module"]
