"""lowbit.nn: NumPy drop-in layers (QuantizedLinear, QuantizedEmbedding), their float
counterparts and whole NumPy models (Linear, Embedding, Model, Sequential, relu), and the
conversion of a dict of NumPy weights (quantize_weights)."""
from __future__ import annotations

from .embedding import QuantizedEmbedding
from .linear import SCHEMES, QuantizedLinear
from .models import Embedding, Linear, Model, Sequential, relu

__all__ = ["QuantizedLinear", "QuantizedEmbedding", "SCHEMES", "Linear", "Embedding", "relu",
           "Model", "Sequential"]
