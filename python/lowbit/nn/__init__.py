"""lowbit.nn: NumPy drop-in layers (QuantizedLinear, QuantizedConv2d / Conv1d, QuantizedEmbedding), their float
counterparts and whole NumPy models (Linear, Embedding, Model, Sequential, relu), and the
conversion of a dict of NumPy weights (quantize_weights)."""
from __future__ import annotations

from .conv import QuantizedConv1d, QuantizedConv2d
from .embedding import QuantizedEmbedding
from .linear import SCHEMES, QuantizedLinear
from .models import Embedding, Linear, Model, Sequential, relu

__all__ = ["QuantizedLinear", "QuantizedConv2d", "QuantizedConv1d", "QuantizedEmbedding", "SCHEMES", "Linear", "Embedding", "relu",
           "Model", "Sequential"]
