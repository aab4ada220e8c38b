"""BinPlay (thesis ch.8): binary latent autoencoder, greedy code assignment (Alg. 2) and the learner."""

from genrep.continual.binplay.assignment import bit_agreement, greedy_assign
from genrep.continual.binplay.autoencoder import BinaryAutoencoder, BinaryDecoder, BinaryEncoder, binarize
from genrep.continual.binplay.learner import BinPlay, BinPlaySettings

__all__ = ["BinPlay", "BinPlaySettings", "BinaryAutoencoder", "BinaryDecoder", "BinaryEncoder", "binarize",
           "bit_agreement", "greedy_assign"]
