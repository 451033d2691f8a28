"""lowbit.torch: PyTorch drop-in layers and model conversion (needs PyTorch; the rest of lowbit
never imports it).

- QuantizedLinear.from_float(linear, config), QuantizedEmbedding.from_float(embedding, bits)
- quantize_(model, config, ...): replace nn.Linear (and nn.Embedding) layers in place
- prepare(model, Int8StaticConfig(...)) -> run data -> convert(model): static PTQ
- prepare_qat(model, config) -> train -> convert(model): QAT with fake quantization
- chain(model, enable): consecutive static convs hand each other uint8 (convert does it)
- plan_mixed(model, example_inputs, metric=, budget=): a per-layer format under an accuracy
  budget, smallest (or fastest) first; quantize_(model, plan) applies it
- model_nbytes(model): parameter + buffer bytes plus lowbit's packed weights
- use_torch_threads(enabled): lowbit's kernels run on PyTorch's OpenMP threads (on by default)
"""
from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError("lowbit.torch needs PyTorch: pip install 'lowbit[torch]'") from e

from ._threads import _enable_by_default, use_torch_threads
from .calibrate import ObservedLinear, prepare
from .chain import chain
from .conv import QuantizedConv1d, QuantizedConv2d
from .embedding import QuantizedEmbedding
from .finalize import convert
from .layers import QuantizedLinear
from .mixed import MixedPlan, default_candidates, plan_mixed
from .qat import FakeQuantLinear, prepare_qat
from .quantize import model_nbytes, quantize_
from .io import TorchIO
from .measure import TorchReport
from .._core import adapters as _adapters
from ..quant.summary import ConversionSummary

_enable_by_default()
# lowbit.io's save / load and lowbit.report take PyTorch models through these.
_adapters.register("io", TorchIO())
_adapters.register("report", TorchReport())

__all__ = ["use_torch_threads", "QuantizedLinear", "QuantizedConv2d", "QuantizedConv1d", "QuantizedEmbedding", "quantize_", "prepare", "prepare_qat",
           "convert", "chain", "ObservedLinear", "FakeQuantLinear", "ConversionSummary", "model_nbytes",
           "plan_mixed", "MixedPlan", "default_candidates"]
