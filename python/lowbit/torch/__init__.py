"""lowbit.torch: PyTorch drop-in layers and model conversion (needs PyTorch; the rest of lowbit
never imports it).

- QuantizedLinear.from_float(linear, config), QuantizedEmbedding.from_float(embedding, bits)
- quantize_(model, config, ...): replace nn.Linear (and nn.Embedding) layers in place
- model_nbytes(model): parameter + buffer bytes plus lowbit's packed weights
"""
from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError("lowbit.torch needs PyTorch: pip install 'lowbit[torch]'") from e

from .embedding import QuantizedEmbedding
from .layers import QuantizedLinear
from .quantize import model_nbytes, quantize_
from .summary import ConversionSummary

__all__ = ["QuantizedLinear", "QuantizedEmbedding", "quantize_", "ConversionSummary",
           "model_nbytes"]
